"""Alertmanager's webhook payload (version 4) as pydantic models; unknown keys are ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from remediation.trigger import Trigger


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Alert(_Lenient):
    """One alert; field names are Alertmanager's own (camelCase)."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=256)

    def trigger(self) -> Trigger:
        return Trigger(source="alertmanager", fingerprint=self.fingerprint, status=self.status,
                       starts_at=self.startsAt.timestamp(), labels=dict(self.labels),
                       annotations=dict(self.annotations))


class Notification(_Lenient):
    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    notification_reason: str | None = None
    alerts: list[Alert] = Field(max_length=10_000)


class Accepted(BaseModel):
    accepted: int
    queued: int
