"""The check suite every detector of `models/` passes, shipped so users can check their own (in the
spirit of river's `checks` and scikit-learn's `check_estimator`).

A `Subject` says how to drive one detector: how to build it, feed it one time step and make up
values. `series`, `vectors` and `transform` build subjects for the three kinds of detector; each
`check_*` function raises AssertionError naming what failed. Needs numpy and the standard library
only.

>>> from models import EwmaZScore, TailCalibrator
>>> check_all(series(lambda: EwmaZScore(alpha=0.1)))
>>> check_bad_input(transform(lambda: TailCalibrator(min_history=20), "calibrate", low=1e-6))
"""

from __future__ import annotations

import copy
import dataclasses
import doctest
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.base import FloatArray, IntArray

Array = npt.NDArray[Any]
Step = Callable[[Any, IntArray, Array, FloatArray], Any]
Values = Callable[[np.random.Generator, IntArray], Array]
Batch = tuple[IntArray, Array, FloatArray]

T0 = 1_700_000_000.0  # epoch seconds of the first step the checks feed


@dataclass(frozen=True)
class Subject:
    """How the checks drive one detector.

    `make` builds a fresh instance (the same configuration, seed included, every call); `step`
    feeds it one time step `(series, values, ts)` and returns what it says (a numpy array, or a
    dataclass of them such as `Scored`); `values` makes up a step's values for the given ids.
    `independent` is False for detectors whose series share one model (the vector detectors):
    then the order of series within a step may matter. `warm` steps are fed before a state is
    taken, `dt` seconds apart.
    """

    name: str
    make: Callable[[], Any]
    step: Step
    values: Values
    independent: bool = True
    warm: int = 150
    dt: float = 60.0

    def run(self, det: Any, batch: Batch) -> list[Array]:
        return _arrays(self.step(det, *batch))


def _arrays(out: Any) -> list[Array]:
    """The arrays of a detector's answer, in a fixed order."""
    if isinstance(out, np.ndarray):
        return [out]
    if dataclasses.is_dataclass(out):
        return [v for f in dataclasses.fields(out)
                if isinstance(v := getattr(out, f.name), np.ndarray)]
    raise AssertionError(f"a step returned {type(out).__name__}, not arrays")


def _scalar_values(rng: np.random.Generator, ids: IntArray) -> FloatArray:
    """Noise around a level of each series, with an occasional spike (to exercise clipping)."""
    x = rng.normal(10.0 + ids % 7, 1.0)
    return np.asarray(x + 20.0 * (rng.random(len(ids)) < 0.03), dtype=np.float64)


def series(make: Callable[[], Any], *, name: str | None = None, warm: int = 150,
           dt: float = 60.0) -> Subject:
    """A scalar-series detector (`SeriesDetector`, `Judge`, `Ensemble`): `score_learn(series,
    values, floor, rel_floor, ts=ts)`."""
    def step(det: Any, ids: IntArray, x: Array, ts: FloatArray) -> Any:
        floor = np.full(len(ids), 1e-3)
        return det.score_learn(ids, x, floor, np.zeros(len(ids)), ts=ts)
    return Subject(name or type(make()).__name__, make, step, _scalar_values, warm=warm, dt=dt)


def vectors(make: Callable[[], Any], n_features: int, *, name: str | None = None,
            warm: int = 150) -> Subject:
    """A vector detector: `score_learn(series, vectors of shape (n, n_features))`; its series
    share one model."""
    def step(det: Any, ids: IntArray, x: Array, ts: FloatArray) -> Any:
        return det.score_learn(ids, x)

    def values(rng: np.random.Generator, ids: IntArray) -> FloatArray:
        return np.asarray(rng.normal(5.0, 1.0, (len(ids), n_features)), dtype=np.float64)
    return Subject(name or type(make()).__name__, make, step, values, independent=False, warm=warm)


def transform(make: Callable[[], Any], method: str, *, low: float = 0.0, high: float = 1.0,
              name: str | None = None, warm: int = 150) -> Subject:
    """A per-series transform of one number per series a step (`TailCalibrator.calibrate`,
    `AlarmDedup.filter`, `AnomalyLikelihood.score_learn`), fed values uniform in [low, high)."""
    def step(det: Any, ids: IntArray, x: Array, ts: FloatArray) -> Any:
        return getattr(det, method)(ids, x)

    def values(rng: np.random.Generator, ids: IntArray) -> FloatArray:
        return np.asarray(rng.uniform(low, high, len(ids)), dtype=np.float64)
    return Subject(name or type(make()).__name__, make, step, values, warm=warm)


# --- feeding ---------------------------------------------------------------------------------

def _ids(t: int) -> IntArray:
    """The series of step t: a few at first, then more (ids that grow), some steps missing one."""
    n = 3 if t < 40 else 6
    ids = np.arange(n, dtype=np.int64)
    return ids[ids != t % 5] if t % 3 == 0 else ids


def _always(ids: IntArray) -> Callable[[int], IntArray]:
    return lambda t: ids


def _batches(subject: Subject, seed: int, start: int, n: int,
             ids: Callable[[int], IntArray] = _ids) -> list[Batch]:
    rng = np.random.default_rng([seed, start])
    out = []
    for t in range(start, start + n):
        s = ids(t)
        out.append((s, subject.values(rng, s), np.full(len(s), T0 + subject.dt * t)))
    return out


def _feed(subject: Subject, det: Any, batches: Sequence[Batch]) -> list[list[Array]]:
    return [subject.run(det, b) for b in batches]


def _warmed(subject: Subject, seed: int = 0) -> Any:
    det = subject.make()
    _feed(subject, det, _batches(subject, seed, 0, subject.warm))
    return det


def _same(a: Sequence[Sequence[Array]], b: Sequence[Sequence[Array]]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(u.shape == v.shape and np.array_equal(u, v, equal_nan=True)
                                 for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True))


def _fail(subject: Subject, what: str) -> AssertionError:
    return AssertionError(f"{subject.name}: {what}")


def _json(state: Any) -> Any:
    """The state as a checkpoint stores it: strict JSON (no NaN or Infinity), read back."""
    return json.loads(json.dumps(state, allow_nan=False))


# --- checks ----------------------------------------------------------------------------------

def check_json_state_round_trip(subject: Subject) -> None:
    """`state_dict` is strict JSON; a fresh instance loaded from it scores the next steps exactly
    as the original does; a state without `params` (an older checkpoint) loads too."""
    a = _warmed(subject)
    try:
        state = _json(a.state_dict())
    except (TypeError, ValueError) as exc:
        raise _fail(subject, f"state_dict is not strict JSON: {exc}") from exc
    b = subject.make()
    b.load_state(state)
    old = subject.make()
    if isinstance(state, dict) and "params" in state:
        old.load_state({k: v for k, v in state.items() if k != "params"})
    else:
        old.load_state(copy.deepcopy(state))
    nxt = _batches(subject, 1, subject.warm, 40)
    want = _feed(subject, a, nxt)
    if not _same(want, _feed(subject, b, nxt)):
        raise _fail(subject, "scores after a JSON state round trip differ from the original's")
    if not _same(want, _feed(subject, old, nxt)):
        raise _fail(subject, "a state without params does not load to the same scores")


def _mutated(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2.0 + 1.0
    if value is None:
        return 1.0
    if isinstance(value, str):
        return value + "-other"
    return [value]


def check_refuses_other_states(subject: Subject) -> None:
    """`load_state` refuses, with ValueError, a state that is not an object, one of another
    model, and one whose `params` differ from the instance's (a checkpoint of another
    configuration), and is left as it was."""
    warmed = _warmed(subject)
    state = _json(warmed.state_dict())
    other = {**state, "model": "not-" + str(state.get("model"))}
    bad: dict[str, Any] = {"a list": [], "another model": other}
    for key, value in (state.get("params") or {}).items():
        bad[f"params[{key!r}] changed"] = {**state, "params": {**state["params"], key: _mutated(value)}}
    if not state.get("params"):
        raise _fail(subject, "state_dict has no params to check a checkpoint against")
    wrong = []
    for what, st in bad.items():
        try:
            warmed.load_state(st)
        except ValueError:
            if _json(warmed.state_dict()) != state:
                wrong.append(f"{what} was refused but changed the state")
            continue
        except Exception as exc:
            wrong.append(f"{what} raised {type(exc).__name__}, not ValueError")
        else:
            wrong.append(f"{what} was accepted")
    if wrong:
        raise _fail(subject, "load_state: " + "; ".join(wrong))


def check_seeded_determinism(subject: Subject) -> None:
    """Two instances built alike give identical scores, whatever numpy's global random state."""
    outs = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)  # a detector must not draw from the global generator
        det = subject.make()
        outs.append(_feed(subject, det, _batches(subject, 0, 0, subject.warm + 20)))
    if not _same(outs[0], outs[1]):
        raise _fail(subject, "two instances built alike give different scores")


def _bad_batches(subject: Subject, det: Any, good: Batch) -> dict[str, Batch]:
    ids, x, ts = good
    out: dict[str, Batch] = {}
    for what, v in (("NaN", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        y = x.astype(np.float64, copy=True)
        y.reshape(len(ids), -1)[-1, 0] = v
        out[f"a {what} value"] = (ids, y, ts)
    rep = ids.copy()
    rep[-1] = rep[0]
    out["an id repeated within one step"] = (rep, x, ts)
    neg = ids.copy()
    neg[0] = -1
    out["a negative id"] = (neg, x, ts)
    out["fewer values than ids"] = (ids, x[:-1], ts)
    if x.ndim == 2:
        out["vectors of another width"] = (ids, x[:, :-1], ts)
    if getattr(det, "needs_ts", False):
        out["a NaN time"] = (ids, x, np.where(np.arange(len(ts)) == 0, np.nan, ts))
        out["fewer times than values"] = (ids, x, ts[:-1])
    return out


def check_bad_input(subject: Subject) -> None:
    """NaN and inf values, an id repeated within a step, a negative id and mismatched shapes
    raise ValueError before anything is learned: afterwards the detector scores exactly as a copy
    that never saw them."""
    a = _warmed(subject)
    b = copy.deepcopy(a)
    good = _batches(subject, 2, subject.warm, 1, ids=_always(np.arange(4, dtype=np.int64)))[0]
    wrong = []
    for what, batch in _bad_batches(subject, a, good).items():
        try:
            subject.run(a, batch)
        except ValueError:
            continue
        except Exception as exc:
            wrong.append(f"{what} raised {type(exc).__name__}: {exc}, not ValueError")
        else:
            wrong.append(f"{what} was accepted")
    if wrong:
        raise _fail(subject, "; ".join(wrong))
    nxt = _batches(subject, 3, subject.warm, 5)
    if not _same(_feed(subject, a, nxt), _feed(subject, b, nxt)):
        raise _fail(subject, "refused input changed the detector's state")


def check_batch_shapes(subject: Subject) -> None:
    """An empty step answers empty arrays and changes nothing; one series, many series and ids
    that jump ahead work, with one answer per id; `nbytes` is an int that grows with the series.
    Where series are independent, a series' answers depend neither on the other series of its
    steps nor on their order."""
    a = _warmed(subject)
    b = copy.deepcopy(a)
    none = np.zeros(0, dtype=np.int64)
    empty = (none, subject.values(np.random.default_rng(0), none), np.zeros(0))
    if any(len(arr) for arr in subject.run(a, empty)):
        raise _fail(subject, "an empty step answered non-empty arrays")
    nxt = _batches(subject, 4, subject.warm, 3)
    if not _same(_feed(subject, a, nxt), _feed(subject, b, nxt)):
        raise _fail(subject, "an empty step changed the detector's state")
    before = a.nbytes()
    if not isinstance(before, int) or before < 0:
        raise _fail(subject, f"nbytes() is {before!r}, not an int >= 0")
    wide = np.concatenate([np.arange(200), [5_000]]).astype(np.int64)
    for ids in (np.array([1], dtype=np.int64), wide):
        batch = _batches(subject, 5, subject.warm + 3, 1, ids=_always(ids))[0]
        got = subject.run(a, batch)
        if any(len(arr) != len(ids) for arr in got):
            raise _fail(subject, f"a step of {len(ids)} series answered {[len(g) for g in got]} values")
    if a.nbytes() < before:
        raise _fail(subject, "nbytes() shrank as series were added")
    if not subject.independent:
        return
    together, alone, reverse = subject.make(), subject.make(), subject.make()
    for batch in _batches(subject, 6, 0, subject.warm):
        ids, x, ts = batch
        both = subject.run(together, batch)
        one = ids == 1
        solo = subject.run(alone, (ids[one], x[one], ts[one]))
        back = subject.run(reverse, (ids[::-1], x[::-1], ts[::-1]))
        if not _same([[arr[one] for arr in both]], [solo]):
            raise _fail(subject, "a series' answers depend on the other series of its steps")
        if not _same([both], [[arr[::-1] for arr in back]]):
            raise _fail(subject, "a series' answers depend on the order of the series in a step")


def check_forget(subject: Subject) -> None:
    """After `forget(ids)`, a forgotten id behaves exactly as an id never seen; forgetting ids
    never seen is harmless; a negative id is refused with ValueError."""
    a = _warmed(subject)
    b = copy.deepcopy(a)
    a.forget(np.array([2, 9_999], dtype=np.int64))
    for t, batch in enumerate(_batches(subject, 7, subject.warm, 30, ids=_always(np.array([2])))):
        _, x, ts = batch
        if not _same([subject.run(a, batch)], [subject.run(b, (np.array([777]), x, ts))]):
            raise _fail(subject, f"a forgotten id differs from a new one {t + 1} steps after forget")
    try:
        a.forget(np.array([-1], dtype=np.int64))
    except ValueError:
        return
    raise _fail(subject, "forget accepted a negative id")


def check_docstring(subject: Subject) -> None:
    """The class docstring says what the detector is good at and bad at, and holds a doctest
    that passes."""
    cls = type(subject.make())
    doc = cls.__doc__ or ""
    for part in ("Good at", "Bad at", ">>> "):
        if part not in doc:
            raise _fail(subject, f"the class docstring lacks {part.strip()!r}")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    module = __import__(cls.__module__, fromlist=["_"])
    for test in doctest.DocTestFinder(recurse=False).find(cls, cls.__name__, globs=vars(module).copy()):
        runner.run(test, out=lambda _: None)
    if runner.failures:
        raise _fail(subject, f"{runner.failures} of the class docstring's examples fail")


CHECKS: tuple[Callable[[Subject], None], ...] = (
    check_json_state_round_trip,
    check_refuses_other_states,
    check_seeded_determinism,
    check_bad_input,
    check_batch_shapes,
    check_forget,
    check_docstring,
)


def check_all(subject: Subject) -> None:
    """Run every check on `subject` (AssertionError at the first that fails)."""
    for check in CHECKS:
        check(subject)
