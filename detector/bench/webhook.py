"""`vigil bench webhook`: `vigil serve` in a child process under a bounded loopback load."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from detector.bench.servers import free_port


@dataclass(slots=True)
class WebhookFigures:
    notifications: int
    alerts_per_notification: int
    concurrency: int
    seconds: float
    notifications_per_s: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    stored_alerts: int  # in the durable inbox afterwards (no loss: = accepted alerts)
    rate: float | None  # offered notifications/s (None: as fast as answers come back)
    processed_alerts: int  # marked processed by the engine process when the bench stopped
    dry_run_actions: int  # audited dry-run actions (one per accepted firing alert)
    engine_seconds: float  # from the first request until the engine had finished everything
    server_cpu_s: float  # CPU of the server's processes (web + engine)


def bench_webhook(notifications: int = 5000, alerts: int = 10, concurrency: int = 32,
                  rate: float | None = None) -> WebhookFigures:
    """`vigil serve` in a child process (dry-run, bearer auth); this process sends a bounded load
    over loopback, waits (at most 120 s) for the engine to finish, and then counts what was
    stored and acted on. Alerts name 1,000 distinct services: the engine runs one ladder at a
    time per target, so a storm on ten services would measure that rule, not the receiver."""
    import sqlite3
    import tempfile

    import httpx

    from remediation.alertmanager.inbox import Inbox
    from remediation.alertmanager.progress import progress_path, read_progress

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        progress = progress_path(tmp / "inbox.db")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)  # earlier runs' servers excluded
        (tmp / "policy.yaml").write_text(
            "rules: [{name: all, ladder: [{name: n, hook: log, wait_s: 0, "
            "success: {resolved: false}}]}]\nguards: {cooldown_s: 0, "
            "budget: {max_actions: 10000000, max_per_target: 10000000}, max_concurrent: 100000}\n")
        (tmp / "token").write_text("bench-token-0123456789")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "detector", "serve", "--policy", str(tmp / "policy.yaml"),
             "--token-file", str(tmp / "token"), "--port", str(port),
             "--audit-db", str(tmp / "audit.db"), "--inbox-db", str(tmp / "inbox.db"),
             "--queue-size", str(max(100_000, notifications * alerts))])
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.1)

            def body(i: int) -> bytes:
                return orjson.dumps({
                    "version": "4", "groupKey": f"g{i}", "status": "firing", "receiver": "vigil",
                    "alerts": [{"status": "firing", "fingerprint": f"fp{i}-{j}",
                                "startsAt": "2026-11-23T10:00:00Z",
                                "labels": {"alertname": "Load",
                                           "service": f"svc{i % 100}-{j}",
                                           "severity": "page"}} for j in range(alerts)]})
            payloads = [body(i) for i in range(notifications)]
            latencies: list[float] = []
            statuses: collections.Counter[int] = collections.Counter()
            t0 = time.perf_counter()
            seconds = asyncio.run(_post_all(port, "/alertmanager", payloads, concurrency,
                                            "Bearer bench-token-0123456789", latencies, statuses, rate))
            inbox = Inbox(tmp / "inbox.db")
            last = inbox.last_id()
            inbox.close()
            deadline = time.monotonic() + 120
            while sum(read_progress(progress)) < last and time.monotonic() < deadline:
                time.sleep(0.05)
            engine_seconds = time.perf_counter() - t0
        finally:
            server.terminate()
            server.wait(timeout=30)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        inbox = Inbox(tmp / "inbox.db")
        stored = inbox.count()
        inbox.close()
        processed = sum(read_progress(progress))  # ids start at 1 and nothing was pruned
        with contextlib.closing(sqlite3.connect(tmp / "audit.db")) as db:
            acted = int(db.execute("SELECT COUNT(*) FROM audit WHERE verdict = 'dry_run'"
                                   ).fetchone()[0])
    lat = sorted(latencies)
    return WebhookFigures(notifications, alerts, concurrency, seconds, notifications / seconds,
                          1e3 * lat[len(lat) // 2], 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                          dict(statuses), stored, rate, processed, acted, engine_seconds,
                          cpu.ru_utime + cpu.ru_stime - before.ru_utime - before.ru_stime)


async def _post_all(port: int, path: str, bodies: list[bytes], concurrency: int,
                    authorization: str, latencies: list[float],
                    statuses: collections.Counter[int], rate: float | None = None) -> float:
    """POST every body over `concurrency` keep-alive HTTP/1.1 connections to 127.0.0.1:port and
    return the seconds taken. A minimal client on asyncio streams: a general-purpose client
    (httpx) spends more CPU per request than the server under test, on the same two cores.

    Without `rate`, each connection sends its next body as soon as the last is answered (the
    server's saturation). With `rate`, body k is due at k / rate seconds (an open load); latency
    counts from when it was due, so a slow server's queueing is not hidden."""
    pending = iter(enumerate(bodies))
    start = time.perf_counter()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for k, body in pending:
                head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Authorization: {authorization}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                t0 = time.perf_counter()
                if rate is not None:
                    t0 = start + k / rate
                    if (wait := t0 - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                writer.write(head + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                statuses[int(status_line.split()[1])] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - start
