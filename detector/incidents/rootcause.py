"""Root cause across requests: which incident a window anomaly belongs to, and the ranked list of
candidate services an incident carries.

Evidence comes in two kinds. Request verdicts (`correlation.verdicts.judge_requests`) say, per
anomalous request, which service was the deepest to fail first and which only propagated it.
Window anomalies (`scoring.windows`) say which (service, feature) series moved. A window anomaly of a
service whose recent anomalous requests are mostly rooted elsewhere joins that root's incident;
one without request evidence joins an open incident of a service it calls or is called by (a
call graph learned from sampled requests); otherwise anomalies of one window that touch each
other in the call graph open one incident together. So a fault that propagates across five
services opens one incident, keyed by its root cause.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from detector.config import CorrelationConfig
from detector.correlation.chains import Edges, RequestVerdict
from detector.correlation.flags import kinds
from detector.events import Anomaly
from detector.services import ServiceIndex

_MAX_SAMPLES = 5


@dataclass
class Evidence:
    """What one incident has gathered from window anomalies, kept by the incident tracker
    (request evidence is read from the ranker's recent verdicts when the incident is ranked).

    >>> ev = Evidence(key="cart", opened_at=0.0, last_at=0.0)
    >>> ev.record(Anomaly("cart", "error_ratio", 0.0, 10.0, 0.4, 0.01, 0.01, 0.99999, "ewma", "x", 50))
    >>> ev.last_at, dict(ev.services)
    (10.0, {'cart': 1})
    """

    key: str  # the incident's root-cause key
    opened_at: float
    last_at: float
    services: Counter[str] = field(default_factory=Counter)  # window anomalies per service
    features: dict[str, Counter[str]] = field(default_factory=dict)
    first_anomaly: dict[str, float] = field(default_factory=dict)

    def record(self, a: Anomaly) -> None:
        self.last_at = max(self.last_at, a.window_end)
        self.services[a.service] += 1
        self.features.setdefault(a.service, Counter())[a.feature] += 1
        self.first_anomaly[a.service] = min(self.first_anomaly.get(a.service, a.window_start),
                                            a.window_start)


class RootCauseRanker:
    """Request verdicts and a learned call graph, asked by the incident tracker (which owns the
    incidents and their `Evidence`); see the module doc. It never calls the tracker."""

    def __init__(self, cfg: CorrelationConfig, services: ServiceIndex,
                 template_text: Any = None) -> None:
        self.cfg = cfg
        self.services = services
        self.names = services.names  # the index's own list: grows as services appear
        self.template_text = template_text  # template id -> text, for evidence
        self.recent: deque[RequestVerdict] = deque(maxlen=cfg.max_verdicts)
        self.edges: Counter[tuple[int, int]] = Counter()
        self._depth: tuple[int, dict[int, int]] | None = None  # (edges when computed, depths)

    # ---- learning ---------------------------------------------------------------------
    def learn_edges(self, edges: Edges | Mapping[tuple[int, int], int]) -> None:
        """Count call edges: each edge of a set once, a mapping's edges its count of times."""
        self.edges.update(edges)

    def observe(self, verdicts: list[RequestVerdict]) -> None:
        """New request verdicts, kept (bounded) for `explained_by` and `rank`."""
        for v in verdicts:
            self.learn_edges(v.edges)
            self.recent.append(v)

    def prune(self, before: float) -> None:
        """Forget verdicts whose onset is before `before` (the pipeline passes the start of the
        window it judges minus the horizon, so a large batch does not outrun its windows)."""
        if self.recent and min(self.recent[0].onset, self.recent[-1].onset) < before:
            self.recent = deque((v for v in self.recent if v.onset >= before),
                                maxlen=self.recent.maxlen)

    def state_dict(self) -> list[list[int]]:
        """The learned call graph as [caller, callee, count] rows of service ids."""
        return [[a, b, n] for (a, b), n in self.edges.items()]

    def load_state(self, rows: Any) -> None:
        """Rows of `state_dict` whose ids are the service index's; anything else: ValueError."""
        known = len(self.services)
        if not isinstance(rows, list) or not all(
                isinstance(e, list) and len(e) == 3 and all(type(v) is int for v in e)
                and 0 <= e[0] < known and 0 <= e[1] < known and e[2] >= 0 for e in rows):
            raise ValueError("call_graph is not a list of [caller, callee, count] of known services")
        for a, b, n in rows:
            self.edges[(a, b)] += n

    # ---- questions the incident tracker asks ---------------------------------------------
    def explained_by(self, service: str, since: float) -> str | None:
        """The root that most of `service`'s recent anomalous requests share, if it is another
        service and its share reaches `explain_share`; None without request evidence (fewer
        than `min_requests` of them)."""
        sid = self._sid(service)
        if sid is None:
            return None
        roots: Counter[int] = Counter()
        for v in self.recent:
            if v.onset >= since and (v.root == sid or sid in v.propagators):
                roots[v.root] += 1
        if sum(roots.values()) < self.cfg.min_requests:
            return None
        root, count = roots.most_common(1)[0]
        if root != sid and count >= self.cfg.explain_share * sum(roots.values()):
            return self.names[root]
        return service

    def explainer(self, since: float) -> Callable[[str], str | None]:
        """`explained_by(service, since)` for many services: one pass over the verdicts."""
        roots: dict[int, Counter[int]] = {}
        for v in self.recent:
            if v.onset >= since:
                for sid in {v.root, *v.propagators}:
                    roots.setdefault(sid, Counter())[v.root] += 1

        def explain(service: str) -> str | None:
            sid = self._sid(service)
            found = roots.get(sid) if sid is not None else None
            if found is None:
                return None
            total = sum(found.values())
            if total < self.cfg.min_requests:
                return None
            root, count = found.most_common(1)[0]
            if root != sid and count >= self.cfg.explain_share * total:
                return self.names[root]
            return service
        return explain

    def neighbours(self) -> dict[str, set[str]]:
        """Each service's neighbours in the learned call graph (either direction), by name."""
        out: dict[str, set[str]] = {}
        names = self.names
        for a, b in self.edges:
            if 0 <= a < len(names) and 0 <= b < len(names):
                out.setdefault(names[a], set()).add(names[b])
                out.setdefault(names[b], set()).add(names[a])
        return out

    def adjacent(self, a: str, b: str) -> bool:
        ia, ib = self._sid(a), self._sid(b)
        return ia is not None and ib is not None and ((ia, ib) in self.edges or (ib, ia) in self.edges)

    def depth(self) -> dict[int, int]:
        """Each service's distance from an entry service (one nobody calls) in the learned graph
        (breadth first over adjacency lists: linear in the graph; cached until an edge is new)."""
        if self._depth is not None and self._depth[0] == len(self.edges):
            return self._depth[1]
        calls: dict[int, list[int]] = {}
        for a, b in self.edges:
            calls.setdefault(a, []).append(b)
        nodes = {x for e in self.edges for x in e}
        callees = {b for _, b in self.edges}
        depth = dict.fromkeys(sorted(nodes - callees), 0)
        frontier = list(depth)
        while frontier:
            nxt = []
            for a in frontier:
                for b in calls.get(a, ()):
                    if b not in depth:
                        depth[b] = depth[a] + 1
                        nxt.append(b)
            frontier = nxt
        self._depth = (len(self.edges), depth)
        return depth

    def pick_key(self, group: list[Anomaly]) -> str:
        """The root of a group of anomalies without request evidence: for a rise in traffic the
        most upstream service (traffic enters at the top), for anything else the deepest."""
        depth = self.depth()
        services = sorted({a.service for a in group})
        rising = all(a.feature == "rate" and a.value > a.baseline_mean for a in group)

        def d(s: str) -> int:
            sid = self._sid(s)
            return depth.get(sid, 0) if sid is not None else 0
        return min(services, key=d) if rising else max(services, key=lambda s: (d(s), s))

    def ids_of(self, names: Iterable[str]) -> frozenset[int]:
        """The ids of the known services among `names`."""
        return frozenset(i for i in map(self.services.get, names) if i is not None)

    def rank(self, ev: Evidence, open_keys: AbstractSet[int] = frozenset()) -> list[dict[str, Any]]:
        """Candidate services of an incident, best first: share of its anomalous requests they
        explain, agreement with their own window anomalies, and onset order. `open_keys`: the
        ids (`ids_of`) of the open incidents' keys (a request rooted in another's key is that
        one's)."""
        verdicts = self._verdicts_of(ev, open_keys)
        if len(verdicts) < self.cfg.min_requests:
            verdicts = []  # a few odd requests are background noise, not evidence
        roots: Counter[int] = Counter(v.root for v in verdicts)
        cands: set[str] = set(ev.services) | {self.names[r] for r in roots}
        if not cands:
            return []
        onset: dict[str, float] = dict(ev.first_anomaly)
        for v in verdicts:
            name = self.names[v.root]
            onset[name] = min(onset.get(name, v.root_onset), v.root_onset)
        # Dense onset rank: services whose anomalies began in the same window tie.
        times = sorted({onset.get(s, float("inf")) for s in cands})
        total = max(len(verdicts), 1)
        key = ev.key
        raw: dict[str, float] = {}
        for s in cands:
            sid = self._sid(s)
            share = roots.get(sid, 0) / total if sid is not None else 0.0
            window = 1.0 if ev.services.get(s) else 0.0
            early = 1.0 / (1 + times.index(onset.get(s, float("inf"))))
            if verdicts:
                raw[s] = 0.6 * share + 0.25 * window + 0.15 * early
            else:
                raw[s] = 0.5 * window + 0.3 * early + 0.2 * (s == key)
        # Confidence: a softmax of the scores (temperature 0.1), so a candidate 0.3 ahead of the
        # next is about 95% sure and a tie splits evenly.
        top_raw = max(raw.values())
        weight = {s: math.exp((v - top_raw) / 0.1) for s, v in raw.items()}
        norm = sum(weight.values())
        out = []
        for s in sorted(cands, key=lambda s: (-raw[s], onset.get(s, float("inf")), s)):
            sid = self._sid(s)
            mine = [v for v in verdicts if v.root == sid]
            tmpl: Counter[int] = Counter(t for v in mine for t in v.templates)
            out.append({
                "service": s,
                "score": round(raw[s], 4),
                "confidence": round(weight[s] / norm, 4),
                "evidence": {
                    "requests": len(mine),
                    "share_of_anomalous_requests": round(len(mine) / total, 4) if verdicts else 0.0,
                    "onset": onset.get(s),
                    "silent_requests": sum(1 for v in mine if v.silent),
                    "kinds": sorted({k for v in mine for k in kinds(v.kinds)}),
                    "sample_request_ids": [v.request_id for v in mine[:_MAX_SAMPLES]],
                    "templates": [self._template(t) for t, _ in tmpl.most_common(3)],
                    "propagated_to": sorted({self.names[p] for v in mine for p in v.propagators}),
                    "features": dict(ev.features.get(s, {})),
                },
            })
        return out

    def _verdicts_of(self, ev: Evidence, open_keys: AbstractSet[int]) -> list[RequestVerdict]:
        """Recent verdicts that belong to the incident: from its onset (less the gap) to its last
        anomaly (plus the gap), rooted in its key or touching a service it involves, and not
        rooted in the key of another open incident."""
        key = self.services.get(ev.key)
        involved = {i for i in (self.services.get(s) for s in ev.services) if i is not None}
        if key is not None:
            involved.add(key)
        others = open_keys - {key} if key is not None else open_keys
        lo, hi = ev.opened_at - self.cfg.explain_gap, ev.last_at + self.cfg.explain_gap
        return [v for v in self.recent if lo <= v.onset <= hi
                and (v.root == key or (v.root not in others and involved & set(v.services)))]

    def _template(self, tid: int) -> str:
        if self.template_text is None:
            return str(tid)
        try:
            return str(self.template_text(tid))
        except (KeyError, IndexError, ValueError):
            return str(tid)

    def _sid(self, service: str) -> int | None:
        return self.services.get(service)
