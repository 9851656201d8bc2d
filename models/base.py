"""The protocol every per-series detector follows, and the z -> [0, 1] score mapping they share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from scipy import special

Direction = Literal["up", "down", "both"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Scored:
    """What a detector says of each value of a batch, judged before the value was learned."""

    z: FloatArray  # signed standardised deviation from the baseline
    mean: FloatArray  # baseline centre
    std: FloatArray  # baseline spread, floor included
    seen: IntArray  # values of that series learned before this one
    dof: FloatArray  # effective number of values behind the baseline, for `tail_score`


class SeriesDetector(Protocol):
    """Scores values of many independent series at once, then learns them.

    `series` holds small non-negative ids; each id appears at most once per call, so one call is
    one time step. The spread used for z is at least `max(floor, rel_floor * |baseline centre|)`,
    so a series that never moved does not alarm on noise. Checkpoints are plain arrays and numbers: no pickle.
    """

    name: str

    def score_learn(
        self,
        series: IntArray,
        values: FloatArray,
        floor: FloatArray | None = None,
        rel_floor: FloatArray | None = None,
    ) -> Scored: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...

    def nbytes(self) -> int: ...


def tail_score(z: FloatArray, direction: Direction, dof: FloatArray | None = None) -> FloatArray:
    """Map z-scores to [0, 1]: the probability mass below the deviation.

    "up" and "down" are one-sided (only that direction is bad); "both" is two-sided. With `dof`
    (a baseline estimated from few values), the Student t distribution replaces the normal: its
    heavier tails keep an uncertain baseline from alarming on ordinary noise.

    >>> tail_score(np.array([0.0, 3.0, -3.0]), "up").round(4).tolist()
    [0.5, 0.9987, 0.0013]
    >>> tail_score(np.array([0.0, 3.0, -3.0]), "both").round(4).tolist()
    [0.0, 0.9973, 0.9973]
    >>> tail_score(np.array([3.0]), "both", dof=np.array([10.0])).round(4).tolist()
    [0.9867]
    """
    z = np.nan_to_num(np.asarray(z, dtype=np.float64), nan=0.0)
    if direction == "down":
        z = -z
    if dof is None:
        below = 0.5 * (1.0 + special.erf(z / math.sqrt(2.0)))  # normal CDF
        if direction == "both":
            below = 0.5 * (1.0 + special.erf(np.abs(z) / math.sqrt(2.0)))
    else:
        d = np.maximum(np.asarray(dof, dtype=np.float64), 1.0)
        below = special.stdtr(d, np.abs(z) if direction == "both" else z)
    out: FloatArray = 2.0 * below - 1.0 if direction == "both" else below
    return np.clip(out, 0.0, 1.0)


def as_step(series: IntArray, values: FloatArray) -> tuple[IntArray, FloatArray]:
    """One time step's (series, values) as arrays, checked: same length, ids unique and >= 0,
    values finite.

    >>> as_step(np.array([0, 0]), np.array([1.0, 2.0]))
    Traceback (most recent call last):
    ...
    ValueError: series ids repeat within one call; split the batch into time steps
    """
    s = np.asarray(series, dtype=np.int64)
    x = np.asarray(values, dtype=np.float64)
    if s.shape != x.shape or s.ndim != 1:
        raise ValueError(f"series {s.shape} and values {x.shape} must be 1-d and of one length")
    if len(s) and (s.min() < 0 or len(np.unique(s)) != len(s)):
        if s.min() < 0:
            raise ValueError("series ids must be >= 0")
        raise ValueError("series ids repeat within one call; split the batch into time steps")
    if not np.isfinite(x).all():
        bad = s[~np.isfinite(x)][:5].tolist()
        raise ValueError(f"values must be finite (NaN or inf for series {bad}); drop or impute "
                         "them before scoring, or the baseline would be poisoned")
    return s, x


def as_times(ts: FloatArray | None, values: FloatArray, model: str) -> FloatArray:
    """The epoch seconds of one step's values, checked (models that need the time of day).

    >>> as_times(None, np.array([1.0]), "SeasonalZScore")
    Traceback (most recent call last):
    ...
    ValueError: SeasonalZScore needs the time of each value: pass ts= (epoch s)
    """
    if ts is None:
        raise ValueError(f"{model} needs the time of each value: pass ts= (epoch s)")
    t = np.asarray(ts, dtype=np.float64)
    if t.shape != values.shape or not np.isfinite(t).all():
        raise ValueError("ts must be finite epoch seconds, one per value")
    return t


def effective_floor(
    centre: FloatArray, floor: FloatArray | None, rel_floor: FloatArray | None
) -> FloatArray:
    """max(floor, rel_floor * |centre|), with absent parts taken as 0."""
    out = np.zeros_like(centre) if floor is None else np.asarray(floor, dtype=np.float64)
    if rel_floor is not None:
        out = np.maximum(out, np.asarray(rel_floor, dtype=np.float64) * np.abs(centre))
    return out


def forget_rows(obj: object, names: tuple[str, ...], series: IntArray,
                fills: dict[str, float] | None = None) -> None:
    """Reset the rows of `series` in each named per-series array of `obj` to its start value
    (0 unless `fills` says otherwise): the ids may then be reused for new series."""
    for name in names:
        arr = getattr(obj, name)
        rows = series[series < len(arr)]
        arr[rows] = (fills or {}).get(name, 0)


def load_rows(state: dict[str, Any], spec: dict[str, tuple[Any, tuple[int, ...]]]
              ) -> dict[str, npt.NDArray[Any]]:
    """Per-series arrays out of a checkpoint's plain data: each converted to its dtype and
    trailing shape, all of one length. A state that is not (a tampered or truncated
    checkpoint) raises ValueError, so `load_state` refuses it instead of failing later.

    >>> load_rows({"mean": [1.0, 2.0], "n": [3, 4]}, {"mean": (np.float64, ()), "n": (np.int64, ())})["n"]
    array([3, 4])
    >>> load_rows({"mean": [1.0, 2.0], "n": 3}, {"mean": (np.float64, ()), "n": (np.int64, ())})
    Traceback (most recent call last):
    ...
    ValueError: 'n' is not an array of shape (series)
    """
    out: dict[str, npt.NDArray[Any]] = {}
    for key, (dtype, tail) in spec.items():
        arr = np.asarray(state[key], dtype=dtype)
        if tail and arr.ndim >= 1:
            arr = arr.reshape(-1, *tail)
        if arr.ndim != 1 + len(tail):
            shape = ", ".join(["series", *map(str, tail)])
            raise ValueError(f"{key!r} is not an array of shape ({shape})")
        out[key] = arr
    lengths = sorted({len(a) for a in out.values()})
    if len(lengths) > 1:
        raise ValueError(f"per-series arrays of unequal lengths {lengths}")
    return out


def grow(arr: npt.NDArray[Any], size: int, fill: float) -> npt.NDArray[Any]:
    """`arr` extended along axis 0 to at least `size` rows (doubling), new rows set to `fill`."""
    if len(arr) >= size:
        return arr
    new_len = max(size, 2 * len(arr), 16)
    out = np.full((new_len, *arr.shape[1:]), fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out
