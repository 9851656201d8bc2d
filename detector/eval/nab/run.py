"""Runs a detector over a NAB corpus (all files in lockstep, one model call per time step) and
scores the results for every profile."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.eval.nab import DEFAULT_DETECTOR
from detector.eval.nab.corpus import Series
from detector.eval.nab.episodes import sweep_episodes
from detector.eval.nab.scoring import PROFILES, normalise, sweep_rows
from models import (
    AlarmDedup,
    Ensemble,
    EwmaZScore,
    HalfSpaceTreesDetector,
    IsolationForestDetector,
    PeriodicZScore,
    RobustZScore,
    SeasonalZScore,
    TailCalibrator,
    tail_score,
)
from models.base import SeriesDetector, grow
from models.calibrate import soft_surprise
from models.default import ALPHA, QUIET, default_judge
from models.episode import quiet_fires
from models.likelihood import AnomalyLikelihood

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# One time step of every live file -> p-values (1 = nothing unusual).
StepScorer = Callable[[IntArray, FloatArray, FloatArray, FloatArray], FloatArray]

_RANGE_FLOOR = 0.01  # spread below 1% of the range seen so far is not signal
_WARMUP = 12
CALIBRATION_K = 25  # the other detectors' calibration, as they were measured (the default's is 20)


def _z_scorer(model: EwmaZScore | RobustZScore, calibrate: bool) -> StepScorer:
    """One model through the judge: its tail, calibrated (or not) against the series' history."""
    return _ensemble(model, calibrate=calibrate)


def _likelihood() -> StepScorer:
    model = EwmaZScore(alpha=0.01, clip_z=3.0, warmup=_WARMUP)
    lik = AnomalyLikelihood(repeat_red=0.99999, repeat_yellow=0.999)

    def step(ids: IntArray, x: FloatArray, floor: FloatArray, ts: FloatArray) -> FloatArray:
        s = model.score_learn(ids, x, floor=floor)
        z = np.where(s.seen >= 2, s.z, 0.0)
        # Its log-scale likelihood maps back to a p-value: 1 - log(1 - p) / log(1e-10).
        return np.power(10.0, -10.0 * lik.score_learn(ids, tail_score(np.abs(z), "up")))
    return step


def _ensemble(*members: SeriesDetector, calibrate: bool = True) -> StepScorer:
    ens = Ensemble(list(members), calibrate=calibrate, warmup=_WARMUP, calibration_k=CALIBRATION_K)

    def step(ids: IntArray, x: FloatArray, floor: FloatArray, ts: FloatArray) -> FloatArray:
        return ens.score_learn(ids, x, floor=floor, ts=ts)
    return step


def _vector(det: IsolationForestDetector | HalfSpaceTreesDetector) -> StepScorer:
    """Raw vector scores (last value and last change) through per-file rank calibration."""
    cal = TailCalibrator(k=CALIBRATION_K)
    last = np.zeros(0)
    seen = np.zeros(0, dtype=np.int64)

    def step(ids: IntArray, x: FloatArray, floor: FloatArray, ts: FloatArray) -> FloatArray:
        nonlocal last, seen
        last = grow(last, int(ids.max()) + 1, 0.0)
        seen = grow(seen, int(ids.max()) + 1, 0)
        diff = np.where(seen[ids] > 0, x - last[ids], 0.0)
        last[ids] = x
        seen[ids] += 1
        raw = det.score_learn(ids, np.column_stack([x, diff]))
        # Raw scores are not probabilities; the calibrator ranks them against the file's history.
        return cal.calibrate(ids, np.clip(1.0 - raw, 1e-300, 1.0))
    return step


def _default() -> StepScorer:
    """The default metric detector (`models.default`), as `vigil metrics` builds it for a
    5-minute series."""
    judge = default_judge(300.0)

    def step(ids: IntArray, x: FloatArray, floor: FloatArray, ts: FloatArray) -> FloatArray:
        return judge.score_learn(ids, x, floor=floor, ts=ts).p
    return step


DETECTORS: dict[str, Callable[[], StepScorer]] = {
    "default": _default,
    "ewma-periodic": lambda: _ensemble(EwmaZScore(alpha=ALPHA, clip_z=np.inf, warmup=_WARMUP),
                                       PeriodicZScore(alpha=ALPHA, warmup=_WARMUP)),
    "ewma-calibrated": lambda: _z_scorer(EwmaZScore(alpha=ALPHA, clip_z=np.inf, warmup=_WARMUP), True),
    "ewma": lambda: _z_scorer(EwmaZScore(alpha=ALPHA, clip_z=np.inf, warmup=_WARMUP), False),
    "robust-calibrated": lambda: _z_scorer(RobustZScore(window=64, warmup=_WARMUP), True),
    "ewma-likelihood": _likelihood,
    "ensemble": lambda: _ensemble(EwmaZScore(alpha=ALPHA, clip_z=np.inf, warmup=_WARMUP),
                                  RobustZScore(window=64, warmup=_WARMUP),
                                  SeasonalZScore(warmup=_WARMUP)),
    "iforest": lambda: _vector(IsolationForestDetector(n_features=2, lags=8, seed=0)),
    "hstrees": lambda: _vector(HalfSpaceTreesDetector(n_features=2, seed=0)),
}


def detect(series: list[Series], name: str = DEFAULT_DETECTOR, rest: int = 0) -> list[FloatArray]:
    """Anomaly scores in [0, 1) for every row of every series, online: row t sees rows <= t.

    All files advance together, one model call per time step (so the vector detectors' shared
    forest or trees learn from every file's past rows). Every detector yields p-values; they
    become scores with `soft_surprise` (p = 1e-10 -> 0.5, never saturating). Which of them
    alarm is the episode rule's business (`evaluate`); `rest` > 0 passes them through the older
    `AlarmDedup` (beat the last `rest` scores) instead, for comparison.
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    scorer = DETECTORS[name]()
    dedup = AlarmDedup(rest=rest)
    lengths = np.array([len(s.values) for s in series])
    epoch = [np.array([t.timestamp() for t in s.timestamps]) for s in series]
    lo = np.full(len(series), np.inf)
    hi = np.full(len(series), -np.inf)
    out = [np.zeros(n, dtype=np.float64) for n in lengths]
    for t in range(int(lengths.max())):
        ids = np.flatnonzero(lengths > t)
        x = np.array([series[i].values[t] for i in ids])
        ts = np.array([epoch[i][t] for i in ids])
        lo[ids] = np.minimum(lo[ids], x)
        hi[ids] = np.maximum(hi[ids], x)
        p = scorer(ids, x, _RANGE_FLOOR * (hi[ids] - lo[ids]), ts)
        ready = dedup.filter(ids, soft_surprise(p))
        for i, v in zip(ids.tolist(), ready.tolist(), strict=True):
            out[i][t] = v
    return out


@dataclass(slots=True, frozen=True)
class FileScore:
    """One file at a profile's threshold: what the corpus total is made of."""

    raw: float  # its raw NAB total: earned by detections, minus misses and false positives
    windows: int  # its windows NAB scores (those with a row after the probationary period)
    found: int  # of them, windows with an alarm
    fp: int  # alarms outside every window


@dataclass(slots=True)
class ProfileResult:
    profile: str
    score: float  # normalised, 0 = never fires, 100 = perfect
    threshold: float
    raw: float
    null: float
    tp: int
    fp: int
    fn: int
    by_corpus: dict[str, float]  # each corpus at the profile's one threshold
    held_out: dict[str, float]  # each corpus at the threshold chosen on the other corpora
    files: dict[str, FileScore] = field(default_factory=dict)  # each file at the threshold

    @property
    def held_out_mean(self) -> float:
        """The leave-one-corpus-out mean: what a corpus never seen should expect."""
        return float(np.mean(list(self.held_out.values()))) if self.held_out else float("nan")


def evaluate(series: list[Series], scores: list[npt.NDArray[np.float64]],
             quiet: int = QUIET) -> list[ProfileResult]:
    """Each profile's optimised threshold, normalised score and per-corpus breakdown, with the
    rows that fire chosen by the episode rule (`EpisodeRule(quiet)`: an alarm silences its file
    for `quiet` rows; 0 lets every crossing fire, as NAB's own sweeper does).

    `held_out[c]` is corpus c scored at the threshold that is best on every other file: the
    leave-one-corpus-out figure (corpora without anomaly windows are always in the choosing
    part, and not scored alone).
    """
    names = [s.corpus for s in series]
    files_of = {profile: [sweep_rows(s.name, s.timestamps, s.windows, tp, fp) for s in series]
                for profile, (tp, fp, fn) in PROFILES.items()}
    sweeps = sweep_episodes({p: (files_of[p], PROFILES[p][2]) for p in PROFILES}, scores, quiet)
    results = []
    for profile, (tp, _fp, fn) in PROFILES.items():
        files, sw = files_of[profile], sweeps[profile]
        windows = sum(f.windows for f in files)
        null = -fn * windows
        a = sw.best()
        by_corpus: dict[str, float] = {}
        held_out: dict[str, float] = {}
        for corpus in sorted(set(names)):
            idx = [i for i, c in enumerate(names) if c == corpus]
            w = sum(files[i].windows for i in idx)
            raw = float(sw.totals[a, idx].sum())
            # A corpus without windows has no scale: report its raw false-positive cost.
            by_corpus[corpus] = normalise(raw, -fn * w, w, tp) if w else raw
            rest = [i for i, c in enumerate(names) if c != corpus]
            if w and rest:
                held_out[corpus] = normalise(float(sw.totals[sw.best(rest), idx].sum()), -fn * w, w, tp)
        found = int(sw.tp[a].sum())
        results.append(ProfileResult(
            profile=profile, score=normalise(float(sw.totals[a].sum()), null, windows, tp),
            threshold=float(sw.thresholds[a]), raw=float(sw.totals[a].sum()), null=null,
            tp=found, fp=int(sw.fp[a].sum()), fn=windows - found, by_corpus=by_corpus,
            held_out=held_out,
            files={f.name: FileScore(raw=float(sw.totals[a, i]), windows=f.windows,
                                     found=int(sw.tp[a, i]), fp=int(sw.fp[a, i]))
                   for i, f in enumerate(files)},
        ))
    return results


def write_results(out_dir: Path, series: list[Series], scores: list[npt.NDArray[np.float64]],
                  threshold: float = np.inf, quiet: int = 0) -> None:
    """NAB-format results: `out_dir/<corpus>/<file>.csv` with timestamp,value,anomaly_score and
    `alarm`: 1 where the episode rule (`quiet`) fires at `threshold` (the standard profile's).

    NAB's own sweeper reads `anomaly_score` and lets every crossing fire; `alarm` is what Vigil
    would have paged.
    """
    for s, sc in zip(series, scores, strict=True):
        path = out_dir / s.name
        path.parent.mkdir(parents=True, exist_ok=True)
        alarm = np.zeros(len(sc), dtype=np.int64)
        alarm[quiet_fires(sc, threshold, quiet)] = 1
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score", "alarm"])
            for ts, v, a, f in zip(s.raw_timestamps, s.values.tolist(), sc.tolist(),
                                   alarm.tolist(), strict=True):
                w.writerow([ts, repr(v) if not v.is_integer() else int(v), f"{a:.6f}", f])
