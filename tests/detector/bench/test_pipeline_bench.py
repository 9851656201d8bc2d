"""`vigil bench pipeline`: the per-stage breakdown (the main thread's parts) adds up to the
whole, decode alone is timed beside polars' bare read, and `--json` prints one line with every
figure."""

from __future__ import annotations

import dataclasses

import orjson
from typer.testing import CliRunner

from detector.bench.pipeline import PipelineFigures, bench_pipeline
from detector.cli import app
from detector.config import VigilConfig
from detector.pipeline import STAGES
from detector.simulate.runs import simulated_lines


def test_the_stages_and_sinks_add_up_to_the_pipelines_time() -> None:
    lines, _ = simulated_lines(30_000, seed=3, scenario="error_burst")
    f = bench_pipeline(lines, VigilConfig())
    parts = f.stage_us_per_event
    assert list(parts) == [*STAGES, "sinks", "decode_waited", "other"]
    assert all(v >= 0 for v in parts.values())
    total = 1e6 / f.pipeline_eps
    main = sum(v for k, v in parts.items() if k != "decode")  # decode: its own thread
    assert abs(main - total) <= 0.02 * total + 0.01
    # every stage did work on this run (a stage timer that never runs reads 0)
    assert all(parts[s] > 0 for s in STAGES), parts
    assert f.incidents >= 1 and f.anomalies >= 1
    # decode alone and polars' bare read were timed on the same lines
    assert f.decode_lines_per_s > 0 and f.polars_read_lines_per_s > 0
    assert f.polars_read_schema_lines_per_s > 0


def test_json_is_one_line_with_every_figure() -> None:
    res = CliRunner().invoke(app, ["bench", "pipeline", "--events", "5000", "--json"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    f = orjson.loads(lines[0])
    assert {x.name for x in dataclasses.fields(PipelineFigures)} <= set(f)
    assert f["events"] == 5000 and set(f["stage_us_per_event"]) >= set(STAGES)
