"""The side HTTP server of a long-running Vigil process (`vigil consume`, `vigil metrics`):
/healthz (the loop is alive), /readyz (its own checks), /metrics (its registry, through
prometheus_client). Read-only: nothing here can trigger an action. (`vigil serve` answers the
same three paths on its own FastAPI app.)"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Probe(Protocol):
    def is_alive(self) -> bool: ...

    def ready(self) -> tuple[bool, str]: ...

    @property
    def registry(self) -> CollectorRegistry: ...


def serve(consumer: Probe, host: str, port: int) -> ThreadingHTTPServer:
    """Start the server in a daemon thread; `server.server_address` has the bound port."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                alive = consumer.is_alive()
                self._send(200 if alive else 503, orjson.dumps({"alive": alive}))
            elif self.path == "/readyz":
                ok, why = consumer.ready()
                self._send(200 if ok else 503, orjson.dumps({"ready": ok, "detail": why}))
            elif self.path == "/metrics":
                self._send(200, generate_latest(consumer.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, orjson.dumps({"error": "not found"}))

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="vigil-side-http", daemon=True).start()
    return server
