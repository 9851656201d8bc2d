"""The `Hook` protocol, parameter errors, and the registry (built-ins plus the entry-point group
`vigil.remediation_hooks`)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from remediation.actions import Action
from remediation.trigger import Trigger

ENTRY_POINT_GROUP = "vigil.remediation_hooks"


class HookParamError(ValueError):
    """A rung's params that this hook cannot use; the message names the param."""


@runtime_checkable
class Hook(Protocol):
    """A way to act. `validate` checks a rung's params when the policy loads (templates still in
    place) and returns them normalised; `run` acts once. `run` may be a coroutine function or a
    plain one (then it runs in a worker thread); the engine applies the rung's timeout either way,
    so a hung hook never blocks intake.

    Optional, looked up by name: `prepare(action, trigger) -> None`, a quick check without side
    effects that raises `remediation.actions.InputError` when the trigger's data cannot make the
    call (the engine runs it before any guard counts the action; `run` may raise `InputError`
    too); and `idempotent(params) -> bool`, whether running the step twice does no more than
    once (an interrupted step of an idempotent hook is retried, otherwise escalated)."""

    name: str

    def validate(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def run(self, action: Action, trigger: Trigger) -> Any: ...


def builtin_hooks() -> dict[str, Hook]:
    from remediation.hooks.command import CommandHook
    from remediation.hooks.http import HttpHook
    from remediation.hooks.kubernetes import KubernetesHook
    from remediation.hooks.log import LogHook

    hooks: list[Hook] = [HttpHook(), CommandHook(), KubernetesHook(), LogHook()]
    return {h.name: h for h in hooks}


class HookRegistry:
    """Hooks by name: the built-ins, then third-party ones from entry points (a name clash with a
    built-in is an error, not a silent override)."""

    def __init__(self, hooks: dict[str, Hook] | None = None, load_entry_points: bool = True) -> None:
        self.hooks: dict[str, Hook] = dict(builtin_hooks() if hooks is None else hooks)
        self.errors: list[str] = []
        if load_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    obj = ep.load()
                    hook = obj() if isinstance(obj, type) else obj
                except Exception as exc:  # a broken plugin must not take Vigil down
                    self.errors.append(f"hook {ep.name!r} ({ep.value}) failed to load: {exc}")
                    continue
                self.add(hook, origin=ep.value)

    def add(self, hook: Any, origin: str = "") -> None:
        if not isinstance(hook, Hook):
            self.errors.append(f"{origin or hook!r} is not a Hook (needs name, validate, run)")
            return
        if hook.name in self.hooks:
            self.errors.append(f"hook name {hook.name!r} from {origin} is taken")
            return
        self.hooks[hook.name] = hook

    def get(self, name: str) -> Hook:
        try:
            return self.hooks[name]
        except KeyError:
            raise HookParamError(f"unknown hook {name!r}; known: {', '.join(sorted(self.hooks))}") \
                from None

