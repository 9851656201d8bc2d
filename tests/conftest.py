"""Fixtures of the shared datasets (skipped with a reason when ../shared is absent). Helpers
are in `tests.support`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import SHARED

collect_ignore = ["support/services"]  # programs tests start as processes, not test modules


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
