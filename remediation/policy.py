"""Remediation policy: YAML rules (what to match, the action ladder) and guard settings, validated
with errors that point at the file's line and the field."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

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
from pydantic_core import PydanticCustomError

from remediation.actions import is_secret_key
from remediation.hooks.base import HookParamError, HookRegistry
from remediation.retry import Retry
from remediation.templating import (
    ALERT_SCOPES,
    TemplateError,
    check_promql,
    check_reference,
    references,
    render,
)
from remediation.trigger import Trigger


class PolicyError(ValueError):
    """A policy file that cannot be used; `problems` are 'FILE:LINE: field: message' lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CredentialError(RuntimeError):
    """A declared credential that cannot be read now (its file or variable is missing/empty)."""


class Credential(_Strict):
    """Where a credential lives: a file (its content, surrounding whitespace stripped) or an
    environment variable, named in the policy; read each time an action needs it (so a rotated
    file is picked up), never from alert data and never stored."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Credential:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file or env")
        return self

    def read(self, name: str) -> str:
        if self.file is not None:
            try:
                value = self.file.read_text().strip()
            except OSError as exc:
                raise CredentialError(f"${{credentials.{name}}}: file {self.file}: "
                                      f"{exc.strerror or exc}") from exc
            where = f"file {self.file}"
        else:
            value = os.environ.get(str(self.env), "").strip()
            where = f"${self.env}"
        if not value:
            raise CredentialError(f"${{credentials.{name}}}: {where} is empty or unset")
        return value


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

    def describe(self) -> str:
        """What the condition asks, in words."""
        if self.equals is not None:
            return repr(self.equals)
        if self.regex is not None:
            return f"matching /{self.regex}/"
        return f"one of {self.in_}"

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
        return not self.failures(t)

    def failures(self, t: Trigger) -> list[str]:
        """Each condition `t` fails, in words (empty when the rule matches).

        >>> m = Match(source=["detector"], labels={"service": "cart"}, kind=["error"])
        >>> for f in m.failures(Trigger("alertmanager", "f", "firing", 0.0,
        ...                             labels={"service": "db"})):
        ...     print(f)
        source is 'alertmanager', not one of ['detector']
        label service is 'db', not 'cart'
        kind is none, not one of ['error']
        """
        out = []
        if self.source is not None and t.source not in self.source:
            out.append(f"source is {t.source!r}, not one of {self.source}")
        for k, m in self.labels.items():
            if not m.matches(t.labels.get(k)):
                out.append(f"label {k} is {_shown(t.labels.get(k))}, not {m.describe()}")
        if self.severity is not None and t.severity not in self.severity:
            out.append(f"severity is {_shown(t.severity or None)}, not one of {self.severity}")
        if self.root_cause is not None and (t.root_cause or t.service) not in self.root_cause:
            out.append(f"root cause is {_shown(t.root_cause or t.service or None)}, not one of "
                       f"{self.root_cause}")
        if self.kind is not None and t.kind not in self.kind:
            out.append(f"kind is {_shown(t.kind)}, not one of {self.kind}")
        return out


_ALIASES = {"for_s": "for", "interval_s": "interval"}  # field names as the YAML spells them
_POINT_AT = {"verify_and_success": ("success",), "for_beyond_wait": ("verify", "for")}


def _shown(v: str | None) -> str:
    return "none" if v is None else repr(v)


class HttpCheck(_Strict):
    """Success when GET `url` answers 2xx and its JSON `field` (dotted) is below `below`."""

    url: str
    field: str
    below: float
    interval_s: float = Field(default=2.0, gt=0)


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a duration string: `60s`, `2m`, `1h`, `500ms`, `1m30s`.

    >>> parse_duration(60), parse_duration("60s"), parse_duration("2m"), parse_duration("1m30s")
    (60.0, 60.0, 120.0, 90.0)
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ...
    ValueError: 'soon' is not a duration: use seconds or a string like 60s, 2m, 1h, 500ms
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
        if not text or "".join(n + u for n, u in parts) != text:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a duration: use seconds or a string like "
                                 "60s, 2m, 1h, 500ms") from None
        else:
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{value!r}: a duration is a finite number of seconds >= 0")
    return seconds


class Verify(_Strict):
    """How to tell an action worked (a rung's `verify:`, formerly `success:`): the trigger
    resolved (`resolved`, the default), an HTTP check passes, or a PromQL condition holds for
    `for` (probed every `interval`). Any one of those asked for is enough."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    resolved: bool = True
    http: HttpCheck | None = None
    # Holds when the instant query returns a non-empty vector (as an alerting rule fires): a
    # comparison such as `rate(x[30s]) < 0.1` filters to empty when false; a scalar result holds
    # when non-zero.
    promql: str | None = Field(default=None, min_length=1)
    for_s: float = Field(default=0.0, alias="for", ge=0)
    interval_s: float = Field(default=5.0, alias="interval", gt=0)

    @field_validator("for_s", "interval_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _needs_promql(self) -> Verify:
        given = self.model_fields_set & {"for_s", "interval_s"}
        if given and self.promql is None:
            names = " and ".join(sorted(type(self).model_fields[f].alias or f for f in given))
            raise ValueError(f"{names} {'apply' if len(given) > 1 else 'applies'} to a promql "
                             "condition, and there is no promql")
        return self

    @property
    def live(self) -> bool:
        """Whether it asks a live service (the HTTP check, Prometheus), not only the trigger."""
        return self.http is not None or self.promql is not None


Success = Verify  # the old name of `verify:`


class PrometheusSettings(_Strict):
    """Where `verify.promql` conditions are queried (`/api/v1/query`); the URL is literal."""

    url: str
    timeout_s: float = Field(default=5.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _literal(cls, v: str) -> str:
        parts = urlsplit(v)
        if "${" in v or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r}: an http(s) URL with a literal host (no ${{...}})")
        return v.rstrip("/")


class Rung(_Strict):
    name: str
    hook: str
    params: dict[str, Any] = Field(default_factory=dict)
    target: str = "${trigger.service}"
    restart: bool = False  # counts towards restart-loop protection
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    wait_s: float = Field(default=120.0, ge=0, le=86_400)
    verify: Verify = Field(default_factory=Verify)  # `success:` is its old name
    secrets: list[str] = Field(default_factory=list)
    # A command whose argv runs a shell or inline code is refused unless this says otherwise
    # (and then warned about): trigger data in its VIGIL_* variables is one `eval` from code.
    allow_shell: bool = False
    # When the engine died while this step ran: retry it, or escalate to a person. Default:
    # retry if its hook says the step is idempotent (log; http GET/PUT/DELETE; kubernetes scale
    # and throttle), else escalate.
    on_interrupt: Literal["retry", "escalate"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _success_is_verify(cls, data: Any) -> Any:
        if isinstance(data, dict) and "success" in data:
            if "verify" in data:
                raise PydanticCustomError(
                    "verify_and_success", "give verify (or its old name success), not both")
            data = {("verify" if k == "success" else k): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _for_within_wait(self) -> Rung:
        if self.verify.for_s > self.wait_s:
            raise PydanticCustomError(
                "for_beyond_wait", f"{self.verify.for_s:g}s is longer than the rung's wait_s "
                f"({self.wait_s:g}s): the condition could never hold that long within it")
        return self

    @property
    def success(self) -> Verify:
        """The old name of `verify`."""
        return self.verify


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


Retries = Retry  # guards.retries: {attempts, base_s, max_s}, Vigil's one retry shape


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
    prometheus: PrometheusSettings | None = None  # where verify.promql conditions are queried
    # Credentials by name, referenced as ${credentials.NAME} (from files or the environment).
    credentials: dict[str, Credential] = Field(default_factory=dict)
    # Alert fields redacted before anything stores or uses them, besides those whose names look
    # secret (token, password, ...): "annotations.NAME" or "labels.NAME".
    secret_fields: list[str] = Field(default_factory=list)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @field_validator("secret_fields")
    @classmethod
    def _fields(cls, v: list[str]) -> list[str]:
        for i, f in enumerate(v):
            scope, _, name = f.partition(".")
            if scope not in ("labels", "annotations") or not name:
                raise ValueError(f"secret_fields[{i}]: {f!r}: use labels.NAME or annotations.NAME")
        return v

    @field_validator("credentials")
    @classmethod
    def _names(cls, v: dict[str, Credential]) -> dict[str, Credential]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                raise ValueError(f"credential name {name!r}: letters, digits, _ . - only")
        return v

    def is_secret_field(self, scope: str, name: str) -> bool:
        """Whether `${scope.name}` (labels or annotations) is redacted at intake."""
        return scope in ("labels", "annotations") and (
            f"{scope}.{name}" in self.secret_fields or is_secret_key(name))

    def redact_trigger(self, trigger: Trigger) -> Trigger:
        """`trigger` with its secret labels and annotations replaced by '***' (the same object
        when there are none): what the inbox, the audit, hooks and pages get.

        >>> p = Policy(secret_fields=["labels.customer"])
        >>> t = p.redact_trigger(Trigger("manual", "f", "firing", 0.0, labels={"customer": "c1",
        ...     "service": "cart"}, annotations={"gateway_token": "s3", "summary": "slow"}))
        >>> t.labels, t.annotations
        ({'customer': '***', 'service': 'cart'}, {'gateway_token': '***', 'summary': 'slow'})
        """
        labels, annotations = trigger.labels, trigger.annotations
        if not any(self.is_secret_field("labels", k) and v for k, v in labels.items()) and \
                not any(self.is_secret_field("annotations", k) and v for k, v in annotations.items()):
            return trigger
        out = dataclasses.replace(
            trigger,
            labels={k: "***" if v and self.is_secret_field("labels", k) else v
                    for k, v in labels.items()},
            annotations={k: "***" if v and self.is_secret_field("annotations", k) else v
                         for k, v in annotations.items()})
        return out

    def credential_values(self, names: Iterable[str]) -> dict[str, str]:
        """The named credentials read now (`CredentialError` if one cannot be)."""
        out = {}
        for name in names:
            cred = self.credentials.get(name)
            if cred is None:
                raise CredentialError(f"${{credentials.{name}}} is not declared under credentials")
            out[name] = cred.read(name)
        return out

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
            loc = tuple(_ALIASES.get(x, x) if isinstance(x, str) else x for x in loc)
            loc = (*loc, *_POINT_AT.get(e["type"], ()))
            if "verify" in loc:  # said as the policy spells it (`success:`, the old name)
                k = loc.index("verify")
                if (*loc[:k], "success") in lines:
                    loc = (*loc[:k], "success", *loc[k + 1:])
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
            for keys, problem in _secret_problems(policy, rung.params, frozenset(rung.secrets)):
                problems.append(f"{at((*loc, 'params', *keys))}: {_dotted(loc)}: {problem}")
            if rung.verify.promql is not None:
                vloc = (*loc, "success" if (*loc, "success") in lines else "verify")
                if policy.prometheus is None:
                    problems.append(f"{at((*vloc, 'promql'))}: {_dotted(vloc)}.promql: no "
                                    "Prometheus to ask: set prometheus: {url: http://HOST:9090} "
                                    "at the top of the policy")
                try:
                    check_promql(rung.verify.promql)
                except TemplateError as exc:
                    problems.append(f"{at((*vloc, 'promql'))}: {_dotted(vloc)}.promql: {exc}")
                for ref in references(rung.verify.promql):
                    scope, _, field = ref.partition(".")
                    if policy.is_secret_field(scope, field):
                        problems.append(f"{at((*vloc, 'promql'))}: {_dotted(vloc)}.promql: "
                                        f"${{{ref}}} is a secret field: it is redacted when the "
                                        "alert arrives")
            if references(rung.target) and any(r.startswith("credentials.")
                                               for r in references(rung.target)):
                problems.append(f"{at((*loc, 'target'))}: {_dotted(loc)}.target: a credential "
                                "cannot name a target (targets are audited)")
    if policy.page is not None:
        for key, value in policy.page.headers.items():
            for ref in references(value):
                scope, _, field = ref.partition(".")
                if scope != "credentials":
                    problems.append(f"{at(('page', 'headers', key))}: page.headers.{key}: only "
                                    f"${{credentials.NAME}} here, not ${{{ref}}}")
                elif field not in policy.credentials:
                    problems.append(f"{at(('page', 'headers', key))}: page.headers.{key}: "
                                    f"${{{ref}}} is not declared under credentials")
    if problems:
        raise PolicyError(problems)
    # A third-party hook that failed to load is said where the policy is read (policy check,
    # serve's start), not only kept in the registry: a rule naming it fails as an unknown hook.
    warnings += [f"warning: {e}" for e in registry.errors]
    policy._warnings = warnings
    return policy


def _secret_problems(policy: Policy, params: Any, secrets: frozenset[str],
                     path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(key path, problem) for credentials taken from alert data, references to fields that are
    redacted at intake, and undeclared credentials, anywhere in a rung's params."""
    out: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(params, dict):
        for k, v in params.items():
            out += _secret_problems(policy, v, secrets, (*path, k))
            if isinstance(v, str) and is_secret_key(k, secrets):
                alert = [r for r in references(v) if r.partition(".")[0] in ALERT_SCOPES]
                if alert:
                    out.append(((*path, k), _from_alert(_dotted(("params", *path, k)), alert)))
            if k == "url" and not path and isinstance(v, str):
                for qk, qv in parse_qsl(urlsplit(v).query):
                    alert = [r for r in references(qv) if r.partition(".")[0] in ALERT_SCOPES]
                    if alert and is_secret_key(qk, secrets):
                        out.append(((k,), _from_alert(f"params.url (query {qk})", alert)))
        return out
    if isinstance(params, list):
        for i, v in enumerate(params):
            out += _secret_problems(policy, v, secrets, (*path, i))
        return out
    for ref in references(params):
        scope, _, name = ref.partition(".")
        if policy.is_secret_field(scope, name):
            out.append((path, f"${{{ref}}} is a secret field: it is redacted when the alert "
                              "arrives and never reaches a hook; declare a credential instead"))
        elif scope == "credentials" and name not in policy.credentials:
            out.append((path, f"${{{ref}}} is not declared under credentials"))
    return out


def _from_alert(field: str, refs: list[str]) -> str:
    shown = ", ".join(f"${{{r}}}" for r in refs)
    return (f"{field}: a credential cannot come from alert data ({shown}): anyone who can send "
            "an alert would choose it, and it would be stored; declare it under credentials "
            "(a file or an environment variable) and use ${credentials.NAME}")


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
