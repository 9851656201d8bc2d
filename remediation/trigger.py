"""`Trigger`: what remediation acts on, from the detector's incidents or Alertmanager's alerts."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Source = Literal["detector", "alertmanager", "manual"]
Status = Literal["firing", "resolved"]


class TriggerError(ValueError):
    """A trigger that cannot be used, with what is wrong."""


@dataclass(slots=True)
class Trigger:
    """One alert episode: `fingerprint` names the alert, `starts_at` the episode.

    `labels` are the matchable facts (service, severity, alertname, namespace, ...); for the
    detector's incidents, `root_cause` and `kind` (error / latency / ...) come from the
    incident. Values are strings: they are data, never code.

    >>> t = Trigger.from_dict({"source": "alertmanager", "fingerprint": "abc", "status": "firing",
    ...                        "starts_at": 100.0, "labels": {"service": "cart", "severity": "page"}})
    >>> t.episode, t.severity, t.service
    ('abc@100.000', 'page', 'cart')
    """

    source: Source
    fingerprint: str
    status: Status
    starts_at: float  # epoch seconds
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    root_cause: str | None = None
    kind: str | None = None
    # (fingerprint, start): resends of one alert episode share it; a new episode does not.
    episode: str = field(init=False, default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        self.episode = f"{self.fingerprint}@{self.starts_at:.3f}"

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def service(self) -> str:
        """The service the trigger is about: its root cause, else a `service`/`job`/`app` label."""
        return self.root_cause or next(
            (self.labels[k] for k in ("service", "job", "app") if self.labels.get(k)), "")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fingerprint": self.fingerprint, "status": self.status,
                "starts_at": self.starts_at, "labels": dict(self.labels),
                "annotations": dict(self.annotations), "root_cause": self.root_cause,
                "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trigger:
        if not isinstance(d, dict):
            raise TriggerError("a trigger is a JSON object")
        missing = [k for k in ("source", "fingerprint", "status", "starts_at") if k not in d]
        if missing:
            raise TriggerError(f"trigger lacks {', '.join(missing)}")
        if d["source"] not in ("detector", "alertmanager", "manual"):
            raise TriggerError(f"source {d['source']!r}: use detector, alertmanager or manual")
        if d["status"] not in ("firing", "resolved"):
            raise TriggerError(f"status {d['status']!r}: use firing or resolved")
        starts = epoch_or_rfc3339(d["starts_at"])
        if starts is None:
            raise TriggerError(f"starts_at {d['starts_at']!r}: give epoch seconds or an RFC 3339 "
                               "time (2026-12-01T12:04:10Z)")
        labels, annotations = d.get("labels") or {}, d.get("annotations") or {}
        for name, m in (("labels", labels), ("annotations", annotations)):
            if not isinstance(m, dict) or not all(isinstance(k, str) for k in m):
                raise TriggerError(f"{name} must be an object of strings")
        for name in ("root_cause", "kind"):
            if d.get(name) is not None and not isinstance(d[name], str):
                raise TriggerError(f"{name} must be a string or null")
        return cls(
            source=d["source"], fingerprint=str(d["fingerprint"]), status=d["status"],
            starts_at=starts, labels={k: str(v) for k, v in labels.items()},
            annotations={k: str(v) for k, v in annotations.items()},
            root_cause=d.get("root_cause"), kind=d.get("kind"),
        )


def epoch_or_rfc3339(v: Any) -> float | None:
    """Epoch seconds of a number, a numeric string or an RFC 3339 time; None when it is none.

    >>> epoch_or_rfc3339(100), epoch_or_rfc3339("2026-12-01T12:00:00Z"), epoch_or_rfc3339("soon")
    (100.0, 1796126400.0, None)
    """
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None
    if not isinstance(v, str):
        return None
    try:
        return float(v)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(v.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def fingerprint(labels: dict[str, str]) -> str:
    """A stable fingerprint of a label set (order does not matter).

    >>> fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})
    True
    """
    text = "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
