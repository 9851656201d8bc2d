"""A local Prometheus for tests and benchmarks: the Debian `prometheus` binary on a free loopback
port with a temporary TSDB, optionally backfilled with `promtool tsdb create-blocks-from
openmetrics` (known series at known times) and scraping local targets."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import httpx

from detector.bench.servers import free_port


def available() -> bool:
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
