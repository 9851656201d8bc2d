"""`nab_report`: the NAB evaluation `vigil eval nab` prints, as polars tables a notebook can sort,
filter and plot.

It is the command's own path, not a second scorer: the command calls it, then writes the results
files and prints its tables. The corpus is read by `load_corpus`, scored online by `run.detect`,
the threshold swept under the episode rule and scored by NAB's rules in `run.evaluate` (each
profile's best threshold, each corpus held out); the report keeps what those produced, file by
file, and the alarms the episode rule lets through at the chosen profile's threshold (the
`alarm` column of the results files: what Vigil would have paged), each marked a hit (inside
which window), a false positive, or neither (a later alarm in a window already hit, or one in
the probationary period).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.eval.nab import DEFAULT_DETECTOR
from detector.eval.nab.corpus import Series, load_corpus
from detector.eval.nab.run import ProfileResult, detect, evaluate
from detector.eval.nab.scoring import PROFILES, FileRows, sweep_rows
from models.default import QUIET
from models.episode import quiet_fires

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.float64]

HIT = "hit"  # the first alarm in a window: the one NAB scores
IN_WINDOW = "in window"  # a later alarm in a window already hit: neither earns nor costs
FALSE_POSITIVE = "false positive"  # an alarm outside every window
PROBATION = "probation"  # an alarm in the first 15% of the file, which NAB does not score


@dataclass
class NabReport:
    """One NAB evaluation, every table a polars DataFrame (`to_pandas()` for pandas).

    - `profiles`: per NAB profile, what `vigil eval nab` prints first: normalised score, chosen
      threshold, windows found of those scored, false positives, and the held-out mean.
    - `corpora`: per corpus: files, rows, labelled windows, hits, misses and false positives
      (at the `profile`'s threshold), and per profile its score at that profile's threshold
      (column named by the profile) and held out (`<profile>_held_out`: at the threshold
      chosen on the other corpora). For a corpus without windows the score column holds its
      raw false-positive cost (0 is best) and the held-out one is null, as the command prints.
    - `files`: per file: corpus, file, rows, labelled windows, hits, misses, false positives,
      and per profile the points of that profile's score the file accounts for
      (`<profile>_points`; they sum to the profile's score: a file that finds its windows
      early adds, a missed window or a false positive takes away).
    - `windows`: per labelled window: its first row and timestamps, its rows, status (hit,
      missed, or not scored when it lies in the probationary period), the first alarm in it
      and what that earned.
    - `detections`: every alarm at the `profile`'s threshold: file, row, timestamp, value,
      score, kind (`hit`, `in window`: a later alarm in a window already hit, `false
      positive`, `probation`: not scored), the window it fell in and its NAB weight.

    `results` are `run.evaluate`'s own results, `series` and `scores` the corpus and the
    detector's scores (what the results files hold).
    """

    detector: str
    quiet: int  # the episode rule's quiet rows (0: every crossing fires)
    rest: int  # > 0: the older beat-the-last-REST rule instead
    profile: str  # whose threshold chose the alarms
    results: list[ProfileResult]
    series: list[Series]
    scores: list[FloatArray]
    profiles: pl.DataFrame
    corpora: pl.DataFrame
    files: pl.DataFrame
    windows: pl.DataFrame
    detections: pl.DataFrame
    seconds: float = 0.0  # detection and scoring
    tables: ClassVar[tuple[str, ...]] = ("profiles", "corpora", "files", "windows", "detections")

    @property
    def threshold(self) -> float:
        """The threshold of `profile`, at which `detections` fire."""
        return self.result(self.profile).threshold

    @property
    def rule(self) -> str:
        """The alarm rule in words, as the command's title says it."""
        return f"beat the last {self.rest}" if self.rest else f"quiet {self.quiet} rows after an alarm"

    def result(self, profile: str) -> ProfileResult:
        """`run.evaluate`'s result of one profile."""
        for r in self.results:
            if r.profile == profile:
                return r
        raise ValueError(f"no profile {profile!r}; the profiles are {', '.join(PROFILES)}")

    def find(self, file: str) -> Series:
        """The series of a file, by its name in the labels (`corpus/file.csv`) or by its file
        name alone (with or without `.csv`) where that is unique."""
        want = file if file.endswith(".csv") else f"{file}.csv"
        found = [s for s in self.series if want in (s.name, s.name.split("/", 1)[-1])]
        if len(found) != 1:
            some = ", ".join(s.name for s in self.series[:3])
            raise ValueError(f"{'no' if not found else 'more than one'} file {file!r} in the "
                             f"report (its files are named like {some})")
        return found[0]

    def to_pandas(self) -> dict[str, object]:
        """Every table as a pandas DataFrame, by name (needs pandas and pyarrow installed)."""
        return {name: getattr(self, name).to_pandas() for name in self.tables}

    def plot_file(self, file: str) -> Figure:
        """One file's signal, windows, alarms and scores (`detector.eval.nab.plots.plot_nab_file`)."""
        from detector.eval.nab.plots import plot_nab_file
        return plot_nab_file(self, file)

    def plot_corpora(self) -> Figure:
        """Hits, misses, false positives and scores per corpus
        (`detector.eval.nab.plots.plot_nab_corpora`)."""
        from detector.eval.nab.plots import plot_nab_corpora
        return plot_nab_corpora(self)

    def __repr__(self) -> str:
        r = self.result(self.profile)
        return (f"NabReport({self.detector!r}, {self.rule}: {len(self.series)} files in "
                f"{len(self.corpora)} corpora; {self.profile} {r.score:.1f}, {r.tp}/{r.tp + r.fn} "
                f"windows, {r.fp} false positives; held out {r.held_out_mean:.1f})")


def nab_report(data_dir: Path | str, labels: Path | str, detector: str = DEFAULT_DETECTOR,
               quiet: int = QUIET, rest: int = 0, profile: str = "standard") -> NabReport:
    """Run `detector` over the NAB corpus under `data_dir` (`<corpus>/<file>.csv`, labelled by
    the windows file `labels`) and score it as `vigil eval nab` does (the command calls this).

    `quiet` is the episode rule's quiet period in rows; `rest` > 0 uses the older
    beat-the-last-REST rule instead (and every crossing it lets through fires). The alarms of
    `detections`, and the hits, misses and false positives of the tables, are those at
    `profile`'s threshold (the standard one's: what the results files mark as alarms).

    >>> import tempfile
    >>> from detector.eval.nab.corpus import write_example
    >>> r = nab_report(*write_example(tempfile.mkdtemp()))
    >>> r.files.select("file", "windows", "hits", "misses", "false_positives").rows()
    ... # doctest: +NORMALIZE_WHITESPACE
    [('flat.csv', 0, 0, 0, 1), ('spike.csv', 1, 1, 0, 0), ('step.csv', 1, 1, 0, 0),
     ('subtle.csv', 1, 0, 1, 0)]
    >>> r.detections.select("file", "row", "kind", "window").rows()
    [('flat.csv', 200, 'false positive', None), ('spike.csv', 350, 'hit', 0), ('step.csv', 300, 'hit', 0)]
    >>> round(r.files["standard_points"].sum(), 6) == round(r.result("standard").score, 6)
    True
    """
    if profile not in PROFILES:
        raise ValueError(f"no profile {profile!r}; the profiles are {', '.join(PROFILES)}")
    series = load_corpus(data_dir, labels)
    start = time.perf_counter()
    scores = detect(series, detector, rest=rest)
    quiet = 0 if rest else quiet
    results = evaluate(series, scores, quiet=quiet)
    seconds = time.perf_counter() - start
    return build_report(series, scores, results, detector=detector, quiet=quiet, rest=rest,
                        profile=profile, seconds=seconds)


def build_report(series: list[Series], scores: list[FloatArray], results: list[ProfileResult],
                 detector: str = DEFAULT_DETECTOR, quiet: int = QUIET, rest: int = 0,
                 profile: str = "standard", seconds: float = 0.0) -> NabReport:
    """The tables of a report from what `run.detect` and `run.evaluate` returned (with `quiet`
    the rule `evaluate` ran with)."""
    by_profile = {r.profile: r for r in results}
    chosen = by_profile[profile]
    tp, fp, _fn = PROFILES[profile]
    rows = [sweep_rows(s.name, s.timestamps, s.windows, tp, fp) for s in series]
    detections, windows = _alarms(series, scores, rows, chosen.threshold, quiet)
    files = _files(series, results, chosen)
    return NabReport(
        detector=detector, quiet=quiet, rest=rest, profile=profile, results=results,
        series=series, scores=scores, profiles=_profiles(results), corpora=_corpora(files, results),
        files=files, windows=windows, detections=detections, seconds=seconds)


def _profiles(results: Sequence[ProfileResult]) -> pl.DataFrame:
    return pl.DataFrame({
        "profile": [r.profile for r in results],
        "score": [r.score for r in results],
        "threshold": [r.threshold for r in results],
        "windows_found": [r.tp for r in results],
        "windows": [r.tp + r.fn for r in results],
        "false_positives": [r.fp for r in results],
        "held_out_mean": [r.held_out_mean for r in results],
    })


def _files(series: Sequence[Series], results: Sequence[ProfileResult],
           chosen: ProfileResult) -> pl.DataFrame:
    """One row per file; `<profile>_points` is the file's share of the normalised score:
    100 (raw + fn * windows) / (perfect - null) over the whole corpus's scale."""
    cols: dict[str, list[object]] = {
        "corpus": [s.corpus for s in series],
        "file": [s.name.split("/", 1)[-1] for s in series],
        "rows": [len(s.values) for s in series],
        "windows": [len(s.windows) for s in series],
        "hits": [chosen.files[s.name].found for s in series],
        "misses": [chosen.files[s.name].windows - chosen.files[s.name].found for s in series],
        "false_positives": [chosen.files[s.name].fp for s in series],
    }
    for r in results:
        tp, _fp, fn = PROFILES[r.profile]
        scored = sum(f.windows for f in r.files.values())
        span = scored * (tp + fn)
        cols[f"{r.profile}_points"] = [
            100.0 * (r.files[s.name].raw + fn * r.files[s.name].windows) / span if span else 0.0
            for s in series]
    return pl.DataFrame(cols, schema_overrides={"rows": pl.Int64, "windows": pl.Int64})


def _corpora(files: pl.DataFrame, results: Sequence[ProfileResult]) -> pl.DataFrame:
    counts = files.group_by("corpus", maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("files"), pl.col("rows").sum(), pl.col("windows").sum(),
        pl.col("hits").sum(), pl.col("misses").sum(), pl.col("false_positives").sum(),
    ).sort("corpus")
    names = counts["corpus"].to_list()
    scores: dict[str, pl.Series] = {}
    for r in results:
        scores[r.profile] = pl.Series([r.by_corpus[c] for c in names], dtype=pl.Float64)
        scores[f"{r.profile}_held_out"] = pl.Series([r.held_out.get(c) for c in names],
                                                    dtype=pl.Float64)
    return counts.with_columns(**scores)


_DETECTIONS = pl.Schema({
    "corpus": pl.String(), "file": pl.String(), "row": pl.Int64(), "timestamp": pl.Datetime("us"),
    "value": pl.Float64(), "score": pl.Float64(), "kind": pl.String(), "window": pl.Int64(),
    "weight": pl.Float64()})
_WINDOWS = pl.Schema({
    "corpus": pl.String(), "file": pl.String(), "window": pl.Int64(), "start_row": pl.Int64(),
    "start": pl.Datetime("us"), "end": pl.Datetime("us"), "rows": pl.Int64(), "status": pl.String(),
    "first_alarm": pl.Datetime("us"), "weight": pl.Float64()})


def _alarms(series: Sequence[Series], scores: Sequence[FloatArray], rows: Sequence[FileRows],
            threshold: float, quiet: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The detections and windows tables: the rows `quiet_fires` lets through at `threshold`
    (what the results files mark as alarms), judged on the rows NAB scores as `file_total`
    judges them (an alarm in probation does not count; in a window, the first one does)."""
    det: list[dict[str, object]] = []
    win: list[dict[str, object]] = []
    for s, sc, f in zip(series, scores, rows, strict=True):
        file = s.name.split("/", 1)[-1]
        first: dict[int, int] = {}  # window -> the row of its first scored alarm
        for row in quiet_fires(sc, threshold, quiet).tolist():
            w = int(f.window[row])
            if not f.scored[row]:
                kind, weight = PROBATION, 0.0
            elif w < 0:
                kind, weight = FALSE_POSITIVE, float(f.weight[row])
            elif w in first:
                kind, weight = IN_WINDOW, 0.0
            else:
                first[w] = row
                kind, weight = HIT, float(f.weight[row])
            det.append({"corpus": s.corpus, "file": file, "row": row,
                        "timestamp": s.timestamps[row], "value": float(s.values[row]),
                        "score": float(sc[row]), "kind": kind, "window": w if w >= 0 else None,
                        "weight": weight})
        for w in range(int(f.window.max()) + 1 if len(f.window) else 0):
            inside = np.flatnonzero(f.window == w)
            hit = first.get(w)
            status = ("not scored" if not f.scored[inside].any() else
                      "missed" if hit is None else HIT)
            win.append({"corpus": s.corpus, "file": file, "window": w,
                        "start_row": int(inside[0]), "start": s.timestamps[int(inside[0])],
                        "end": s.timestamps[int(inside[-1])], "rows": len(inside),
                        "status": status,
                        "first_alarm": None if hit is None else s.timestamps[hit],
                        "weight": None if hit is None else float(f.weight[hit])})
    return pl.DataFrame(det, schema=_DETECTIONS), pl.DataFrame(win, schema=_WINDOWS)
