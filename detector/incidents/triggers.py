"""The detector's incidents as remediation `Trigger`s (the one place detector meets remediation)."""

from __future__ import annotations

from typing import Any

from remediation.trigger import Trigger

_KINDS = {"error_ratio": "error", "latency_p50": "latency", "latency_p95": "latency",
          "latency_p99": "latency", "rate": "traffic", "new_template_share": "new_template",
          "rare_template_share": "rare_template"}


def incident_trigger(incident: dict[str, Any]) -> Trigger:
    """A trigger for an incident record (`Incident.to_dict()`): the fingerprint is the incident's
    (its root-cause key), the episode starts at its opening, `root_cause` is the top candidate
    and `kind` the feature family that moved most.

    >>> t = incident_trigger({"id": "inc-cart-1", "fingerprint": "root_cause=cart", "service": "cart",
    ...                       "status": "open", "opened_at": 100.0, "features": {"error_ratio": 3},
    ...                       "root_cause": [{"service": "db", "confidence": 0.9}],
    ...                       "top_explanation": "error ratio 0.6 vs baseline 0"})
    >>> t.source, t.status, t.root_cause, t.kind, t.labels["service"], t.episode
    ('detector', 'firing', 'db', 'error', 'cart', 'root_cause=cart@100.000')
    """
    ranked = incident.get("root_cause") or []
    root = ranked[0]["service"] if ranked else incident["service"]
    features: dict[str, int] = incident.get("features") or {}
    top = max(features, key=lambda f: features[f]) if features else None
    labels = {"service": str(incident["service"]), "incident": str(incident["id"]),
              "severity": "page"}
    if ranked:
        labels["confidence"] = f"{ranked[0].get('confidence', 0):.2f}"
    return Trigger(
        source="detector", fingerprint=str(incident["fingerprint"]),
        status="resolved" if incident.get("status") == "resolved" else "firing",
        starts_at=float(incident["opened_at"]), labels=labels,
        annotations={"summary": str(incident.get("top_explanation", ""))},
        root_cause=root, kind=_KINDS.get(top, top) if top else None,
    )
