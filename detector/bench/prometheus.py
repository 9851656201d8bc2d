"""`vigil bench prometheus`: 10,000 series backfilled into a real Prometheus, polled step by step."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from detector.config import VigilConfig


@dataclass(slots=True)
class PrometheusFigures:
    series: int
    step_s: float
    warmup_points: int
    warmup_seconds: float
    steps: int
    step_cpu_s: list[float]  # CPU of this process per live step (poll + parse + score)
    step_wall_s: list[float]
    fetch_cpu_s: list[float]  # of which: the HTTP request and JSON parsing (prometheus-api-client)
    points_per_step: list[int]
    anomalies: int


def bench_prometheus(series: int = 10_000, steps: int = 10, step_s: float = 15.0,
                     history: int = 40) -> PrometheusFigures:
    """A real Prometheus (Debian package) backfilled with `series` series of `history + steps`
    points; Vigil warms up on the history, then polls one step at a time (a clock stepped
    through the backfilled range) and scores every series each step."""
    import tempfile

    import numpy as np

    from detector.bench.servers import LocalPrometheus, openmetrics
    from detector.config import PrometheusConfig, PromQuery
    from detector.runtime.watch import MetricWatcher
    from detector.sources.prometheus import PrometheusSource

    end = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    total = history + steps
    t0 = end - (total - 1) * step_s
    rng = np.random.default_rng(0)
    values = 100.0 + rng.normal(0.0, 5.0, size=(series, total))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)

        def rows() -> Iterable[tuple[dict[str, str], float, float]]:
            for i in range(series):
                labels = {"service": f"svc{i % 200}", "pod": f"pod-{i}"}
                for k in range(total):
                    yield labels, t0 + k * step_s, round(float(values[i, k]), 3)
        openmetrics(tmp / "bench.om", "bench_value", rows())
        prom = LocalPrometheus(tmp)
        prom.backfill(tmp / "bench.om")
        with prom:
            cfg = VigilConfig(prometheus=PrometheusConfig(url=prom.url, queries=[PromQuery(
                name="bench", query="bench_value", step_seconds=step_s,
                lookback_seconds=(history - 1) * step_s, baseline="level", warmup=10)],
                max_series=max(200_000, series)))
            clock = [t0 + (history - 1) * step_s]
            source = PrometheusSource(cfg.prometheus, clock=lambda: clock[0])
            watcher = MetricWatcher(cfg, source=source)
            fetch: list[float] = []
            w = watcher.poll_once()
            cpu, wall, pts, anomalies = [], [], [], 0
            for _ in range(steps):
                clock[0] += step_s
                before = source.stats.fetch_cpu_s
                r = watcher.poll_once()
                fetch.append(source.stats.fetch_cpu_s - before)
                cpu.append(r.cpu_seconds)
                wall.append(r.seconds)
                pts.append(r.points)
                anomalies += len(r.anomalies)
    return PrometheusFigures(series, step_s, w.points, w.seconds, steps, cpu, wall, fetch, pts,
                             anomalies)
