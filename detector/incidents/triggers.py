"""The detector's incidents as remediation `Trigger`s (the one place detector meets remediation).

An incident's lifecycle is a trigger's: it opens and names a root cause (firing), names another
(firing again: the same episode, whose later steps act on the new cause), resolves (resolved).
The episode is the incident id, so every record of one incident, however often it is delivered,
is one episode to the engine.
"""

from __future__ import annotations

import json
from typing import Any

from remediation.trigger import Trigger

_KINDS = {"error_ratio": "error", "latency_p50": "latency", "latency_p95": "latency",
          "latency_p99": "latency", "rate": "traffic", "new_template_share": "new_template",
          "rare_template_share": "rare_template"}
# The evidence numbers of the top root cause worth carrying to a hook or a page.
_EVIDENCE = ("requests", "errors", "latency", "network", "templates", "metrics", "cut", "load",
             "share_of_anomalous_requests", "onset")


def incident_trigger(incident: dict[str, Any]) -> Trigger:
    """A trigger for an incident record (`Incident.to_dict()`): the fingerprint is the incident's
    id and the episode starts at its opening; `root_cause` is the top candidate, `kind` the
    feature family that moved most, and the labels carry the match keys (`service`: the
    incident's key, `kinds`: every family that moved, `confidence`, `severity`). The summary,
    the ranking and the top cause's evidence are annotations.

    >>> t = incident_trigger({"id": "inc-cart-1", "fingerprint": "root_cause=cart", "service": "cart",
    ...                       "status": "open", "opened_at": 100.0, "features": {"error_ratio": 3},
    ...                       "root_cause": [{"service": "db", "confidence": 0.9}],
    ...                       "top_explanation": "error ratio 0.6 vs baseline 0"})
    >>> t.source, t.status, t.root_cause, t.kind, t.labels["service"], t.episode
    ('detector', 'firing', 'db', 'error', 'cart', 'inc-cart-1@100.000')
    >>> t.annotations["ranking"]
    'db 0.90'
    """
    ranked = [r for r in incident.get("root_cause") or [] if isinstance(r, dict)]
    root = str(ranked[0]["service"]) if ranked else str(incident["service"])
    features: dict[str, int] = incident.get("features") or {}
    top = max(features, key=lambda f: features[f]) if features else None
    kinds = sorted({_KINDS.get(f, f) for f in features})
    labels = {"service": str(incident["service"]), "incident": str(incident["id"]),
              "incident_key": str(incident.get("fingerprint", "")), "severity": "page",
              "kinds": ",".join(kinds)}
    if ranked:
        labels["confidence"] = f"{ranked[0].get('confidence', 0):.2f}"
    annotations = {"summary": str(incident.get("top_explanation", "")),
                   "first": str(incident.get("first_explanation", "")),
                   "ranking": ", ".join(f"{r['service']} {r.get('confidence', 0):.2f}"
                                        for r in ranked[:5])}
    evidence = ranked[0].get("evidence") if ranked else None
    if isinstance(evidence, dict):
        annotations["evidence"] = json.dumps(
            {k: evidence[k] for k in _EVIDENCE if k in evidence}, sort_keys=True)
    return Trigger(
        source="detector", fingerprint=str(incident["id"]),
        status="resolved" if incident.get("status") == "resolved" else "firing",
        starts_at=float(incident["opened_at"]), labels=labels, annotations=annotations,
        root_cause=root, kind=_KINDS.get(top, top) if top else None,
    )


def incident_time(incident: dict[str, Any]) -> float:
    """When the detector could first have told this record (event time): a resolution at its
    resolution, an opening at its detection, a later revision at its last anomaly.

    >>> incident_time({"status": "open", "revision": 0, "detected_at": 110.0, "last_anomaly_at": 150.0})
    110.0
    >>> incident_time({"status": "resolved", "resolved_at": 200.0, "detected_at": 110.0})
    200.0
    """
    if incident.get("status") == "resolved" and incident.get("resolved_at") is not None:
        return float(incident["resolved_at"])
    if not incident.get("revision"):
        return float(incident.get("detected_at") or incident["opened_at"])
    return float(incident.get("last_anomaly_at") or incident["opened_at"])


def trigger_message(incident: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """What `vigil consume --triggers-topic` produces for an incident record: the key (the
    trigger's target service, so every trigger about one target lands on one partition, in
    order) and the value (`Trigger.to_dict()` plus `event_time`, `incident_time` of the record),
    which `Trigger.from_dict` reads back.

    >>> key, value = trigger_message({"id": "inc-cart-1", "fingerprint": "root_cause=db",
    ...     "service": "cart", "status": "open", "opened_at": 100.0, "detected_at": 110.0,
    ...     "root_cause": [{"service": "db", "confidence": 0.9}]})
    >>> key, value["fingerprint"], value["event_time"], Trigger.from_dict(value).episode
    (b'db', 'inc-cart-1', 110.0, 'inc-cart-1@100.000')
    """
    trigger = incident_trigger(incident)
    return trigger_key(trigger), {**trigger.to_dict(), "event_time": incident_time(incident)}


def trigger_key(trigger: Trigger) -> bytes:
    """The Kafka key of a trigger on the triggers topic, whoever produces it (`vigil consume`,
    `vigil serve --triggers-topic`): its target service (`Trigger.service`), so one target's
    triggers stay in order on one partition, owned by one `vigil remediate` replica.

    >>> trigger_key(Trigger("alertmanager", "fp", "firing", 1.0, labels={"job": "cart"}))
    b'cart'
    """
    return trigger.service.encode()
