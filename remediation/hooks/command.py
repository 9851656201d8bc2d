"""The `command` hook: run an argv list, never through a shell. Trigger data reaches the program
only as `VIGIL_*` environment variables and as JSON on stdin; output is captured, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import tempfile
from typing import Any

from remediation.actions import Action, InputError, Outcome
from remediation.hooks.base import HookParamError
from remediation.trigger import Trigger

MAX_OUTPUT = 16_384  # bytes of stdout and of stderr kept for the audit
MAX_VARIABLE = 131_072  # bytes of one NAME=value (Linux's MAX_ARG_STRLEN; exec fails past it)
MAX_ENVIRONMENT = 1 << 20  # bytes of all VIGIL_* variables together (well inside ARG_MAX)
_ENV_NAME = re.compile(r"[^A-Z0-9_]")


def trigger_env(action: Action, trigger: Trigger) -> dict[str, str]:
    """VIGIL_* variables for a trigger (label names upper-cased, other characters as `_`).

    >>> from remediation.actions import Action
    >>> a = Action("r", 0, "restart", "command", "cart", {}, 5.0, 0.0, "e")
    >>> t = Trigger("manual", "f1", "firing", 0.0, labels={"service": "cart", "k8s.ns": "x;y"})
    >>> env = trigger_env(a, t)
    >>> env["VIGIL_LABEL_K8S_NS"], env["VIGIL_TARGET"], env["VIGIL_FINGERPRINT"]
    ('x;y', 'cart', 'f1')
    """
    env = {
        "VIGIL_RULE": action.rule, "VIGIL_RUNG": action.rung_name, "VIGIL_TARGET": action.target,
        "VIGIL_EPISODE": action.episode, "VIGIL_FINGERPRINT": trigger.fingerprint,
        "VIGIL_STATUS": trigger.status, "VIGIL_SOURCE": trigger.source,
        "VIGIL_SERVICE": trigger.service,
    }
    for k, v in trigger.labels.items():
        env["VIGIL_LABEL_" + _ENV_NAME.sub("_", k.upper())] = v.replace("\0", "")
    return env


class CommandHook:
    """Params: `argv` (a list of literal strings: no `${...}`, trigger data goes through the
    environment and stdin instead), `env` (extra literal variables), `cwd`. The child starts in
    its own process group and the whole group is killed on timeout."""

    name = "command"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        p = dict(params)
        argv = p.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise HookParamError("command: 'argv' must be a non-empty list of strings")
        if any("${" in a for a in argv):
            raise HookParamError("command: argv cannot use ${...}; read VIGIL_* variables or the "
                                 "JSON on stdin in the program instead")
        env = p.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise HookParamError("command: 'env' must map names to strings")
        return p

    def idempotent(self, params: dict[str, Any]) -> bool:
        return False  # a program's effects are its own: never assumed safe to repeat

    def prepare(self, action: Action, trigger: Trigger) -> None:
        """`InputError` when the trigger's variables cannot be passed to a program: one over
        `MAX_VARIABLE` bytes, all of them over `MAX_ENVIRONMENT`, or text that is not UTF-8."""
        total = 0
        for name, value in trigger_env(action, trigger).items():
            try:
                size = len(name) + 1 + len(value.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise InputError(f"{name}: the value is not encodable as UTF-8 ({exc.reason})"
                                 ) from exc
            if size > MAX_VARIABLE:
                raise InputError(f"{name} would be {size} bytes (at most {MAX_VARIABLE})")
            total += size
        if total > MAX_ENVIRONMENT:
            raise InputError(f"the trigger's variables would be {total} bytes "
                             f"(at most {MAX_ENVIRONMENT})")

    async def run(self, action: Action, trigger: Trigger) -> Outcome:
        p = action.params
        self.prepare(action, trigger)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **p.get("env", {}),
               **trigger_env(action, trigger)}
        stdin = json.dumps({"trigger": trigger.to_dict(), "rule": action.rule,
                            "rung": action.rung_name, "target": action.target}).encode()
        # Files, not pipes, for stdin and output: the hook waits for the process to exit, not for
        # EOF, so a restart script whose new daemon keeps the descriptors open cannot hang it.
        with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
                tempfile.TemporaryFile() as ferr:
            fin.write(stdin)
            fin.seek(0)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *p["argv"], stdin=fin, stdout=fout, stderr=ferr, env=env, cwd=p.get("cwd"),
                    start_new_session=True)
            except OSError as exc:
                return Outcome(False, f"cannot start {p['argv'][0]!r}: {exc}")
            try:
                await asyncio.wait_for(proc.wait(), timeout=action.timeout_s)
            except TimeoutError:
                await _kill(proc)
                return Outcome(False, f"timed out after {action.timeout_s:g}s; process group "
                               "killed", _text(fout, ferr))
            except asyncio.CancelledError:
                await _kill(proc)
                raise
            return Outcome(proc.returncode == 0, f"exit code {proc.returncode}", _text(fout, ferr),
                           {"returncode": proc.returncode})


def _text(out: Any, err: Any) -> str:
    """The first MAX_OUTPUT bytes of each output file."""
    out.seek(0)
    err.seek(0)
    text: str = out.read(MAX_OUTPUT).decode(errors="replace")
    tail: str = err.read(MAX_OUTPUT).decode(errors="replace")
    return text + (f"\n[stderr]\n{tail}" if tail else "")


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
