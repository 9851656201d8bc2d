"""A real HTTP service for remediation tests: an admin API that changes its rate limit, restarts
the process (exec), deploys and rolls back versions, and reports all of it. State lives in a
JSON file so it survives its own restarts. Usage: admin_service.py PORT STATE_FILE."""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PORT, STATE = int(sys.argv[1]), Path(sys.argv[2])
BOOT = uuid.uuid4().hex


def load() -> dict:
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"rate_limit": None, "version": "v1", "history": [], "restarts": 0, "error_rate": 0.5,
            "fail_next": 0, "calls": []}


def save(s: dict) -> None:
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(s))
    os.replace(tmp, STATE)


LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        with LOCK:
            s = load()
        self._reply(200, {**s, "pid": os.getpid(), "boot": BOOT})

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"null")
        with LOCK:
            s = load()
            if self.path != "/admin/test-setup":
                s["calls"].append({"path": self.path, "body": body,
                                   "auth": self.headers.get("Authorization")})
            if s["fail_next"] > 0:
                s["fail_next"] -= 1
                save(s)
                return self._reply(503, {"error": "temporarily unavailable"})
            restart = False
            if self.path.startswith("/admin/rate-limit"):
                s["rate_limit"] = body["limit"]
                if body["limit"] <= 10:
                    s["error_rate"] = 0.01  # throttling relieves the overload
            elif self.path == "/admin/restart":
                s["restarts"] += 1
                restart = True
            elif self.path == "/admin/deploy":
                s["history"].append(s["version"])
                s["version"] = body["version"]
            elif self.path == "/admin/rollback":
                if not s["history"]:
                    save(s)
                    return self._reply(409, {"error": "nothing to roll back to"})
                s["version"] = s["history"].pop()
            elif self.path == "/admin/test-setup":
                s.update(body)
            save(s)
        self._reply(200, {"ok": True, "version": s["version"]})
        if restart:  # a real restart: the process replaces itself
            self.wfile.flush()
            threading.Thread(target=_restart, daemon=True).start()


RESTART = threading.Event()


def _restart() -> None:
    RESTART.set()
    SERVER.shutdown()  # serve_forever returns in the main thread, which then execs


SERVER = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
SERVER.serve_forever()
SERVER.server_close()
if RESTART.is_set():
    os.execv(sys.executable, [sys.executable, *sys.argv])
