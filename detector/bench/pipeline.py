"""`vigil bench pipeline`: pipeline events/s against a bare `orjson.loads` loop on the same lines,
where the time went stage by stage, memory and state size. Ratios are measured in the same
process, because shared machines are noisy.

The pipeline is timed as `vigil replay` runs it: batches through `DecodeAhead` (each batch's
decode on a worker thread while the one before goes through the rest), each outcome written by
the JSONL sinks (`Outputs.jsonl`, to a temporary directory), then `finish`. The stages' times
come from `Pipeline.stage_seconds` (decode's on its own thread), the sinks' from timing
`Outputs.write`, `decode_waited` is the time the main thread waited for a decode; what is in
none of those (the loop, slicing) is `other`. The main thread's parts (all but decode) add up
to the whole."""

from __future__ import annotations

import gc
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from detector.bench.measure import rss_mib
from detector.config import VigilConfig
from detector.pipeline import BatchOutcome, Pipeline
from detector.runtime.ahead import DecodeAhead
from detector.sinks.base import Outputs
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
    rss_before_mib: float  # resident set before the pipeline ran (imports and the lines held)
    peak_rss_mib: float
    series: int
    state_bytes_per_series: float
    state_breakdown: dict[str, int]
    anomalies: int
    incidents: int
    # µs per event: each stage of STAGES (decode: on its own thread), "sinks" (the JSONL
    # outputs), "decode_waited" and "other" (the rest of the loop); all but decode add up to
    # the pipeline's µs per event
    stage_us_per_event: dict[str, float] = field(default_factory=dict)
    # decode alone, on the caller's thread with nothing beside it (best of 2 passes): Vigil's
    # decoder (`BatchDecoder`, warm), and polars' own NDJSON read of the same batches (joined
    # as the decoder joins them) without a schema and with the decoder's
    decode_lines_per_s: float = 0.0
    polars_read_lines_per_s: float = 0.0
    polars_read_schema_lines_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_pipeline(lines: list[bytes], cfg: VigilConfig) -> PipelineFigures:
    """Pipeline events/s against a bare `orjson.loads` loop over the same lines."""
    n = len(lines)
    bs = cfg.batch_size
    gc.collect()
    rss_before = rss_mib()
    pipe = Pipeline(cfg)
    sinks = 0.0
    clock = time.perf_counter
    ahead = DecodeAhead(pipe)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        outputs = Outputs.jsonl(Path(tmp))

        def write(out: BatchOutcome) -> None:
            nonlocal sinks
            t1 = clock()
            outputs.write(out)
            sinks += clock() - t1
        t0 = clock()
        ahead.run(((lines[i:i + bs], "bench", range(i + 1, i + 1 + min(bs, n - i)))
                   for i in range(0, n, bs)), write)
        write(pipe.finish())
        t1 = clock()
        outputs.close()
        sinks += clock() - t1
        elapsed = clock() - t0
    per = 1e6 / max(n, 1)
    stages = {k: v * per for k, v in pipe.stage_seconds.as_dict().items()}
    stages["sinks"] = sinks * per
    stages["decode_waited"] = ahead.waited_s * per
    # decode runs on its own thread, beside the rest: the caller's thread's time is the rest,
    # the sinks and the wait for decodes the overlap did not hide
    main = sum(v for k, v in stages.items() if k != "decode")
    stages["other"] = max(0.0, elapsed * per - main)
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

    decode_lps, read_lps, read_schema_lps = _decode_alone(lines, cfg)
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
        stage_us_per_event={k: round(v, 3) for k, v in stages.items()},
        decode_lines_per_s=decode_lps,
        polars_read_lines_per_s=read_lps,
        polars_read_schema_lines_per_s=read_schema_lps,
    )


def _decode_alone(lines: list[bytes], cfg: VigilConfig) -> tuple[float, float, float]:
    """Lines/s of Vigil's decoder, of polars' schema-less NDJSON read and of that read with the
    columnar decoder's schema, each over the same batches, best of 2 passes after a warm one."""
    import polars as pl

    from detector.decode.batch import BatchDecoder

    bs = cfg.batch_size
    batches = [lines[i:i + bs] for i in range(0, len(lines), bs)]
    decoder = BatchDecoder(cfg.parsing)
    for b in batches[:1]:
        decoder.decode(b)  # learns the keys this source uses
    schema = decoder.read_schema()

    def best(work: Any) -> float:
        took = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            for b in batches:
                work(b)
            took = min(took, time.perf_counter() - t0)
        return len(lines) / took if took > 0 else 0.0

    return (best(decoder.decode), best(lambda b: pl.read_ndjson(b"\n".join(b))),
            best(lambda b: pl.read_ndjson(b"\n".join(b), schema=schema)))


def file_lines(path: Path, batch_size: int = 65536) -> list[bytes]:
    out: list[bytes] = []
    for b in iter_batches(path, batch_size):
        out.extend(b.lines)
    return out
