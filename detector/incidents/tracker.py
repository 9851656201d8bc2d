"""Groups anomalies into incidents keyed by their root-cause service: open on the first anomaly,
resolve after a quiet gap.

Without a `RootCauseRanker` the key is the anomaly's own service. With one, the ranker decides
(request evidence first, then the call graph; see rootcause.py), so a fault that shows in five
services opens one incident. An incident's id derives from its key and the start of its first
anomalous window, so the same replay always yields the same ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import replace
from itertools import groupby
from typing import Any

from detector.config import IncidentConfig
from detector.events import Anomaly, Incident
from detector.incidents.rootcause import Evidence, RootCauseRanker


def incident_id(service: str, opened_at: float) -> str:
    """Stable id of the incident keyed by `service` whose first anomalous window starts at
    `opened_at`.

    >>> incident_id("payments", 1795435200.0)
    'inc-payments-5289aecfe34c'
    """
    digest = hashlib.sha1(f"{service}|{opened_at:.3f}".encode()).hexdigest()[:12]
    return f"inc-{service}-{digest}"


class IncidentTracker:
    """Keeps the open incident of each key; returns incident snapshots as they change state.

    >>> from detector.config import IncidentConfig
    >>> from detector.events import Anomaly
    >>> t = IncidentTracker(IncidentConfig(gap_seconds=30))
    >>> a = Anomaly("cart", "error_ratio", 0.0, 10.0, 0.4, 0.01, 0.01, 0.99999, "ewma", "x", 50)
    >>> [i.status for i in t.add([a])], [i.status for i in t.advance(20.0)]
    (['open'], [])
    >>> [i.status for i in t.advance(41.0)]
    ['resolved']
    """

    def __init__(self, cfg: IncidentConfig, ranker: RootCauseRanker | None = None,
                 traced: Callable[[Incident], list[dict[str, Any]] | None] | None = None) -> None:
        self.cfg = cfg
        self.ranker = ranker
        # The span analysis of an incident (detector.rca), when the stream carries spans: its
        # ranking, where it has one, is the incident's root_cause.
        self.traced = traced
        # Keys of recently resolved incidents and their spans of time, so a sibling that
        # resolved first still counts as explained elsewhere (bounded: the last 256).
        self._closed: dict[str, tuple[float, float]] = {}
        self.open: dict[str, Incident] = {}
        self.opened = 0  # incidents opened (each once, however many revisions it has)
        self.resolved = 0
        self._top: dict[str, str | None] = {}  # incident id -> top root cause last emitted
        self._evidence: dict[str, Evidence] = {}  # incident id -> what its anomalies showed

    def add(self, anomalies: list[Anomaly]) -> list[Incident]:
        """Fold anomalies in; returns snapshots of the incidents that changed state, in order."""
        changes: list[Incident] = []
        ordered = sorted(anomalies, key=lambda x: (x.window_start, -x.score))
        for start, grouped in groupby(ordered, key=lambda x: x.window_start):
            group = list(grouped)
            stale = [i for i in self.open.values() if start - i.last_anomaly_at > self.cfg.gap_seconds]
            keys = set(self._open_ids()) if stale else set()
            for inc in stale:
                changes.append(self._resolve(inc, inc.last_anomaly_at + self.cfg.gap_seconds, keys))
            members: dict[str, str] | None = None  # service -> key of its open incident
            for a, key in zip(group, self._keys(group), strict=True):
                found = self.open.get(key)
                if found is None and key != a.service:
                    if members is None:  # once a window: linear in the open incidents' members
                        members = {}
                        for k, i in self.open.items():  # the first opened wins, as in _keys
                            if start - i.last_anomaly_at <= self.cfg.gap_seconds:
                                for m in i.services:
                                    members.setdefault(m, k)
                    found = self._rekey(members.get(a.service), key)
                    if found is not None:
                        members.update(dict.fromkeys(found.services, key))
                if found is not None:
                    inc = found
                else:
                    inc = Incident(
                        id=incident_id(key, a.window_start),
                        fingerprint=f"root_cause={key}",
                        service=key,
                        status="open",
                        opened_at=a.window_start,
                        detected_at=a.window_end,
                        last_anomaly_at=a.window_end,
                        first_explanation=a.explanation,
                    )
                    self.open[key] = inc
                    self.opened += 1
                    self._evidence[inc.id] = Evidence(key, inc.opened_at, inc.opened_at)
                    changes.append(inc)
                inc.last_anomaly_at = max(inc.last_anomaly_at, a.window_end)
                inc.anomaly_count += 1
                inc.features[a.feature] = inc.features.get(a.feature, 0) + 1
                inc.services[a.service] = inc.services.get(a.service, 0) + 1
                self._evidence[inc.id].record(a)
                if a.score > inc.max_score:  # ties keep the earliest, closest to onset
                    inc.max_score = a.score
                    inc.top_explanation = a.explanation
        open_keys = self._open_ids()
        return [self._snapshot(i, open_keys) if i.status == "open" else i for i in changes]

    def _rekey(self, old: str | None, key: str) -> Incident | None:
        """The open incident keyed `old` (which an anomalous service belongs to), moved to
        `key`, when the requests now name `key` as the cause and no incident is keyed there:
        the same fault, its cause found deeper (the incident keeps its id, its episode)."""
        if old is None or old == key or old not in self.open:
            return None
        inc = self.open.pop(old)
        self.open[key] = inc
        inc.service, inc.fingerprint = key, f"root_cause={key}"
        self._evidence[inc.id].key = key
        return inc

    def refresh(self) -> list[Incident]:
        """Snapshots of open incidents whose top root-cause candidate changed since last told."""
        out: list[Incident] = []
        if self.ranker is None:
            return out
        keys = self._open_ids()
        for inc in sorted(self.open.values(), key=lambda i: i.opened_at):
            ranked = self._ranking(inc, keys)
            top = ranked[0]["service"] if ranked else None
            if top != self._top.get(inc.id):
                inc.revision += 1
                out.append(self._snapshot(inc, keys))
        return out

    def advance(self, now: float) -> list[Incident]:
        """Resolve incidents with no anomaly for `gap_seconds` of event time before `now`."""
        done = [i for i in self.open.values() if now - i.last_anomaly_at > self.cfg.gap_seconds]
        keys = set(self._open_ids()) if done else set()
        return [self._resolve(inc, now, keys) for inc in sorted(done, key=lambda i: i.opened_at)]

    def snapshot_open(self) -> list[Incident]:
        keys = self._open_ids()
        return [self._snapshot(i, keys) for i in sorted(self.open.values(), key=lambda i: i.opened_at)]

    def _open_ids(self) -> frozenset[int]:
        """The ids of the open incidents' keys, for the ranker."""
        return self.ranker.ids_of(self.open) if self.ranker is not None else frozenset()

    def _keys(self, group: list[Anomaly]) -> list[str]:
        """The incident key of each anomaly of one window.

        Linear in the anomalies and the call graph (a fleet-wide outage of 2,000 services took
        2 s a window when each anomaly was compared with every other): neighbour sets and one
        pass over the request verdicts, not a pair of loops.
        """
        r = self.ranker
        if r is None:
            return [a.service for a in group]
        start = group[0].window_start
        explain = r.explainer(start - self.cfg.gap_seconds)
        nbrs = r.neighbours()
        none: set[str] = set()
        keys: list[str | None] = [explain(a.service) for a in group]
        # Without request evidence: the first open incident (in opening order) that the service
        # belongs to, or whose key or members it calls or is called by.
        touching: dict[str, str] = {}
        for k, inc in self.open.items():
            if start - inc.last_anomaly_at > self.cfg.gap_seconds:
                continue
            for m in {k, *inc.services}:
                for s in (m, *nbrs.get(m, none)):
                    touching.setdefault(s, k)
        for i, a in enumerate(group):
            if keys[i] is None:
                keys[i] = touching.get(a.service)
        # The rest: next to a service already keyed in this window, take its key (the deepest
        # such key, the earliest on ties); otherwise anomalies of this window that touch each
        # other go together.
        depth = r.depth()

        def d(k: str) -> int:
            sid = r.services.get(k)
            return depth.get(sid if sid is not None else -1, 0)
        at_service: dict[str, list[tuple[int, str]]] = {}  # service -> (j, key) keyed there
        with_key: dict[str, list[int]] = {}  # key -> the j keyed with it
        for j, key in enumerate(keys):
            if key is not None:
                at_service.setdefault(group[j].service, []).append((j, key))
                with_key.setdefault(key, []).append(j)
        for i, a in enumerate(group):
            if keys[i] is not None:
                continue
            best: tuple[int, int, str] | None = None  # (depth, -j, key)
            for n in nbrs.get(a.service, none):
                pairs = [*at_service.get(n, ()), *((j, n) for j in with_key.get(n, ()))]
                for j, k in pairs:
                    cand = (d(k), -j, k)
                    if best is None or cand[:2] > best[:2]:
                        best = cand
            if best is not None:
                keys[i] = best[2]
                at_service.setdefault(a.service, []).append((i, best[2]))
                with_key.setdefault(best[2], []).append(i)
        rest = [i for i, k in enumerate(keys) if k is None]
        by_service: dict[str, list[int]] = {}
        for i in rest:
            by_service.setdefault(group[i].service, []).append(i)
        parent = {s: s for s in by_service}

        def find(s: str) -> str:
            while parent[s] != s:
                parent[s] = parent[parent[s]]
                s = parent[s]
            return s
        for s in by_service:
            for n in nbrs.get(s, none):
                if n in parent:
                    x, y = find(s), find(n)
                    if x != y:
                        parent[max(x, y)] = min(x, y)
        comps: dict[str, list[int]] = {}
        for i in rest:
            comps.setdefault(find(group[i].service), []).append(i)
        for members in comps.values():
            key = r.pick_key([group[i] for i in members])
            for i in members:
                keys[i] = key
        return [k if k is not None else a.service for k, a in zip(keys, group, strict=True)]

    def _resolve(self, inc: Incident, now: float, keys: set[int] | None = None) -> Incident:
        """Close `inc`; `keys`: the open keys' ids, which loses this one's (callers that
        resolve many pass one set along)."""
        inc.status = "resolved"
        inc.resolved_at = now
        self.resolved += 1
        keys = set(self._open_ids()) if keys is None else keys
        snap = self._snapshot(inc, keys)
        self._closed.pop(inc.service, None)
        self._closed[inc.service] = (inc.opened_at, now)
        if len(self._closed) > 256:
            del self._closed[next(iter(self._closed))]
        self.open.pop(inc.service, None)
        self._top.pop(inc.id, None)
        self._evidence.pop(inc.id, None)
        if self.ranker is not None:
            keys.difference_update(self.ranker.ids_of([inc.service]))
        return snap

    def _ranking(self, inc: Incident, keys: AbstractSet[int]) -> list[dict[str, Any]]:
        traced = self.traced(inc) if self.traced is not None else None
        logged = self.ranker.rank(self._evidence[inc.id], keys) if self.ranker is not None else []
        if not traced:
            return logged
        # The span ranking orders; the request evidence of the log ranking stays beside it. The
        # span analysis sees the whole capture: a service that is another open incident's key
        # is explained there, so it goes after the rest (one fault, one incident).
        others = {i.service for i in self.open.values() if i.id != inc.id}
        others.update(k for k, (opened, resolved) in self._closed.items()
                      if k != inc.service and opened <= inc.last_anomaly_at
                      and resolved >= inc.opened_at)
        if others:
            traced = ([r for r in traced if r["service"] not in others]
                      + [r for r in traced if r["service"] in others])
        by = {r["service"]: r["evidence"] for r in logged}
        return [{**r, "evidence": {**by.get(r["service"], {}), **r["evidence"]}} for r in traced]

    def _snapshot(self, inc: Incident, keys: AbstractSet[int]) -> Incident:
        ranked = self._ranking(inc, keys)
        if self.ranker is not None or self.traced is not None:
            inc.root_cause = ranked
            self._top[inc.id] = ranked[0]["service"] if ranked else None
        return replace(inc, features=dict(inc.features), services=dict(inc.services),
                       root_cause=list(inc.root_cause))
