"""NAB's threshold sweep for a detector that alarms through an episode rule: at each candidate
threshold the rule (`models.episode.quiet_fires`, what `EpisodeRule` does online) decides which
rows fire, and NAB's weights score them. The threshold is then chosen as NAB chooses it (the best
corpus total), and also on all corpora but one, to score the one left out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.eval.nab.scoring import FileRows
from models.episode import quiet_fires

FloatArray = npt.NDArray[np.float64]

_TOP_SHARE = 0.05  # every distinct score of the top 5% of rows is a candidate threshold ...
_QUANTILES = 100  # ... and this many quantiles of the scores below them


def thresholds(scores: Sequence[FloatArray], files: Sequence[FileRows]) -> FloatArray:
    """Candidate thresholds, descending: every distinct positive score of the highest 5% of the
    scored rows (NAB's best thresholds admit far fewer), then quantiles of the rest. Above the
    quantiles the sweep is exact.

    >>> from detector.eval.nab.scoring import sweep_rows
    >>> f = sweep_rows("a", list(range(10)), [], 1.0, 0.11)
    >>> ts = thresholds([np.linspace(0.0, 0.9, 10)], [f])
    >>> ts[:2].tolist(), bool((np.diff(ts) < 0).all()), float(ts[-1])
    ([inf, 0.9], True, 0.1)
    """
    kept = [np.asarray(s, dtype=np.float64)[f.scored] for s, f in zip(scores, files, strict=True)]
    rows = np.sort(np.concatenate(kept))[::-1] if kept else np.zeros(0)
    rows = rows[rows > 0]
    top = int(np.ceil(_TOP_SHARE * len(rows)))
    parts = [np.array([np.inf]), rows[:top]]
    if len(rows) > top:
        parts.append(np.quantile(rows[top:], np.linspace(1.0, 0.0, _QUANTILES)))
    out: FloatArray = np.unique(np.concatenate(parts))[::-1]
    return out


@dataclass(slots=True)
class EpisodeSweep:
    """Every candidate threshold's raw total, per file, for one profile."""

    thresholds: FloatArray  # descending, inf first (never fires)
    totals: FloatArray  # (thresholds, files): raw NAB total of each file at each threshold
    fp: npt.NDArray[np.int64]  # (thresholds, files): firing rows outside windows
    tp: npt.NDArray[np.int64]  # (thresholds, files): windows found

    def best(self, files: Sequence[int] | None = None) -> int:
        """Index of the threshold with the best total over `files` (all by default); ties keep
        the highest threshold."""
        cols = slice(None) if files is None else list(files)
        return int(np.argmax(self.totals[:, cols].sum(axis=1)))


def file_total(f: FileRows, fires: npt.NDArray[np.int64], fn: float) -> tuple[float, int, int]:
    """(raw total, false positives, windows found) of one file when rows `fires` fire.

    >>> from detector.eval.nab.scoring import sweep_rows
    >>> f = sweep_rows("a", list(range(40)), [(20, 24)], 1.0, 0.11)
    >>> [round(v, 3) for v in file_total(f, np.array([2, 10, 21]), 1.0)]  # 2 is in probation
    [0.867, 1, 1]
    """
    fires = fires[f.scored[fires]]
    win = f.window[fires]
    outside = win < 0
    total = float(f.weight[fires[outside]].sum())
    counted = np.unique(f.window[f.scored & (f.window >= 0)])
    if not len(counted):
        return total, int(outside.sum()), 0
    best = np.full(int(counted.max()) + 1, -np.inf)
    np.maximum.at(best, win[~outside], f.weight[fires[~outside]])
    hit = np.isfinite(best[counted])
    total += float(best[counted][hit].sum()) - fn * int((~hit).sum())
    return total, int(outside.sum()), int(hit.sum())


def sweep_episodes(profiles: dict[str, tuple[Sequence[FileRows], float]],
                   scores: Sequence[FloatArray], quiet: int) -> dict[str, EpisodeSweep]:
    """One `EpisodeSweep` per profile ({name: (files, fn weight)}): the rule runs once per
    threshold and file, and every profile scores those alarms. All profiles' files must be the
    same files in the same order (they differ only in weights).

    A file's alarms change only at a threshold that admits one of its own scores, so each file
    is re-scored only there: the cost is about the number of candidate thresholds, not that
    times the number of files.
    """
    first = next(iter(profiles.values()))[0]
    taus = thresholds(scores, first)
    n_files = len(first)
    out = {name: EpisodeSweep(thresholds=taus, totals=np.zeros((len(taus), n_files)),
                              fp=np.zeros((len(taus), n_files), dtype=np.int64),
                              tp=np.zeros((len(taus), n_files), dtype=np.int64))
           for name in profiles}
    for i, raw in enumerate(scores):
        s = np.asarray(raw, dtype=np.float64)
        ordered = np.sort(s)
        # crossings[a]: rows of this file at or above threshold a; its alarms change only where
        # that count does, so the rule runs there and the totals hold until the next change.
        crossings = len(s) - np.searchsorted(ordered, taus, side="left")
        change = np.flatnonzero(np.diff(np.concatenate(([-1], crossings))) != 0)
        for name, (files, fn) in profiles.items():
            sw = out[name]
            at = [file_total(files[i], quiet_fires(s, float(taus[a]), quiet), fn) for a in change]
            held = np.searchsorted(change, np.arange(len(taus)), side="right") - 1
            sw.totals[:, i] = np.array([t[0] for t in at])[held]
            sw.fp[:, i] = np.array([t[1] for t in at], dtype=np.int64)[held]
            sw.tp[:, i] = np.array([t[2] for t in at], dtype=np.int64)[held]
    return out
