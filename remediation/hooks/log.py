"""The `log` hook: records the action and does nothing else (what dry-run amounts to)."""

from __future__ import annotations

from typing import Any

from remediation.actions import Action, Outcome
from remediation.trigger import Trigger


class LogHook:
    name = "log"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)

    def idempotent(self, params: dict[str, Any]) -> bool:
        return True

    async def run(self, action: Action, trigger: Trigger) -> Outcome:
        return Outcome(True, f"logged {action.rung_name} of {action.target} for {trigger.episode}")
