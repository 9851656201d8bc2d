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
from remediation.templating import references, render
from remediation.trigger import Trigger

MAX_OUTPUT = 16_384  # bytes of stdout and of stderr kept for the audit
MAX_VARIABLE = 131_072  # bytes of one NAME=value (Linux's MAX_ARG_STRLEN; exec fails past it)
MAX_ENVIRONMENT = 1 << 20  # bytes of all VIGIL_* variables together (well inside ARG_MAX)
_ENV_NAME = re.compile(r"[^A-Z0-9_]")


# Programs that run a command line given as text: one `eval "$VIGIL_LABEL_X"` (or an unquoted
# expansion) from running alert data as code.
SHELLS = frozenset({
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "ash", "fish", "csh", "tcsh", "rc",
    "es", "yash", "elvish", "xonsh", "nu", "cmd", "command.com", "powershell", "pwsh"})
# Interpreters, with the short options that take code inline, long ones that do, short options
# whose value is the next argument (or the rest of the cluster), those whose value can only be
# attached (the rest of the cluster), and those with an optional attached number (perl's -l, -0).
# The first argument that is not an option is a script: code from a file.
_INLINE: dict[str, tuple[str, tuple[str, ...], str, str, str]] = {
    "python": ("c", (), "WX", "", ""), "pypy": ("c", (), "WX", "", ""),
    "perl": ("eE", (), "", "ixdDIMm", "l0C"), "ruby": ("e", (), "IrCEF", "xi", "0WT"),
    "node": ("ep", ("--eval", "--print"), "rC", "", ""),
    "nodejs": ("ep", ("--eval", "--print"), "rC", "", ""),
    "bun": ("e", ("--eval", "--print"), "r", "", ""), "php": ("rBRE", (), "cdz", "", ""),
    "lua": ("e", (), "l", "", ""), "luajit": ("e", (), "lj", "", ""),
    "rscript": ("e", (), "", "", ""), "julia": ("eE", ("--eval", "--print"), "LJ", "", ""),
    "osascript": ("e", (), "", "", ""),
}
_VALUED_LONG = ("--require", "--import", "--loader", "--experimental-loader", "--input-type",
                "--env-file", "--conditions", "--check-hash-based-pycs")
_AWK = frozenset({"awk", "gawk", "mawk", "nawk"})  # the program is text unless -f names a file
# Programs that run another program from their arguments, and their options that start a shell.
_WRAPPERS: dict[str, tuple[str, ...]] = {
    "env": ("-S", "--split-string"), "sudo": ("-s", "--shell", "-i", "--login"),
    "doas": ("-s",), "runuser": ("-c", "--command"), "flock": ("-c", "--command"),
    "script": ("-c", "--command"), "nice": (), "nohup": (), "setsid": (), "stdbuf": (),
    "ionice": (), "timeout": (), "chrt": (), "taskset": (), "xargs": (), "busybox": (),
    "command": (), "exec": (), "time": (), "chroot": (), "unshare": (), "nsenter": (),
    "strace": (), "ltrace": (), "numactl": (), "prlimit": (), "systemd-run": (), "firejail": (),
    "cgexec": (), "sg": (), "catchsegv": (), "faketime": (), "watch": ()}


def _program(arg: str) -> str:
    """The family of a program: its file name, lower-cased, without `.exe` or a version."""
    name = arg.replace("\\", "/").rsplit("/", 1)[-1].lower().removesuffix(".exe")
    return name if name in SHELLS else re.sub(r"[\d.]+(-\w+)?$", "", name) or name


def _inline_flag(family: str, args: list[str]) -> str | None:
    """The option by which `args` give `family` code to run inline, if any."""
    short, long_, valued, attached, numbered = _INLINE[family]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--" or a == "-" or not a.startswith("-"):
            return None  # a script (or stdin) comes next: code from a file
        if a.startswith("--"):
            key = a.split("=", 1)[0]
            if key in long_:
                return a
            i += 2 if key in _VALUED_LONG and "=" not in a else 1
            continue
        j, cluster = 0, a[1:]
        while j < len(cluster):
            ch = cluster[j]
            if ch in short:
                return a
            if family in ("python", "pypy") and ch == "m":
                return None  # a module runs, not text
            if ch in attached:
                break
            if ch in valued:
                if j == len(cluster) - 1:
                    i += 1  # the value is the next argument
                break
            j += 1
            while ch in numbered and j < len(cluster) and cluster[j].isdigit():
                j += 1
        i += 1
    return None


def shell_use(argv: list[str]) -> str | None:
    """Why `argv` runs a shell or code given as text (so trigger data, which reaches the program
    as VIGIL_* variables, could be evaluated), or None. Shells anywhere in the program position,
    interpreters with an inline-code option (`python -c`, `perl -e`, `node -e`, ...), `awk`
    without `-f`, and the same behind wrappers (`env`, `sudo`, `timeout`, `xargs`, ...), whose
    every later argument is looked at; wrapper options that start a shell (`env -S`, `sudo -s`)
    and `su` count too. A guard rail, not a sandbox: it knows the common programs.

    >>> shell_use(["/bin/sh", "-c", 'eval "$VIGIL_LABEL_SERVICE"'])
    "'/bin/sh' is a shell"
    >>> shell_use(["/usr/bin/env", "python3", "-c", "print(1)"])
    "'python3' runs code given inline ('-c'), behind '/usr/bin/env'"
    >>> shell_use(["/usr/local/bin/restart", "--service", "cart"]) is None
    True
    >>> shell_use(["python3", "/opt/restart.py", "-c", "config.ini"]) is None
    True
    """
    first = _program(argv[0])
    positions = range(len(argv)) if first in _WRAPPERS or first == "su" else range(1)
    for i in positions:
        arg, family, rest = argv[i], _program(argv[i]), argv[i + 1:]
        via = f", behind {argv[0]!r}" if i else ""
        if family in SHELLS or family == "su":
            return f"{arg!r} is a shell{via}" if family != "su" else f"{arg!r} runs a shell"
        if family in _INLINE and (flag := _inline_flag(family, rest)) is not None:
            return f"{arg!r} runs code given inline ({flag!r}){via}"
        if family in _AWK and not any(a == "--file" or a.startswith(("-f", "--file=")) for a in rest):
            return f"{arg!r} runs a program given as text (no -f FILE){via}"
        if family in _WRAPPERS:
            shell_opts = _WRAPPERS[family]
            if family == "watch" and not any(a in ("-x", "--exec") for a in rest):
                return f"{arg!r} runs its command through sh -c (no -x)"
            for a in rest:
                if a in shell_opts or a.split("=", 1)[0] in shell_opts:
                    return f"{arg!r} {a} runs a shell{via}"
    return None


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
    environment and stdin instead; no shell or inline code unless the rung says allow_shell),
    `env` (extra variables: literal, or `${credentials.NAME}`), `cwd`. The child starts in its
    own process group and the whole group is killed on timeout."""

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
        alert = [r for r in references(env) if not r.startswith("credentials.")]
        if alert:
            raise HookParamError(f"command: 'env' values may use only ${{credentials.NAME}}, not "
                                 f"${{{alert[0]}}}: trigger data arrives as VIGIL_* variables")
        return p

    def idempotent(self, params: dict[str, Any]) -> bool:
        return False  # a program's effects are its own: never assumed safe to repeat

    def shell_use(self, params: dict[str, Any]) -> str | None:
        """Why the rung's argv runs a shell or inline code (the policy refuses it unless the
        rung says `allow_shell: true`), or None."""
        argv = params.get("argv")
        return shell_use(argv) if isinstance(argv, list) and argv else None

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
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               **render(p.get("env", {}), trigger, False, action.credentials),
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
