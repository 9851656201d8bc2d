"""Remediation policy: YAML rules (what to match, the action ladder) and guard settings, validated
with errors that point at the file's line and the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from remediation.hooks.base import HookParamError, HookRegistry
from remediation.templating import TemplateError, check_reference, references, render
from remediation.trigger import Trigger


class PolicyError(ValueError):
    """A policy file that cannot be used; `problems` are 'FILE:LINE: field: message' lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelMatch(_Strict):
    """A label condition: exact value (a plain string in YAML), `regex`, or `in` a set."""

    equals: str | None = None
    regex: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"bad regex {v!r}: {exc}") from exc
        return v

    @model_validator(mode="after")
    def _one(self) -> LabelMatch:
        if sum(x is not None for x in (self.equals, self.regex, self.in_)) != 1:
            raise ValueError("give exactly one of a value, regex or in")
        return self

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.equals is not None:
            return value == self.equals
        if self.regex is not None:
            return re.fullmatch(self.regex, value) is not None
        return value in (self.in_ or [])


class Match(_Strict):
    source: list[Literal["detector", "alertmanager", "manual"]] | None = None
    labels: dict[str, LabelMatch] = Field(default_factory=dict)
    severity: list[str] | None = None
    root_cause: list[str] | None = None
    kind: list[str] | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _plain_values(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: {"equals": x} if isinstance(x, str) else x for k, x in v.items()}
        return v

    def matches(self, t: Trigger) -> bool:
        return ((self.source is None or t.source in self.source)
                and all(m.matches(t.labels.get(k)) for k, m in self.labels.items())
                and (self.severity is None or t.severity in self.severity)
                and (self.root_cause is None or (t.root_cause or t.service) in self.root_cause)
                and (self.kind is None or t.kind in self.kind))


class HttpCheck(_Strict):
    """Success when GET `url` answers 2xx and its JSON `field` (dotted) is below `below`."""

    url: str
    field: str
    below: float
    interval_s: float = Field(default=2.0, gt=0)


class Success(_Strict):
    """How to tell an action worked: the trigger resolved, and/or an HTTP check passes."""

    resolved: bool = True
    http: HttpCheck | None = None


class Rung(_Strict):
    name: str
    hook: str
    params: dict[str, Any] = Field(default_factory=dict)
    target: str = "${trigger.service}"
    restart: bool = False  # counts towards restart-loop protection
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    wait_s: float = Field(default=120.0, ge=0, le=86_400)
    success: Success = Field(default_factory=Success)
    secrets: list[str] = Field(default_factory=list)
    # A command whose argv runs a shell or inline code is refused unless this says otherwise
    # (and then warned about): trigger data in its VIGIL_* variables is one `eval` from code.
    allow_shell: bool = False


class Approval(_Strict):
    required: bool = True
    expires_s: float = Field(default=900.0, gt=0)


class Rule(_Strict):
    name: str
    match: Match = Field(default_factory=Match)
    ladder: list[Rung] = Field(min_length=1)
    approval: Approval | None = None


class Budget(_Strict):
    window_s: float = Field(default=3600.0, gt=0)
    max_actions: int = Field(default=20, ge=0)
    max_per_target: int = Field(default=3, ge=0)


class Breaker(_Strict):
    failures: int = Field(default=3, ge=1)
    reset_s: float = Field(default=300.0, gt=0)


class Retries(_Strict):
    attempts: int = Field(default=2, ge=0, le=10)
    base_s: float = Field(default=1.0, gt=0)
    max_s: float = Field(default=30.0, gt=0)


class RestartLoop(_Strict):
    max_restarts: int = Field(default=3, ge=1)
    window_s: float = Field(default=1800.0, gt=0)


class Page(_Strict):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)


class Guards(_Strict):
    cooldown_s: float = Field(default=300.0, ge=0)
    budget: Budget = Field(default_factory=Budget)
    max_concurrent: int = Field(default=4, ge=1)
    breaker: Breaker = Field(default_factory=Breaker)
    retries: Retries = Field(default_factory=Retries)
    restart_loop: RestartLoop = Field(default_factory=RestartLoop)


class Policy(_Strict):
    rules: list[Rule] = Field(default_factory=list)
    guards: Guards = Field(default_factory=Guards)
    page: Page | None = None
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """'FILE:LINE: field: warning: ...' lines for what loads but deserves a look (a shell
        allowed with allow_shell); `vigil policy check` prints them, `vigil serve` logs them."""
        return self._warnings

    def matching(self, trigger: Trigger) -> list[Rule]:
        return [r for r in self.rules if r.match.matches(trigger)]


def load_policy(path: Path | str, hooks: HookRegistry | None = None) -> Policy:
    """Parse and validate a policy file; every problem found is reported at once, with its line."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise PolicyError([f"{p}: {exc.strerror or exc}"]) from exc
    return parse_policy(text, str(p), hooks)


def parse_policy(text: str, name: str = "<policy>", hooks: HookRegistry | None = None) -> Policy:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise PolicyError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    lines = _line_map(node) if node is not None else {}
    data = data or {}
    if not isinstance(data, dict):
        raise PolicyError([f"{name}:1: a policy is a mapping with 'rules' (and 'guards', 'page')"])

    def at(loc: tuple[Any, ...]) -> str:
        for k in range(len(loc), -1, -1):
            line = lines.get(tuple(loc[:k]))
            if line is not None:
                return f"{name}:{line}"
        return name

    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x in (
                "function-after[_one(), LabelMatch]",)))
            loc = tuple("in" if x == "in_" else x for x in loc)
            problems.append(f"{at(loc)}: {_dotted(loc)}: {e['msg']}")
        raise PolicyError(problems) from exc
    problems = []
    warnings: list[str] = []
    registry = hooks or HookRegistry()
    seen: set[str] = set()
    for i, rule in enumerate(policy.rules):
        if rule.name in seen:
            problems.append(f"{at(('rules', i, 'name'))}: rules[{i}].name: {rule.name!r} is used twice")
        seen.add(rule.name)
        for j, rung in enumerate(rule.ladder):
            loc = ("rules", i, "ladder", j)
            try:
                hook = registry.get(rung.hook)
                rung.params = hook.validate(rung.params)
            except HookParamError as exc:
                problems.append(f"{at((*loc, 'hook'))}: {_dotted(loc)}: {exc}")
            else:
                shell = getattr(hook, "shell_use", None)
                why = shell(rung.params) if shell is not None else None
                if why and rung.allow_shell:
                    warnings.append(f"{at((*loc, 'params', 'argv'))}: {_dotted(loc)}: warning: {why} "
                                    "(allowed by allow_shell: true): never eval or expand VIGIL_* "
                                    "variables or stdin unquoted, they hold alert data")
                elif why:
                    problems.append(f"{at((*loc, 'params', 'argv'))}: {_dotted(loc)}: {rung.hook}: "
                                    f"{why}: alert data reaches it as VIGIL_* variables, one eval "
                                    "away from running as code; run the program directly, or set "
                                    "allow_shell: true on this rung if you must")
            for ref in references(rung.params) + references(rung.target):
                scope, _, field = ref.partition(".")
                try:
                    check_reference(scope, field)
                except TemplateError as exc:
                    problems.append(f"{at((*loc, 'params'))}: {_dotted(loc)}: {exc}")
    if problems:
        raise PolicyError(problems)
    policy._warnings = warnings
    return policy


def render_target(rung: Rung, trigger: Trigger) -> str:
    target = str(render(rung.target, trigger))
    return target or trigger.service or trigger.fingerprint


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for x in loc:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out or "(top)"


def _line_map(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """(key path) -> 1-based line of each node."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[(*path, key)] = k.start_mark.line + 1
            out.update({p: ln for p, ln in _line_map(v, (*path, key)).items() if p != (*path, key)})
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.update(_line_map(v, (*path, i)))
    return out
