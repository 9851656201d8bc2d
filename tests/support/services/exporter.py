"""A scrape target for the tests' Prometheus: one gauge whose value the test sets (plus optional
Gaussian noise per scrape), served over loopback HTTP in Prometheus's text format."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class Exporter:
    def __init__(self, metric: str, labels: dict[str, str] | None = None, value: float = 0.0,
                 noise: float = 0.0, seed: int = 1) -> None:
        self.value = value
        rng = np.random.default_rng(seed)
        shown = ",".join(f'{k}="{v}"' for k, v in (labels or {}).items())
        series = f"{metric}{{{shown}}}" if shown else metric
        me = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                v = me.value + (float(rng.normal(0.0, noise)) if noise else 0.0)
                body = f"# TYPE {metric} gauge\n{series} {v}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.target = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
