"""What tests share: where things are, small input builders, and (in `services/`) the programs
tests start as real processes and servers (an admin service, a Prometheus exporter, a stand-in
for the Kubernetes API). Not in the wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from detector.config import VigilConfig
from detector.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]  # the repository
SHARED = ROOT.parent / "shared" / "datasets"  # the shared datasets, beside the repository
DATA = ROOT / "tests" / "data"
SERVICES = Path(__file__).resolve().parent / "services"


def line(**fields: Any) -> bytes:
    """One JSON log line of these fields."""
    return orjson.dumps(fields)


def run_pipeline(lines: list[bytes], cfg: VigilConfig | None = None, batch: int = 32768) -> Pipeline:
    """A pipeline after `lines`, fed in batches, and the end of input."""
    pipe = Pipeline(cfg or VigilConfig())
    for i in range(0, len(lines), batch):
        pipe.process(lines[i:i + batch], "test", range(i + 1, i + 1 + len(lines[i:i + batch])))
    pipe.finish()
    return pipe
