"""The parent's handle on a live fleet: `start_fleet` spawns the supervisor and waits for its
fleet.json; `FleetHandle` calls the control API and `stop()`s it all, leaving no process behind.
It must not start services itself: the supervisor owns them.

    with start_fleet(Path("run")) as fleet:
        fleet.deploy("cart", "v2")
        ...
        fleet.rollback("cart")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from detector.simulate.live.fleet import read_token
from detector.simulate.live.load import DEFAULT_RPS
from detector.simulate.live.topology import SERVICES

_ROOT = Path(__file__).resolve().parents[3]
_SERVICE_MODULE = b"detector.simulate.live.service"


class FleetControlError(Exception):
    """The control API refused a request (`status` is its HTTP status; 0: it did not answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


class FleetStartError(RuntimeError):
    """The supervisor did not come up; the message holds the end of its stderr."""


class FleetHandle:
    """A running fleet: its supervisor process, what fleet.json says, and the control API."""

    def __init__(self, run_dir: Path, process: subprocess.Popen[bytes], info: dict[str, Any],
                 token_file: Path) -> None:
        self.run_dir = run_dir
        self.process = process
        self.info = info
        self.token_file = token_file
        self._token = token_file.read_text().strip()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._pids: set[int] = {s["pid"] for s in info["services"].values() if s.get("pid")}

    @property
    def control_url(self) -> str:
        return str(self.info["control_url"])

    @property
    def entry_url(self) -> str | None:
        """The gateway's URL (where the load goes), or None without a gateway."""
        return self.info.get("entry_url")

    # ---- control ------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout_s: float = 15.0) -> dict[str, Any]:
        """One control call; `FleetControlError` on a refusal or no answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.control_url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=timeout_s) as resp:
                out: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                msg = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                msg = exc.reason
            raise FleetControlError(exc.code, str(msg)) from None
        except OSError as exc:
            raise FleetControlError(0, f"{method} {path}: {exc}") from None
        if isinstance(out.get("pid"), int):
            self._pids.add(out["pid"])
        return out

    def state(self) -> dict[str, dict[str, Any]]:
        """Every service's state by name (name, port, pid, version, previous_version, restarts,
        crashes, throttle_rps, status, started_at, fault, last_exit_code, log)."""
        services = self.request("GET", "/services")["services"]
        self._pids.update(s["pid"] for s in services if s.get("pid"))
        return {s["name"]: s for s in services}

    def service(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/services/{name}")

    def restart(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/services/{name}/restart")

    def deploy(self, name: str, version: str) -> dict[str, Any]:
        return self.request("POST", f"/services/{name}/deploy", {"version": version})

    def rollback(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/services/{name}/rollback")

    def throttle(self, name: str, rps: float | None) -> dict[str, Any]:
        """Limit `name` to `rps` requests/s (None or 0 lifts the limit)."""
        return self.request("POST", f"/services/{name}/throttle", {"rps": rps})

    def fault(self, name: str, kind: str) -> dict[str, Any]:
        """`crash_loop` until `none` (or a rollback) clears it."""
        return self.request("POST", f"/services/{name}/fault", {"kind": kind})

    def set_load(self, rps: float) -> dict[str, Any]:
        return self.request("POST", "/load", {"rps": rps})

    def load(self) -> dict[str, Any]:
        return self.request("GET", "/load")

    def log_paths(self) -> dict[str, Path]:
        """Each service's JSON-lines log file by name."""
        return {name: Path(s["log"]) for name, s in self.info["services"].items()}

    # ---- stopping -----------------------------------------------------------------------------
    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the supervisor to shut down; kill its process group if it does not, and then any
        service process it left behind."""
        if self.process.poll() is None:
            try:
                self.state()  # the current pids, for the sweep below
                self.request("POST", "/shutdown", timeout_s=5.0)
            except FleetControlError:
                _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(5.0)
        for pid in sorted(self._pids):
            if _is_service(pid):
                _signal_group(pid, signal.SIGKILL)

    def __enter__(self) -> FleetHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_fleet(
    run_dir: str | Path, services: Sequence[str] = SERVICES, rps: float = DEFAULT_RPS,
    seed: int = 0, token_file: str | Path | None = None, timeout_s: float = 20.0,
    capacity: int | None = None,
) -> FleetHandle:
    """Spawn the supervisor for `services` in `run_dir` and wait (at most `timeout_s`) until its
    fleet.json says every service listens. The token file (default RUN_DIR/token) is made with a
    random token when it does not exist."""
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    tf = Path(token_file).resolve() if token_file is not None else run / "token"
    read_token(tf)
    info_path = run / "fleet.json"
    info_path.unlink(missing_ok=True)  # an earlier run's file must not pass for this one
    cmd = [sys.executable, "-m", "detector.simulate.live.fleet", "--dir", str(run), "--port", "0",
           "--token-file", str(tf), "--services", ",".join(services), "--rps", f"{rps:g}",
           "--seed", str(seed)]
    if capacity is not None:
        cmd += ["--capacity", str(capacity)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    with open(run / "fleet.stderr", "ab") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not info_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(5.0)
            tail = (run / "fleet.stderr").read_text(errors="replace")[-2000:]
            raise FleetStartError(f"the fleet supervisor did not start within {timeout_s:g} s "
                                  f"(exit code {proc.returncode}): {tail.strip() or 'no stderr'}")
        time.sleep(0.05)
    return FleetHandle(run, proc, json.loads(info_path.read_text()), tf)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _is_service(pid: int) -> bool:
    """Whether `pid` is still a live fleet service (not a pid the system gave to another program)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return _SERVICE_MODULE in cmdline and not zombie
