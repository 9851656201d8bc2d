"""Groups anomalies into incidents per service: open on the first anomaly, resolve after a quiet gap.

An incident's id is derived from its service and the start of its first anomalous window, so the
same replay always yields the same ids. Root-cause ranking across services comes later; here the
fingerprint is the service.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from detector.config import IncidentConfig
from detector.events import Anomaly, Incident


def incident_id(service: str, opened_at: float) -> str:
    """Stable id of the incident of `service` whose first anomalous window starts at `opened_at`.

    >>> incident_id("payments", 1795435200.0)
    'inc-payments-5289aecfe34c'
    """
    digest = hashlib.sha1(f"{service}|{opened_at:.3f}".encode()).hexdigest()[:12]
    return f"inc-{service}-{digest}"


class IncidentTracker:
    """Keeps the open incident of each service; returns incident snapshots as they change state.

    >>> from detector.config import IncidentConfig
    >>> from detector.events import Anomaly
    >>> t = IncidentTracker(IncidentConfig(gap_seconds=30))
    >>> a = Anomaly("cart", "error_ratio", 0.0, 10.0, 0.4, 0.01, 0.01, 0.99999, "ewma", "x", 50)
    >>> [i.status for i in t.add([a])], [i.status for i in t.advance(20.0)]
    (['open'], [])
    >>> [i.status for i in t.advance(41.0)]
    ['resolved']
    """

    def __init__(self, cfg: IncidentConfig) -> None:
        self.cfg = cfg
        self.open: dict[str, Incident] = {}

    def add(self, anomalies: list[Anomaly]) -> list[Incident]:
        """Fold anomalies in; returns snapshots of the incidents that changed state, in order."""
        changes: list[Incident] = []
        for a in sorted(anomalies, key=lambda x: (x.window_start, -x.score)):
            inc = self.open.get(a.service)
            if inc is not None and a.window_start - inc.last_anomaly_at > self.cfg.gap_seconds:
                changes.append(self._resolve(inc, inc.last_anomaly_at + self.cfg.gap_seconds))
                inc = None
            if inc is None:
                inc = Incident(
                    id=incident_id(a.service, a.window_start),
                    fingerprint=f"service={a.service}",
                    service=a.service,
                    status="open",
                    opened_at=a.window_start,
                    detected_at=a.window_end,
                    last_anomaly_at=a.window_end,
                    first_explanation=a.explanation,
                )
                self.open[a.service] = inc
                changes.append(inc)
            inc.last_anomaly_at = max(inc.last_anomaly_at, a.window_end)
            inc.anomaly_count += 1
            inc.features[a.feature] = inc.features.get(a.feature, 0) + 1
            if a.score > inc.max_score:  # ties keep the earliest, closest to onset
                inc.max_score = a.score
                inc.top_explanation = a.explanation
        return [self._snapshot(i) if i.status == "open" else i for i in changes]

    def advance(self, now: float) -> list[Incident]:
        """Resolve incidents with no anomaly for `gap_seconds` of event time before `now`."""
        done = [i for i in self.open.values() if now - i.last_anomaly_at > self.cfg.gap_seconds]
        out = []
        for inc in sorted(done, key=lambda i: i.opened_at):
            out.append(self._resolve(inc, now))
        return out

    def snapshot_open(self) -> list[Incident]:
        return [self._snapshot(i) for i in sorted(self.open.values(), key=lambda i: i.opened_at)]

    def _resolve(self, inc: Incident, now: float) -> Incident:
        inc.status = "resolved"
        inc.resolved_at = now
        self.open.pop(inc.service, None)
        return self._snapshot(inc)

    @staticmethod
    def _snapshot(inc: Incident) -> Incident:
        return replace(inc, features=dict(inc.features))
