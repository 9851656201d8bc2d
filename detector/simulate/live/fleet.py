"""The live fleet's supervisor: starts one `service` process per service on free loopback ports,
restarts one that exits (a CrashLoopBackOff-like growing delay, capped at a few seconds), drives
the load generator and serves the control API that remediation hooks call. It must leave nothing
running when it stops, and it never listens beyond loopback.

    python -m detector.simulate.live.fleet --dir RUN_DIR --port 0 --token-file RUN_DIR/token

Control API (JSON in and out; every route but `GET /healthz` needs `Authorization: Bearer TOKEN`):
`GET /services`, `GET /services/{name}`, `POST /services/{name}/restart|deploy|rollback|throttle|
fault`, `GET|POST /load`, `POST /shutdown`.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from detector.simulate.live.load import DEFAULT_RPS, MAX_RPS, LoadGenerator
from detector.simulate.live.logline import LogWriter
from detector.simulate.live.service import Server
from detector.simulate.live.topology import DEFAULT_CAPACITY, SERVICES, calls_of

BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 4.0  # a real CrashLoopBackOff caps at 5 min; the demo has to stay fast
STABLE_S = 10.0  # a process up this long has its backoff reset
CRASH_AFTER_S = 1.5  # how long a process lives under the crash_loop fault
HEALTHY_TIMEOUT_S = 10.0
FAULTS = ("none", "crash_loop")
_VERSION = re.compile(r"^v\d+(\.\d+)*$")
_ROOT = Path(__file__).resolve().parents[3]  # the directory that holds the `detector` package


class FleetError(Exception):
    """A control request the fleet refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Child:
    """One supervised service: how it is started and what became of it."""

    name: str
    port: int
    log: Path
    calls: dict[str, str]
    capacity: int
    version: str = "v1"
    previous_version: str | None = None
    restarts: int = 0  # every start after the first, whatever the reason
    crashes: int = 0  # exits the supervisor did not ask for
    throttle_rps: float | None = None
    fault: str = "none"
    status: str = "stopped"  # running | backoff | stopped
    started_at: float | None = None
    last_exit_code: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    backoff_s: float = BACKOFF_START_S
    restart_at: float = 0.0
    started_mono: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name, "port": self.port, "url": self.url,
            "pid": None if self.proc is None else self.proc.pid, "version": self.version,
            "previous_version": self.previous_version, "restarts": self.restarts,
            "crashes": self.crashes, "throttle_rps": self.throttle_rps, "status": self.status,
            "started_at": self.started_at, "fault": self.fault,
            "last_exit_code": self.last_exit_code, "log": str(self.log),
        }


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_token(path: Path) -> str:
    """The bearer token in `path`, created (mode 0600, random) when the file does not exist."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if not token:
            raise FleetError(500, f"token file {path} is empty; write a token in it or delete "
                                  "it to have one made") from None
        return token
    token = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class Supervisor:
    """Runs the fleet in `run_dir`: logs in `logs/NAME.log`, each child's stderr in
    `proc/NAME.stderr`, the supervisor's own actions in `fleet-events.jsonl`, and `fleet.json`
    (written once every service listens)."""

    def __init__(
        self, run_dir: Path, token: str, services: Sequence[str] = SERVICES, control_port: int = 0,
        rps: float = DEFAULT_RPS, seed: int = 0, capacity: int = DEFAULT_CAPACITY,
        token_file: Path | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.token = token
        self.token_file = token_file
        self.names = tuple(dict.fromkeys(services))
        self.control_port = control_port
        self.rps = rps
        self.seed = seed
        self.capacity = capacity
        self.children: dict[str, Child] = {}
        self.load: LoadGenerator | None = None
        self.server: Server | None = None
        self._stop = threading.Event()
        self._stopped = False
        self._monitor: threading.Thread | None = None
        self._events: LogWriter | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start every service, wait until each answers /healthz, then the control API and the
        load, and last write fleet.json."""
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "proc").mkdir(exist_ok=True)
        self._events = LogWriter(self.run_dir / "fleet-events.jsonl")
        ports = {name: free_port() for name in self.names}
        for name in self.names:
            calls = {c: f"http://127.0.0.1:{ports[c]}" for c in calls_of(name, self.names)}
            self.children[name] = Child(name, ports[name], self.run_dir / "logs" / f"{name}.log",
                                        calls, self.capacity)
        for c in self.children.values():
            self._spawn(c)
        for c in self.children.values():
            self._wait_healthy(c)
        self._monitor = threading.Thread(target=self._watch, name="monitor", daemon=True)
        self._monitor.start()
        self.server = Server(("127.0.0.1", self.control_port), _control_handler(self))
        self.control_port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, name="control", daemon=True).start()
        if "gateway" in self.children:
            self.load = LoadGenerator(self.children["gateway"].url, self.rps, self.seed)
            self.load.start()
        self._write_info()
        self._event("start", None, f"fleet of {len(self.names)} services started, load "
                    f"{self.rps:g} rps, control on {self.control_url}")

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def request_stop(self) -> None:
        self._stop.set()

    def wait(self) -> None:
        """Block until a signal or `POST /shutdown` asks the fleet to stop."""
        while not self._stop.wait(0.5):
            pass

    def shutdown(self) -> None:
        """Stop the load, every child (its whole process group) and the control API."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self.load is not None:
            self.load.stop()
        if self._monitor is not None:
            self._monitor.join(2.0)
        for c in self.children.values():
            with c.lock:
                self._kill(c)
                c.status = "stopped"
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self._event("stop", None, "fleet stopped")

    def _write_info(self) -> None:
        info = {
            "pid": os.getpid(), "control_url": self.control_url,
            "token_file": None if self.token_file is None else str(self.token_file),
            "run_dir": str(self.run_dir), "started_at": time.time(),
            "entry_url": self.children["gateway"].url if "gateway" in self.children else None,
            "load_rps": self.rps,
            "services": {c.name: {"port": c.port, "url": c.url, "log": str(c.log),
                                  "pid": None if c.proc is None else c.proc.pid,
                                  "calls": sorted(c.calls)} for c in self.children.values()},
            "logs": [str(c.log) for c in self.children.values()],
        }
        tmp = self.run_dir / "fleet.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, self.run_dir / "fleet.json")  # a reader sees all of it or none

    # ---- processes --------------------------------------------------------------------------
    def _spawn(self, c: Child) -> None:
        cmd = [sys.executable, "-m", "detector.simulate.live.service", "--name", c.name,
               "--port", str(c.port), "--log", str(c.log), "--version", c.version,
               "--calls", ",".join(f"{k}={v}" for k, v in c.calls.items()),
               "--capacity", str(c.capacity), "--seed", str(self.seed)]
        if c.throttle_rps:
            cmd += ["--throttle", f"{c.throttle_rps:g}"]
        if c.fault == "crash_loop":
            cmd += ["--crash-after", f"{CRASH_AFTER_S:g}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        with open(self.run_dir / "proc" / f"{c.name}.stderr", "ab") as err:
            c.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=err, env=env, start_new_session=True)
        c.status, c.started_at, c.started_mono = "running", time.time(), time.monotonic()

    def _kill(self, c: Child) -> None:
        proc = c.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        c.last_exit_code = proc.poll()

    def _wait_healthy(self, c: Child) -> None:
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        while time.monotonic() < deadline:
            if c.proc is None or c.proc.poll() is not None:
                raise FleetError(500, f"{c.name} exited with code "
                                      f"{None if c.proc is None else c.proc.returncode} while "
                                      f"starting; see {self.run_dir / 'proc' / (c.name + '.stderr')}")
            try:
                with self._opener.open(f"{c.url}/healthz", timeout=1.0) as resp:
                    if json.loads(resp.read()).get("pid") == c.proc.pid:
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise FleetError(504, f"{c.name} did not answer /healthz on {c.url} within "
                              f"{HEALTHY_TIMEOUT_S:g} s")

    def _replace(self, c: Child, why: str) -> dict[str, Any]:
        """Kill `c` and start it again as it is now configured (the caller holds `c.lock`)."""
        old = None if c.proc is None else c.proc.pid
        self._kill(c)
        self._spawn(c)
        c.restarts += 1
        c.backoff_s = BACKOFF_START_S
        self._event(why, c.name, f"{c.name} {why}: pid {old} -> {c.proc.pid if c.proc else None}, "
                    f"version {c.version}, fault {c.fault}")
        if c.fault == "none":
            self._wait_healthy(c)
        return {"action": why, "old_pid": old, **c.state()}

    def _watch(self) -> None:
        """Restart children that exited on their own, after a delay that doubles per crash."""
        while not self._stop.wait(0.2):
            for c in self.children.values():
                if not c.lock.acquire(blocking=False):
                    continue  # a control request is replacing it
                try:
                    self._check(c)
                finally:
                    c.lock.release()

    def _check(self, c: Child) -> None:
        now = time.monotonic()
        if c.status == "running" and c.proc is not None and c.proc.poll() is not None:
            c.last_exit_code, c.crashes = c.proc.returncode, c.crashes + 1
            c.status, c.restart_at = "backoff", now + c.backoff_s
            self._event("crash", c.name, f"{c.name} pid {c.proc.pid} exited with code "
                        f"{c.proc.returncode}; restarting in {c.backoff_s:g} s")
            c.backoff_s = min(c.backoff_s * 2, BACKOFF_CAP_S)
        elif c.status == "backoff" and now >= c.restart_at:
            self._spawn(c)
            c.restarts += 1
        elif c.status == "running" and now - c.started_mono > STABLE_S:
            c.backoff_s = BACKOFF_START_S

    def _event(self, event: str, service: str | None, msg: str) -> None:
        if self._events is not None:
            self._events.write({"ts": time.time(), "event": event, "target": service, "msg": msg})

    # ---- the control API ----------------------------------------------------------------------
    def dispatch(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one authorised control request: (status, JSON body); `FleetError` to refuse."""
        parts = [p for p in path.split("/") if p]
        if parts == ["services"] and method == "GET":
            return 200, {"services": [c.state() for c in self.children.values()]}
        if parts == ["load"]:
            if method == "POST":
                self.set_load(_number(body, "rps", 0.0, MAX_RPS))
            return 200, self.load_state()
        if parts == ["shutdown"] and method == "POST":
            return 200, {"status": "stopping"}
        if len(parts) in (2, 3) and parts[0] == "services":
            c = self._child(parts[1])
            if len(parts) == 2 and method == "GET":
                return 200, c.state()
            if len(parts) == 3 and method == "POST":
                return 200, self.act(c, parts[2], body)
        if parts and parts[0] in ("services", "load", "shutdown"):
            raise FleetError(405, f"{method} {path} is not a control request")
        raise FleetError(404, f"no route {path}; see /services, /load, /shutdown")

    def act(self, c: Child, action: str, body: dict[str, Any]) -> dict[str, Any]:
        with c.lock:
            if action == "restart":
                return self._replace(c, "restart")
            if action == "deploy":
                version = body.get("version")
                if not isinstance(version, str) or not _VERSION.match(version):
                    raise FleetError(400, f"'version' must look like v2 or v1.4, got {version!r}")
                if version != c.version:
                    c.previous_version, c.version = c.version, version
                return self._replace(c, "deploy")
            if action == "rollback":
                if c.previous_version is None and c.fault == "none":
                    raise FleetError(409, f"{c.name} runs {c.version} and has no previous version "
                                          "to roll back to")
                if c.previous_version is not None:
                    c.previous_version, c.version = c.version, c.previous_version
                c.fault = "none"  # the rollback undoes the bad change, a crash loop included
                return self._replace(c, "rollback")
            if action == "throttle":
                return self._throttle(c, _number(body, "rps", 0.0, MAX_RPS, nullable=True))
            if action == "fault":
                kind = body.get("kind")
                if kind not in FAULTS:
                    raise FleetError(400, f"'kind' must be one of {', '.join(FAULTS)}, got {kind!r}")
                c.fault = str(kind)
                return self._replace(c, "fault")
        raise FleetError(404, f"no action {action!r}; use restart, deploy, rollback, throttle or "
                              "fault")

    def _throttle(self, c: Child, rps: float | None) -> dict[str, Any]:
        c.throttle_rps = rps or None  # kept, so the limit holds across restarts too
        req = urllib.request.Request(f"{c.url}/admin/throttle", method="POST",
                                     data=json.dumps({"rps": c.throttle_rps}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=2.0) as resp:
                applied = resp.status == 200
        except OSError:
            applied = False  # down right now: it starts with the limit
        self._event("throttle", c.name, f"{c.name} rate limit {c.throttle_rps} rps "
                    f"({'applied' if applied else 'applies at its next start'})")
        return {"action": "throttle", "applied": applied, **c.state()}

    def set_load(self, rps: float) -> None:
        if self.load is None:
            raise FleetError(409, "this fleet has no gateway, so no load generator")
        self.load.set_rate(rps)
        self._event("load", None, f"load set to {rps:g} rps")

    def load_state(self) -> dict[str, Any]:
        if self.load is None:
            return {"rps": 0.0, "sent": 0, "dropped": 0, "failed": 0, "by_status": {}}
        return self.load.stats()

    def _child(self, name: str) -> Child:
        c = self.children.get(name)
        if c is None:
            raise FleetError(404, f"no service named {name!r}; the fleet has "
                                  f"{', '.join(self.children)}")
        return c


def _number(body: dict[str, Any], key: str, lo: float, hi: float,
            nullable: bool = False) -> Any:
    v = body.get(key)
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise FleetError(400, f"{key!r} must be a number from {lo:g} to {hi:g}"
                              f"{' (or null)' if nullable else ''}, got {v!r}")
    return float(v)


def _control_handler(sup: Supervisor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "vigil-demo-fleet"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, code: int, obj: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            path = urlsplit(self.path).path
            if method == "GET" and path == "/healthz":
                return self._json(200, {"status": "ok"})
            auth = self.headers.get("Authorization") or ""
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                     sup.token.encode()):
                return self._json(401, {"error": "missing or wrong bearer token; send "
                                                 "'Authorization: Bearer <token from the token file>'"},
                                  {"WWW-Authenticate": "Bearer"})
            body: dict[str, Any] = {}
            if method == "POST":
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    raw = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    return self._json(400, {"error": "the body must be JSON"})
                if not isinstance(raw, dict):
                    return self._json(400, {"error": "the body must be a JSON object"})
                body = raw
            try:
                code, out = sup.dispatch(method, path, body)
            except FleetError as exc:
                code, out = exc.status, {"error": str(exc)}
            self._json(code, out)
            if path.rstrip("/") == "/shutdown" and code == 200:
                sup.request_stop()  # after the answer is written

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m detector.simulate.live.fleet",
                                description="a small fleet of real local HTTP services for the demo")
    p.add_argument("--dir", type=Path, required=True, help="run directory (logs, fleet.json)")
    p.add_argument("--port", type=int, default=0, help="control API port on 127.0.0.1 (0: any free)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="bearer token for the control API (default RUN_DIR/token; made if missing)")
    p.add_argument("--services", default=",".join(SERVICES))
    p.add_argument("--rps", type=float, default=DEFAULT_RPS, help="load on the gateway")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY)
    a = p.parse_args(argv)
    run_dir: Path = a.dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    token_file: Path = (a.token_file or run_dir / "token").resolve()
    names = [s.strip() for s in a.services.split(",") if s.strip()]
    if not names:
        p.error("--services names no service")
    sup = Supervisor(run_dir, read_token(token_file), names, a.port, a.rps, a.seed, a.capacity,
                     token_file)
    signal.signal(signal.SIGTERM, lambda *_: sup.request_stop())
    signal.signal(signal.SIGINT, lambda *_: sup.request_stop())
    try:
        sup.start()
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        sup.shutdown()
        return 1
    try:
        sup.wait()
    finally:
        sup.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
