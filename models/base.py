"""The protocols every detector of `models/` follows (state, scalar series, vectors), the z -> [0, 1]
score mapping they share, and the checks of their input and of their checkpoints."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy import special

Direction = Literal["up", "down", "both"]
DIRECTIONS: tuple[Direction, ...] = ("up", "down", "both")

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


@runtime_checkable
class Stateful(Protocol):
    """What every model of `models/` has, whatever it scores: per-series state kept in numpy
    arrays indexed by small non-negative series ids, and checkpoints as plain JSON data.

    - `forget(series)`: those ids start afresh, exactly as ids never seen (they may be reused
      for new series); ids never seen are ignored; a negative id raises ValueError.
    - `state_dict()`: strict JSON data (no NaN, no Infinity, no pickle) holding `"model"` (the
      `name`), `"params"` (the constructor's parameters that shape the state or the scores) and
      the state.
    - `load_state(state)`: the inverse, into an instance built with the same parameters. A state
      of another model, of other `params` (a checkpoint of another configuration), or that is
      malformed raises ValueError, and the instance is left as it was. A state without
      `params` (written before they were stored) is accepted.
    - `nbytes()`: bytes held, which grow with the number of series.
    - `params()`: the parameters `state_dict` writes under "params" and `load_state` checks.
    """

    name: str

    def params(self) -> dict[str, Any]: ...

    def forget(self, series: IntArray) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...

    def nbytes(self) -> int: ...


@runtime_checkable
class SeriesDetector(Stateful, Protocol):
    """Scores values of many independent scalar series at once, then learns them.

    `series` holds small non-negative ids; each id appears at most once per call, so one call is
    one time step. The spread used for z is at least `max(floor, rel_floor * |baseline centre|)`,
    so a series that never moved does not alarm on noise. Values, floors and times must be
    finite (ValueError otherwise, before anything is learned).

    Two capabilities are declared, not guessed:

    - `needs_ts`: True when `score_learn` reads the time of each value (`ts`, epoch seconds;
      a time-of-day or period model) and raises ValueError without it; others ignore `ts`.
    - `explains(series)`: where this detector's verdict should count, judged before the next
      value is learned. A gated detector (`PeriodicZScore`: only where the period beats a flat
      level) says so per series; every other detector answers True everywhere. A `Judge` lets a
      member take part only where it explains the series.
    """

    needs_ts: bool

    def score_learn(
        self,
        series: IntArray,
        values: FloatArray,
        floor: FloatArray | None = None,
        rel_floor: FloatArray | None = None,
        ts: FloatArray | None = None,
    ) -> Scored: ...

    def explains(self, series: IntArray) -> BoolArray: ...


@runtime_checkable
class VectorDetector(Stateful, Protocol):
    """Scores one vector of `n_features` per series a time step (`x` of shape (n, n_features)),
    then learns them, returning raw scores (higher = more anomalous; not probabilities: pass
    them to `TailCalibrator`). Its series may share one model, so `forget` resets only what is
    kept per series."""

    n_features: int

    def score_learn(self, series: IntArray, x: FloatArray) -> FloatArray: ...


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


def as_step(series: IntArray, values: FloatArray, floor: FloatArray | None = None,
            rel_floor: FloatArray | None = None) -> tuple[IntArray, FloatArray]:
    """One time step's (series, values) as arrays, checked: same length, ids unique and >= 0,
    values finite; floors, when given, one per value, finite and >= 0.

    >>> as_step(np.array([0, 0]), np.array([1.0, 2.0]))
    Traceback (most recent call last):
    ...
    ValueError: series ids repeat within one call; split the batch into time steps
    >>> as_step(np.array([0]), np.array([1.0]), floor=np.array([-1.0]))
    Traceback (most recent call last):
    ...
    ValueError: floor must be finite and >= 0, one per value
    """
    s = np.asarray(series)
    if s.dtype.kind not in "iu" and not (s.size == 0 and s.dtype.kind == "f"):
        raise ValueError(f"series ids must be integers, not {s.dtype}")
    s = s.astype(np.int64, copy=False)
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
    for what, f in (("floor", floor), ("rel_floor", rel_floor)):
        if f is not None:
            a = np.asarray(f, dtype=np.float64)
            if a.shape != x.shape or not (np.isfinite(a) & (a >= 0)).all():
                raise ValueError(f"{what} must be finite and >= 0, one per value")
    return s, x


def as_ids(series: IntArray) -> IntArray:
    """Series ids (of `forget`) as a 1-d int array, checked >= 0.

    >>> as_ids(np.array([-1]))
    Traceback (most recent call last):
    ...
    ValueError: series ids must be >= 0
    """
    s = np.asarray(series)
    if s.size == 0:
        return np.zeros(0, dtype=np.int64)
    if s.ndim != 1 or s.dtype.kind not in "iu":
        raise ValueError(f"series ids must be a 1-d integer array, not {s.dtype} {s.shape}")
    s = s.astype(np.int64, copy=False)
    if s.min() < 0:
        raise ValueError("series ids must be >= 0")
    return s


def everywhere(series: IntArray) -> BoolArray:
    """`explains` of a detector without a gate: its verdict counts for every series."""
    return np.ones(len(series), dtype=bool)


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
    (0 unless `fills` says otherwise): the ids may then be reused for new series. Ids beyond
    the arrays (never seen) are ignored; negative ids raise ValueError."""
    ids = as_ids(series)
    for name in names:
        arr = getattr(obj, name)
        rows = ids[ids < len(arr)]
        arr[rows] = (fills or {}).get(name, 0)


def check_state(state: Any, model: str) -> dict[str, Any]:
    """`state` as the checkpoint of a `model`: an object whose "model" is that name.

    >>> check_state({"model": "robust"}, "ewma")
    Traceback (most recent call last):
    ...
    ValueError: checkpoint is for model 'robust', not 'ewma'
    """
    if not isinstance(state, dict):
        raise ValueError(f"a checkpoint of {model!r} is an object, not {type(state).__name__}")
    if state.get("model") != model:
        raise ValueError(f"checkpoint is for model {state.get('model')!r}, not {model!r}")
    return state


def check_params(state: dict[str, Any], params: dict[str, Any]) -> None:
    """Refuse a checkpoint written with other parameters than `params` (the instance's, as its
    `state_dict` writes them): its state would mean something else here. A state without
    "params", or without some of them (written before they were stored), is accepted.

    >>> check_params({"params": {"alpha": 0.1}}, {"alpha": 0.05, "warmup": 12})
    Traceback (most recent call last):
    ...
    ValueError: checkpoint of another configuration: alpha=0.1 there, 0.05 here; build the ...
    >>> check_params({"params": {"alpha": 0.05}}, {"alpha": 0.05, "warmup": 12})
    """
    stored = state.get("params")
    if stored is None:
        return
    if not isinstance(stored, dict):
        raise ValueError(f"checkpoint params are {type(stored).__name__}, not an object")
    diff = [f"{k}={v!r} there, {params[k]!r} here" if k in params else f"{k}={v!r} unknown here"
            for k, v in stored.items()
            if k not in params or not _same_param(v, params[k])]
    if diff:
        raise ValueError("checkpoint of another configuration: " + "; ".join(diff)
                         + "; build the model with its parameters or start it cold")


def _same_param(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return type(a) is type(b) and bool(a == b)


def state_part(state: dict[str, Any], key: str) -> Any:
    """`state[key]`, or ValueError naming the missing part of a checkpoint."""
    if key not in state:
        raise ValueError(f"checkpoint lacks {key!r}")
    return state[key]


def state_count(state: dict[str, Any], key: str) -> int:
    """`state[key]` as a count (an int >= 0), or ValueError."""
    v = state_part(state, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"checkpoint {key!r} is {v!r}, not a count")
    return v


def load_rows(state: dict[str, Any], spec: dict[str, tuple[Any, tuple[int, ...]]]
              ) -> dict[str, npt.NDArray[Any]]:
    """Per-series arrays out of a checkpoint's plain data: each converted to its dtype and
    trailing shape, all of one length, floats finite. A state that is not (a tampered or
    truncated checkpoint) raises ValueError, so `load_state` refuses it instead of failing later.

    >>> load_rows({"mean": [1.0, 2.0], "n": [3, 4]}, {"mean": (np.float64, ()), "n": (np.int64, ())})["n"]
    array([3, 4])
    >>> load_rows({"mean": [1.0, 2.0], "n": 3}, {"mean": (np.float64, ()), "n": (np.int64, ())})
    Traceback (most recent call last):
    ...
    ValueError: 'n' is not an array of shape (series)
    """
    out: dict[str, npt.NDArray[Any]] = {}
    for key, (dtype, tail) in spec.items():
        raw = state_part(state, key)
        shape = ", ".join(["series", *map(str, tail)])
        try:
            arr = np.asarray(raw, dtype=dtype)
            if tail and arr.ndim >= 1:
                arr = arr.reshape(-1, *tail)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{key!r} is not an array of shape ({shape}) of {np.dtype(dtype)}") from exc
        if arr.ndim != 1 + len(tail):
            raise ValueError(f"{key!r} is not an array of shape ({shape})")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"{key!r} holds NaN or infinite values")
        out[key] = arr
    lengths = sorted({len(a) for a in out.values()})
    if len(lengths) > 1:
        raise ValueError(f"per-series arrays of unequal lengths {lengths}")
    return out


def nonnegative(rows: dict[str, npt.NDArray[Any]], *keys: str) -> None:
    """Refuse checkpoint arrays (counts, variances) that cannot be negative but are."""
    bad = [k for k in keys if len(rows[k]) and rows[k].min() < 0]
    if bad:
        raise ValueError(f"checkpoint arrays {bad} hold negative values")


def grow(arr: npt.NDArray[Any], size: int, fill: float) -> npt.NDArray[Any]:
    """`arr` extended along axis 0 to at least `size` rows (doubling), new rows set to `fill`."""
    if len(arr) >= size:
        return arr
    new_len = max(size, 2 * len(arr), 16)
    out = np.full((new_len, *arr.shape[1:]), fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out
