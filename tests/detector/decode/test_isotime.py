"""The numpy fast path for fixed-layout RFC 3339 timestamps reads exactly what polars' general
parser (the columnar decoder's other path) reads, and refuses what it cannot read the same."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from detector.decode.isotime import fixed_rfc3339


def general(values: list[str | None]) -> list[float | None]:
    """What the columnar decoder's general path gives: polars' %+, microseconds, UTC."""
    dt = pl.Series(values, dtype=pl.String).str.to_datetime(
        "%+", time_unit="us", time_zone="UTC", strict=False)
    return (dt.dt.epoch("us").cast(pl.Float64) / 1e6).to_list()


EDGES = [
    "2026-11-23T12:00:00Z", "2026-11-23T12:00:00.1Z", "2026-11-23T12:00:00.123Z",
    "2026-11-23T12:00:00.123456Z", "2026-11-23T12:00:00.123456789Z",
    "2026-11-23T12:00:00+01:00", "2026-11-23T12:00:00-05:30", "2026-11-23T12:00:00.5+23:59",
    "2026-11-23T12:00:00-00:00", "2024-02-29T00:00:00Z", "2000-02-29T23:59:59.999999Z",
    "1969-12-31T23:59:59.5Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z", "2100-03-01T00:00:00Z",
]
# each is refused by the fast path; the general parser decides (and may read some of them)
REFUSED = [
    "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-23T24:00:00Z", "2026-11-23T23:60:00Z",
    "2026-11-23T23:59:60Z", "2026-11-23 12:00:00Z", "2026-11-23t12:00:00Z", "2026-11-23T12:00:00z",
    "2026-11-23T12:00:00", "2026-11-23T12:00:00.Z", "2026-11-23T12:00:00,5Z",
    "2026-11-23T12:00:00+0100", "2026-11-23T12:00:00+24:00", "2026-11-23T12:00:00+01:60",
    "2026-11-23T12:00:00.1234567890Z", "\uff12026-11-23T12:00:00Z", "2026-11-23T12:0a:00Z",
    "20261-1-23T12:00:00Z", "2026-11-23T12:00:00.12x4Z",
]


@pytest.mark.parametrize("value", EDGES)
def test_each_fixed_layout_reads_as_the_general_parser_does(value: str) -> None:
    fast = fixed_rfc3339(pl.Series([value]))
    assert fast is not None
    assert fast.tolist() == general([value])


@pytest.mark.parametrize("value", REFUSED)
def test_anything_else_is_left_to_the_general_parser(value: str) -> None:
    assert fixed_rfc3339(pl.Series([value])) is None
    # and one such value sends its whole column to the general parser
    assert fixed_rfc3339(pl.Series(["2026-11-23T12:00:00Z", value])) is None


def test_random_columns_of_mixed_layouts_match_the_general_parser() -> None:
    rng = np.random.default_rng(3)
    us = rng.integers(-2_000_000_000_000_000, 8_000_000_000_000_000, 5_000)
    base = pl.Series(us, dtype=pl.Datetime("us", "UTC"))
    layouts = ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%.3fZ", "%Y-%m-%dT%H:%M:%S%.6f%:z"]
    pick = rng.integers(0, len(layouts), len(base))
    text: list[str | None] = [base[i:i + 1].dt.strftime(layouts[k]).item()
                              for i, k in enumerate(pick.tolist())]
    for i in rng.choice(len(text), 100, replace=False).tolist():
        text[i] = None
    fast = fixed_rfc3339(pl.Series(text, dtype=pl.String))
    assert fast is not None
    want = general(text)
    assert fast.tolist() == [0.0 if w is None else w for w in want]


def test_an_all_null_column_reads_as_zeros() -> None:
    fast = fixed_rfc3339(pl.Series([None, None], dtype=pl.String))
    assert fast is not None and fast.tolist() == [0.0, 0.0]


def test_a_column_spanning_centuries_goes_to_the_general_parser() -> None:
    assert fixed_rfc3339(pl.Series(["1500-01-01T00:00:00Z", "2026-01-01T00:00:00Z"])) is None
