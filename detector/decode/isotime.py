"""RFC 3339 timestamps of a fixed layout, a column at a time, in numpy: digits at known offsets.

The columnar decoder's fast path for the commonest timestamps (`2026-11-23T00:00:00.037Z`,
`...+02:00`): several times cheaper than a general parser. It returns None for a column it does
not read exactly, and the caller then uses the general parser, so nothing here decides what a
timestamp means. It must not accept a string the general parser reads differently.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

_DIGIT_AT = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)  # YYYY-MM-DDTHH:MM:SS
_SEPARATOR_AT = (4, 7, 10, 13, 16)
_SEPARATOR_BYTES = np.frombuffer(b"--T::", dtype=np.uint8)
_MAX_LAYOUTS = 4  # distinct string lengths in one column; more is not a fixed layout
_MAX_MONTHS = 12 * 400  # months one column spans (a table that long); more: the general parser


def fixed_rfc3339(s: pl.Series, widths: tuple[int | None, int | None] | None = None
                  ) -> npt.NDArray[np.float64] | None:
    """Epoch seconds of a String column of `YYYY-MM-DDTHH:MM:SS[.f…](Z|±HH:MM)` timestamps, 0.0
    where null; None unless every value has that layout and is a valid date and time.
    `widths`, when the caller has them for a column without nulls: its values' fewest and most
    bytes (one layout when equal), which spares measuring every value here.

    >>> import polars as pl
    >>> fixed_rfc3339(pl.Series(["2026-11-23T12:00:00Z", None, "2026-11-23T14:00:00.5+02:00"]))
    array([1.7954352e+09, 0.0000000e+00, 1.7954352e+09])
    >>> fixed_rfc3339(pl.Series(["2026-02-30T12:00:00Z"])) is None  # no 30 February
    True
    """
    if widths is not None and widths[0] is not None and widths[0] == widths[1]:
        micros = _micros(_cells(s, widths[0])) if len(s) else np.zeros(0, dtype=np.int64)
        # times the reciprocal, as polars divides by a constant: the same float to the last bit
        return None if micros is None else micros.astype(np.float64) * 1e-6
    lengths = s.str.len_bytes()
    if not s.null_count() and lengths.min() == lengths.max():  # the common case: one layout
        return fixed_rfc3339(s, (int(lengths[0]), int(lengths[0]))) if len(s) else \
            np.zeros(0, dtype=np.float64)
    out = np.zeros(len(s), dtype=np.float64)
    present = s.is_not_null()
    layouts = lengths.filter(present).unique()
    if len(layouts) > _MAX_LAYOUTS:
        return None
    for length in layouts.to_list():
        rows = present & (lengths == length)
        micros = _micros(_cells(s.filter(rows), length))
        if micros is None:
            return None
        out[rows.to_numpy()] = micros.astype(np.float64) * 1e-6
    return out


def _cells(s: pl.Series, length: int) -> npt.NDArray[np.uint8]:
    """Strings of `length` bytes each as the rows of a byte matrix."""
    return np.frombuffer(s.str.join("").item().encode(), dtype=np.uint8).reshape(-1, length)


def _micros(cells: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64] | None:
    """Epoch microseconds of rows of equal-length timestamp bytes, or None if any row is not
    one (each check below is one the general parser makes too)."""
    width = cells.shape[1]
    if width < 20 or not (cells[:, _SEPARATOR_AT] == _SEPARATOR_BYTES).all():
        return None
    digits = np.ascontiguousarray((cells[:, _DIGIT_AT] - np.uint8(ord("0"))).T)
    if not (digits <= 9).all():  # below "0" wraps above 9
        return None
    cc, yy, month, day, hour, minute, second = (
        digits[0::2].astype(np.int32) * 10 + digits[1::2])
    if not ((hour <= 23) & (minute <= 59) & (second <= 59)).all():
        return None  # a leap second (:60) goes to the general parser
    if not ((month >= 1) & (month <= 12) & (day >= 1)).all():
        return None
    # months since year 0: a batch spans a few, so their first days and lengths are a table
    ym = (cc * 100 + yy) * 12 + (month - 1)
    lo, hi = int(ym.min()), int(ym.max())
    if hi - lo > _MAX_MONTHS:
        return None
    first, length = _month_table(lo, hi)
    if not (day <= length[ym - lo]).all():
        return None
    fraction, offset = _tail(cells[:, 19:])
    if fraction is None or offset is None:
        return None
    secs = (first[ym - lo] + (day - 1)).astype(np.int64) * 86400
    secs += hour * 3600 + minute * 60 + second - offset
    micros: npt.NDArray[np.int64] = secs * 1_000_000 + fraction
    return micros


def _month_table(lo: int, hi: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Days from 1970-01-01 to the first of each month `lo`..`hi` (months since year 0), and
    the months' lengths: proleptic Gregorian, as chrono's (H. Hinnant's days-from-civil)."""
    ym = np.arange(lo, hi + 2, dtype=np.int64)
    year, month = ym // 12, ym % 12 + 1
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5
    first = (era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468).astype(np.int32)
    return first[:-1], np.diff(first).astype(np.int32)


def _tail(tail: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64] | None,
                                               npt.NDArray[np.int32] | None]:
    """The microseconds of an optional `.f…` fraction and the offset in seconds of the `Z` or
    `±HH:MM` after it, per row: (None, None) unless every row has the same layout."""
    n, width = tail.shape
    zulu = width >= 1 and bool((tail[:, -1] == ord("Z")).all())
    zone = 1 if zulu else 6
    body = width - zone
    if body < 0 or body == 1 or body > 10 or (body and not (tail[:, 0] == ord(".")).all()):
        return None, None  # more than nanoseconds: the general parser decides
    micros = np.zeros(n, dtype=np.int64)
    if body:
        frac = tail[:, 1:body] - np.uint8(ord("0"))
        if not (frac <= 9).all():
            return None, None
        # beyond microseconds, truncated as time_unit="us" does
        for i, column in enumerate(np.ascontiguousarray(frac[:, :6].T)):
            micros += column.astype(np.int64) * 10 ** (5 - i)
    if zulu:
        return micros, np.zeros(n, dtype=np.int32)
    z = tail[:, body:]
    sign = z[:, 0]
    hm = z[:, [1, 2, 4, 5]] - np.uint8(ord("0"))
    if not (((sign == ord("+")) | (sign == ord("-"))).all() and (z[:, 3] == ord(":")).all()
            and (hm <= 9).all()):
        return None, None
    hours = hm[:, 0].astype(np.int32) * 10 + hm[:, 1]
    mins = hm[:, 2].astype(np.int32) * 10 + hm[:, 3]
    if not ((hours <= 23) & (mins <= 59)).all():
        return None, None
    return micros, np.where(sign == ord("+"), 1, -1) * (hours * 3600 + mins * 60)
