"""Incidents: grouping anomalies of a service within a gap, stable ids, resolution."""

from __future__ import annotations

from detector.config import IncidentConfig
from detector.events import Anomaly
from detector.incidents.tracker import IncidentTracker, incident_id


def anomaly(service: str, start: float, feature: str = "error_ratio", score: float = 0.99999,
            ) -> Anomaly:
    return Anomaly(service, feature, start, start + 10, 0.3, 0.01, 0.01, score, "ewma",
                   f"{feature} at {start}", 100)


def test_anomalies_within_the_gap_join_one_incident() -> None:
    t = IncidentTracker(IncidentConfig(gap_seconds=30))
    opened = t.add([anomaly("cart", 0), anomaly("cart", 10, "latency_p99", 0.999999)])
    assert [i.status for i in opened] == ["open"]
    t.add([anomaly("cart", 40)])
    (inc,) = t.snapshot_open()
    assert inc.anomaly_count == 3 and inc.features == {"error_ratio": 2, "latency_p99": 1}
    assert inc.top_explanation == "latency_p99 at 10"
    assert inc.detected_at == 10.0 and inc.opened_at == 0.0


def test_an_incident_resolves_after_a_quiet_gap_and_a_new_one_gets_a_new_id() -> None:
    t = IncidentTracker(IncidentConfig(gap_seconds=30))
    (first,) = t.add([anomaly("cart", 0)])
    assert t.advance(40.0) == []
    (resolved,) = t.advance(41.0)
    assert (resolved.id, resolved.status, resolved.resolved_at) == (first.id, "resolved", 41.0)
    (second,) = t.add([anomaly("cart", 100)])
    assert second.id != first.id


def test_services_get_separate_incidents() -> None:
    t = IncidentTracker(IncidentConfig())
    opened = t.add([anomaly("cart", 0), anomaly("db", 0)])
    assert sorted(i.service for i in opened) == ["cart", "db"]


def test_ids_are_stable_across_runs() -> None:
    assert incident_id("cart", 1795435200.0) == incident_id("cart", 1795435200.0)
    assert incident_id("cart", 1795435200.0) != incident_id("cart", 1795435210.0)


def test_a_fleet_wide_outage_keys_every_service_once() -> None:
    """2,000 services anomalous in one window: each keys its own incident (the keying is linear
    in the anomalies; it compared every pair and took 2 s a window)."""
    from detector.config import VigilConfig
    from detector.events import Anomaly
    from detector.pipeline import Pipeline

    p = Pipeline(VigilConfig())
    names = [f"svc-{k}" for k in range(2000)]
    for n in names:
        p.services.id_of(n)
    found = [Anomaly(n, f, 0.0, 10.0, 0.4, 0.01, 0.01, 0.99999, "ewma", "x", 50)
             for n in names for f in ("error_ratio", "rate")]
    out = p.tracker.add(found)
    assert sorted(i.service for i in out) == sorted(names)
    assert p.tracker.opened == 2000


class Scripted(IncidentTracker):
    """A tracker whose keys (what the request evidence names) the test gives."""

    def __init__(self, keys: dict[tuple[str, float], str]) -> None:
        super().__init__(IncidentConfig(gap_seconds=30))
        self.script = keys

    def _keys(self, group: list[Anomaly]) -> list[str]:
        return [self.script.get((a.service, a.window_start), a.service) for a in group]


def test_a_cause_found_deeper_moves_the_open_incident_instead_of_opening_another() -> None:
    """cart's errors first, keyed at cart; then its requests name payments (crashing) as the
    cause: one fault, one incident (its id, the remediation episode, kept), now keyed payments."""
    t = Scripted({("cart", 10.0): "payments", ("cart", 20.0): "payments"})
    (first,) = t.add([anomaly("cart", 0)])
    assert t.add([anomaly("cart", 10)]) == []
    t.add([anomaly("cart", 20)])
    (inc,) = t.snapshot_open()
    assert (inc.id, inc.service, inc.fingerprint) == (first.id, "payments", "root_cause=payments")
    assert inc.anomaly_count == 3 and t.opened == 1


def test_an_unrelated_cause_still_opens_its_own_incident() -> None:
    t = Scripted({("db", 10.0): "db", ("catalog", 10.0): "payments"})
    t.add([anomaly("cart", 0)])
    opened = t.add([anomaly("db", 10), anomaly("catalog", 10)])  # not members of cart's incident
    assert sorted(i.service for i in opened) == ["db", "payments"]
    assert sorted(i.service for i in t.snapshot_open()) == ["cart", "db", "payments"]
