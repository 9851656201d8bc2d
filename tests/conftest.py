"""Shared test helpers: small simulated runs and the shared datasets (skipped when absent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from detector.config import VigilConfig
from detector.pipeline import Pipeline

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
collect_ignore = ["services"]  # programs the tests start as real processes, not test modules


def line(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def run_pipeline(lines: list[bytes], cfg: VigilConfig | None = None, batch: int = 32768) -> Pipeline:
    pipe = Pipeline(cfg or VigilConfig())
    for i in range(0, len(lines), batch):
        pipe.process(lines[i:i + batch], "test", range(i + 1, i + 1 + len(lines[i:i + batch])))
    pipe.finish()
    return pipe


@pytest.fixture
def loghub() -> Path:
    path = SHARED / "loghub"
    if not path.is_dir():
        pytest.skip(f"Loghub samples not found at {path} (they live in ../shared, beside the repo)")
    return path


@pytest.fixture
def nab() -> Path:
    path = SHARED / "nab"
    if not (path / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"NAB data not found at {path} (it lives in ../shared, beside the repo)")
    return path
