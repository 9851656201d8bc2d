"""`vigil bench pipeline`: pipeline events/s against a bare `orjson.loads` loop on the same lines,
memory and state size. Ratios are measured in the same process, because shared machines are noisy."""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from detector.bench.measure import rss_mib
from detector.config import VigilConfig
from detector.pipeline import Pipeline
from detector.sources.files import iter_batches


@dataclass(slots=True)
class PipelineFigures:
    events: int
    bytes_per_line: float
    parse_eps: float  # bare orjson.loads loop keeping each batch's dicts, best of 3
    parse_discard_eps: float  # the same loop throwing each dict away at once, best of 3
    pipeline_eps: float  # whole pipeline, one pass
    ratio: float  # pipeline / parse
    ratio_discard: float  # pipeline / parse_discard
    rss_before_mib: float  # resident set before the pipeline ran (the lines held in memory)
    peak_rss_mib: float
    series: int
    state_bytes_per_series: float
    state_breakdown: dict[str, int]
    anomalies: int
    incidents: int


def bench_pipeline(lines: list[bytes], cfg: VigilConfig) -> PipelineFigures:
    """Pipeline events/s against a bare `orjson.loads` loop over the same lines."""
    n = len(lines)
    bs = cfg.batch_size
    gc.collect()
    rss_before = rss_mib()
    pipe = Pipeline(cfg)
    t0 = time.perf_counter()
    for i in range(0, n, bs):
        pipe.process(lines[i:i + bs], "bench", range(i + 1, i + 1 + min(bs, n - i)))
    pipe.finish()
    elapsed = time.perf_counter() - t0
    pipeline_eps = n / elapsed
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    loads = orjson.loads
    keep = discard = float("inf")
    gc.disable()  # a ceiling: no cycle collection passes over the kept dicts
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            parsed = [loads(line) for line in lines[i:i + bs]]
        keep = min(keep, time.perf_counter() - t0)
        del parsed
        t0 = time.perf_counter()
        for line in lines:
            loads(line)
        discard = min(discard, time.perf_counter() - t0)
    gc.enable()
    parse_eps, parse_discard_eps = n / keep, n / discard

    series = max(pipe.scorer.series_count, 1)
    breakdown = {
        "baselines and series index": pipe.scorer.state_nbytes(),
        "services and open windows": pipe.windows.state_nbytes(),
    }
    return PipelineFigures(
        events=n,
        bytes_per_line=sum(map(len, lines)) / max(n, 1),
        parse_eps=parse_eps,
        parse_discard_eps=parse_discard_eps,
        pipeline_eps=pipeline_eps,
        ratio=pipeline_eps / parse_eps,
        ratio_discard=pipeline_eps / parse_discard_eps,
        rss_before_mib=rss_before,
        peak_rss_mib=peak,
        series=series,
        state_bytes_per_series=sum(breakdown.values()) / series,
        state_breakdown=breakdown,
        anomalies=pipe.stats.anomalies,
        incidents=pipe.stats.incidents_opened,
    )


def file_lines(path: Path, batch_size: int = 65536) -> list[bytes]:
    out: list[bytes] = []
    for b in iter_batches(path, batch_size):
        out.extend(b.lines)
    return out
