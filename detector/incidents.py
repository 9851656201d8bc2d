"""Groups anomalies into incidents keyed by their root-cause service: open on the first anomaly,
resolve after a quiet gap.

Without a `RootCauseRanker` the key is the anomaly's own service. With one, the ranker decides
(request evidence first, then the call graph; see rootcause.py), so a fault that shows in five
services opens one incident. An incident's id derives from its key and the start of its first
anomalous window, so the same replay always yields the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from itertools import groupby

from detector.config import IncidentConfig
from detector.events import Anomaly, Incident
from detector.rootcause import RootCauseRanker


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

    def __init__(self, cfg: IncidentConfig, ranker: RootCauseRanker | None = None) -> None:
        self.cfg = cfg
        self.ranker = ranker
        self.open: dict[str, Incident] = {}
        self.opened = 0  # incidents opened (each once, however many revisions it has)
        self.resolved = 0
        self._top: dict[str, str | None] = {}  # incident id -> top root cause last emitted

    def add(self, anomalies: list[Anomaly]) -> list[Incident]:
        """Fold anomalies in; returns snapshots of the incidents that changed state, in order."""
        changes: list[Incident] = []
        ordered = sorted(anomalies, key=lambda x: (x.window_start, -x.score))
        for start, grouped in groupby(ordered, key=lambda x: x.window_start):
            group = list(grouped)
            for inc in [i for i in self.open.values()
                        if start - i.last_anomaly_at > self.cfg.gap_seconds]:
                changes.append(self._resolve(inc, inc.last_anomaly_at + self.cfg.gap_seconds))
            for a, key in zip(group, self._keys(group), strict=True):
                found = self.open.get(key)
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
                    if self.ranker is not None:
                        self.ranker.opened(inc.id, inc.opened_at)
                    changes.append(inc)
                inc.last_anomaly_at = max(inc.last_anomaly_at, a.window_end)
                inc.anomaly_count += 1
                inc.features[a.feature] = inc.features.get(a.feature, 0) + 1
                inc.services[a.service] = inc.services.get(a.service, 0) + 1
                if self.ranker is not None:
                    self.ranker.record(inc.id, a)
                if a.score > inc.max_score:  # ties keep the earliest, closest to onset
                    inc.max_score = a.score
                    inc.top_explanation = a.explanation
        return [self._snapshot(i) if i.status == "open" else i for i in changes]

    def refresh(self) -> list[Incident]:
        """Snapshots of open incidents whose top root-cause candidate changed since last told."""
        out = []
        for inc in sorted(self.open.values(), key=lambda i: i.opened_at):
            if self.ranker is None:
                continue
            ranked = self.ranker.rank(inc.id)
            top = ranked[0]["service"] if ranked else None
            if top != self._top.get(inc.id):
                inc.revision += 1
                out.append(self._snapshot(inc))
        return out

    def advance(self, now: float) -> list[Incident]:
        """Resolve incidents with no anomaly for `gap_seconds` of event time before `now`."""
        done = [i for i in self.open.values() if now - i.last_anomaly_at > self.cfg.gap_seconds]
        out = []
        for inc in sorted(done, key=lambda i: i.opened_at):
            out.append(self._resolve(inc, now))
        return out

    def snapshot_open(self) -> list[Incident]:
        return [self._snapshot(i) for i in sorted(self.open.values(), key=lambda i: i.opened_at)]

    def _keys(self, group: list[Anomaly]) -> list[str]:
        """The incident key of each anomaly of one window."""
        r = self.ranker
        if r is None:
            return [a.service for a in group]
        since = group[0].window_start - self.cfg.gap_seconds
        keys: list[str | None] = []
        for a in group:
            key = r.explained_by(a.service, since)
            if key is None:  # no request evidence: an open incident it is connected to?
                for k, inc in self.open.items():
                    if a.window_start - inc.last_anomaly_at > self.cfg.gap_seconds:
                        continue
                    if a.service == k or a.service in inc.services or r.adjacent(a.service, k) \
                            or any(r.adjacent(a.service, s) for s in inc.services):
                        key = k
                        break
            keys.append(key)
        # The rest: next to a service already keyed in this window, take its key (the deepest
        # such key); otherwise anomalies of this window that touch each other go together.
        depth = r.depth()
        for i, a in enumerate(group):
            if keys[i] is not None:
                continue
            near = [k for j, k in enumerate(keys) if k is not None
                    and (r.adjacent(a.service, group[j].service) or r.adjacent(a.service, k))]
            if near:
                keys[i] = max(near, key=lambda k: depth.get(r.services.get(k) or -1, 0))
        rest = [i for i, k in enumerate(keys) if k is None]
        parent = {i: i for i in rest}

        def find(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i
        for x in rest:
            for y in rest:
                if x < y and (group[x].service == group[y].service
                              or r.adjacent(group[x].service, group[y].service)):
                    parent[find(y)] = find(x)
        comps: dict[int, list[int]] = {}
        for i in rest:
            comps.setdefault(find(i), []).append(i)
        for members in comps.values():
            key = r.pick_key([group[i] for i in members])
            for i in members:
                keys[i] = key
        return [k if k is not None else a.service for k, a in zip(keys, group, strict=True)]

    def _resolve(self, inc: Incident, now: float) -> Incident:
        inc.status = "resolved"
        inc.resolved_at = now
        self.resolved += 1
        snap = self._snapshot(inc)
        self.open.pop(inc.service, None)
        self._top.pop(inc.id, None)
        if self.ranker is not None:
            self.ranker.closed(inc.id)
        return snap

    def _snapshot(self, inc: Incident) -> Incident:
        ranked = self.ranker.rank(inc.id) if self.ranker is not None else []
        if self.ranker is not None:
            inc.root_cause = ranked
            self._top[inc.id] = ranked[0]["service"] if ranked else None
        return replace(inc, features=dict(inc.features), services=dict(inc.services),
                       root_cause=list(inc.root_cause))
