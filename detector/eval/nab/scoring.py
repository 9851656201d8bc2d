"""NAB's scoring, written from its published rules (Lavin & Ahmad 2015; numenta/NAB `sweeper.py`,
`runner.py`): per-row weights from anomaly windows and a scaled sigmoid, a probationary period,
one threshold per profile chosen to maximise the corpus total, and normalisation between the null
detector (never fires) and the perfect one (fires at the start of every window).

Only numpy and the standard library; no detector code runs here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

PROFILES: dict[str, tuple[float, float, float]] = {
    # name: (tp weight, fp weight, fn weight)
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}
PROBATION_PERCENT = 0.15


def scaled_sigmoid(position: float) -> float:
    """NAB's weight of a detection at a relative position: about 0.987 at a window's left edge
    (-1), 0 at its right edge (0), negative after it, -1 from three window widths on.

    >>> round(scaled_sigmoid(-1.0), 5), round(scaled_sigmoid(-0.5), 5), scaled_sigmoid(0.0)
    (0.98661, 0.84828, 0.0)
    >>> scaled_sigmoid(3.0)
    -1.0
    """
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(rows: int) -> int:
    """Rows at the start of a file that are not scored: 15%, at most 750.

    >>> probation_length(4032), probation_length(10000)
    (604, 750)
    """
    return int(min(math.floor(PROBATION_PERCENT * rows), PROBATION_PERCENT * 5000))


@dataclass(slots=True)
class FileRows:
    """One file's rows as NAB scores them, for one profile."""

    name: str
    weight: npt.NDArray[np.float64]  # what firing on the row earns (tp) or costs (fp, negative)
    window: npt.NDArray[np.int64]  # window index within the file, -1 outside windows
    scored: npt.NDArray[np.bool_]  # False during the probationary period
    windows: int  # windows with at least one scored row


def sweep_rows(
    name: str, timestamps: Sequence[object], windows: Sequence[tuple[object, object]],
    tp: float, fp: float,
) -> FileRows:
    """Per-row weights of one file (NAB's `calcSweepScore`), rows in file order.

    `timestamps` and the window limits must compare equal where NAB's do (window limits are row
    timestamps); with repeated timestamps, a limit means its first row, as in NAB.
    """
    ts = list(timestamps)
    pending = list(windows)
    n = len(ts)
    max_tp = scaled_sigmoid(-1.0)
    probation = probation_length(n)
    weight = np.zeros(n, dtype=np.float64)
    window = np.full(n, -1, dtype=np.int64)
    cur: tuple[object, object] | None = None
    cur_right = cur_width = 0
    prev_right: int | None = None
    prev_width = 0.0
    wid = -1
    for i, t in enumerate(ts):
        if pending and t == pending[0][0]:
            cur = pending.pop(0)
            wid += 1
            cur_right = ts.index(cur[1])
            cur_width = cur_right - ts.index(cur[0]) + 1
        if cur is not None:
            weight[i] = scaled_sigmoid(-(cur_right - i + 1) / cur_width) * tp / max_tp
            window[i] = wid
        else:
            past = 3.0 if prev_right is None else abs(prev_right - i) / (prev_width - 1)
            weight[i] = scaled_sigmoid(past) * fp
        if cur is not None and t == cur[1]:
            prev_right, prev_width = i, float(cur_width)
            cur = None
    scored = np.arange(n) >= probation
    counted = len(set(window[scored & (window >= 0)].tolist()))
    return FileRows(name=name, weight=weight, window=window, scored=scored, windows=counted)


@dataclass(slots=True)
class Sweep:
    """The corpus total at every threshold, and the best one."""

    thresholds: npt.NDArray[np.float64]  # descending; fires when score >= threshold
    totals: npt.NDArray[np.float64]
    best_threshold: float
    best_total: float
    counts: dict[str, int] = field(default_factory=dict)  # tp, fp, fn at the best threshold


def sweep(files: Sequence[FileRows], scores: Sequence[npt.NDArray[np.float64]], fn: float) -> Sweep:
    """Every threshold's corpus total (NAB's `calcScoreByThreshold` over all files at once).

    A window earns the best weight among its rows that fire (its earliest firing row) or costs
    `fn` when none fires; each firing row outside windows adds its (negative) weight.
    """
    w_all, s_all, win_all = [], [], []
    offset = 0
    total_windows = 0
    for f, s in zip(files, scores, strict=True):
        keep = f.scored
        w_all.append(f.weight[keep])
        s_all.append(np.asarray(s, dtype=np.float64)[keep])
        win = f.window[keep]
        win_all.append(np.where(win >= 0, win + offset, -1))
        offset += int(f.window.max()) + 1 if len(f.window) else 0
        total_windows += f.windows
    weight = np.concatenate(w_all) if w_all else np.zeros(0)
    score = np.concatenate(s_all) if s_all else np.zeros(0)
    window = np.concatenate(win_all) if win_all else np.zeros(0, dtype=np.int64)
    order = np.argsort(-score, kind="stable")
    score, weight, window = score[order], weight[order], window[order]
    inc = np.where(window < 0, weight, 0.0)  # false positives add their weight
    for wid in np.unique(window[window >= 0]):
        pos = np.flatnonzero(window == wid)
        best = np.maximum.accumulate(weight[pos])
        inc[pos] = best - np.concatenate(([-fn], best[:-1]))
    totals_rows = -fn * total_windows + np.cumsum(inc)
    # A threshold admits every row scoring at least it: totals after each run of equal scores.
    last_of_run: npt.NDArray[np.int64] = (
        np.flatnonzero(np.append(score[1:] != score[:-1], True)) if len(score)
        else np.zeros(0, dtype=np.int64)
    )
    thresholds = np.concatenate(([np.inf], score[last_of_run]))
    totals = np.concatenate(([-fn * total_windows], totals_rows[last_of_run]))
    k = int(np.argmax(totals))  # ties keep the highest threshold
    fired = int(last_of_run[k - 1]) + 1 if k else 0  # rows that fire at the best threshold
    tp_windows = len(np.unique(window[:fired][window[:fired] >= 0]))
    counts = {"tp": tp_windows, "fp": int((window[:fired] < 0).sum()),
              "fn": total_windows - tp_windows}
    return Sweep(thresholds=thresholds, totals=totals, best_threshold=float(thresholds[k]),
                 best_total=float(totals[k]), counts=counts)


def total_at(files: Sequence[FileRows], scores: Sequence[npt.NDArray[np.float64]], fn: float,
             threshold: float) -> float:
    """The raw total of `files` when rows scoring at least `threshold` fire."""
    total = 0.0
    for f, s in zip(files, scores, strict=True):
        fire = f.scored & (np.asarray(s) >= threshold)
        total += float(f.weight[fire & (f.window < 0)].sum())
        for wid in np.unique(f.window[f.scored & (f.window >= 0)]):
            hit = fire & (f.window == wid)
            total += float(f.weight[hit].max()) if hit.any() else -fn
    return total


def normalise(raw: float, null: float, windows: int, tp: float) -> float:
    """NAB's 0-100 scale: 0 for the null detector, 100 for `windows` perfect detections.

    >>> normalise(-64.0, -64.0, 64, 1.0), normalise(64.0, -64.0, 64, 1.0)
    (0.0, 100.0)
    """
    perfect = windows * tp
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
