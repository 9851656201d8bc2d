"""What one rung of a rule becomes for one trigger: the `Action` the engine runs, and what
`vigil policy test` shows of it. One function, so the preview cannot drift from the engine."""

from __future__ import annotations

from typing import Any

from remediation.actions import Action, redact
from remediation.policy import Policy, Rule, Rung, render_target
from remediation.templating import SHOWN, references, render
from remediation.trigger import Trigger


def plan_action(policy: Policy, rule: Rule, i: int, rung: Rung, trigger: Trigger,
                read_credentials: bool = True) -> Action:
    """Rung `i` of `rule` resolved against `trigger`. Its `${credentials.NAME}` values are read
    now when `read_credentials` (a rotated file is picked up; `CredentialError` when one cannot
    be read); a preview leaves them out. Raises `TemplateError` when the trigger cannot fill the
    target."""
    names = sorted({r.partition(".")[2] for r in references(rung.params)
                    if r.startswith("credentials.")})
    return Action(rule=rule.name, rung=i, rung_name=rung.name, hook=rung.hook,
                  target=render_target(rung, trigger), params=rung.params,
                  timeout_s=rung.timeout_s, wait_s=rung.wait_s, episode=trigger.episode,
                  secrets=frozenset(rung.secrets), restart=rung.restart,
                  credentials=policy.credential_values(names) if read_credentials else {})


def shown_params(action: Action, trigger: Trigger) -> dict[str, Any]:
    """The params as the audit would show them: rendered, credentials as `${credentials.NAME}`,
    secret fields as '***'."""
    shown: dict[str, Any] = redact(render(action.params, trigger, False, SHOWN), action.secrets)
    return shown
