"""Reads a NAB corpus: `data/<corpus>/<file>.csv` (timestamp,value) and the windows JSON."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson


class CorpusError(ValueError):
    """The data directory or the labels file is not what NAB's layout says."""


@dataclass(slots=True)
class Series:
    name: str  # "<corpus>/<file>.csv", as in the labels file
    timestamps: list[datetime]
    raw_timestamps: list[str]
    values: npt.NDArray[np.float64]
    windows: list[tuple[datetime, datetime]]

    @property
    def corpus(self) -> str:
        return self.name.split("/", 1)[0]


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.strip())


def load_corpus(data_dir: Path | str, labels: Path | str) -> list[Series]:
    """Every labelled file under `data_dir`, sorted by name, with its anomaly windows."""
    data = Path(data_dir)
    try:
        windows = orjson.loads(Path(labels).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CorpusError(f"cannot read the windows file {labels}: {exc}") from exc
    if not isinstance(windows, dict):
        raise CorpusError(f"{labels} must map '<corpus>/<file>.csv' to lists of windows")
    out = []
    for name in sorted(windows):
        path = data / name
        if not path.is_file():
            continue  # a held-back corpus: labelled, but not here
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows or [c.strip() for c in rows[0][:2]] != ["timestamp", "value"]:
            raise CorpusError(f"{path} must start with the header 'timestamp,value'")
        body = rows[1:]
        raw_ts = [r[0] for r in body]
        out.append(Series(
            name=name,
            timestamps=[_parse(t) for t in raw_ts],
            raw_timestamps=raw_ts,
            values=np.array([float(r[1]) for r in body], dtype=np.float64),
            windows=[(_parse(a), _parse(b)) for a, b in windows[name]],
        ))
    if not out:
        raise CorpusError(f"no labelled file of {labels} exists under {data}")
    return out


_EXAMPLE_ROWS = 500  # 5-minute samples: 41 h 40 min per file, 75 rows of probation
_EXAMPLE = {  # file: (what happens, at which rows, the labelled window's rows)
    "alpha/spike.csv": ("spike", 350, (340, 365)),
    "alpha/flat.csv": ("blip", 200, None),  # no anomaly labelled: an alarm there is false
    "beta/step.csv": ("step", 300, (290, 315)),
    "beta/subtle.csv": ("nudge", 320, (310, 335)),
}


def write_example(root: Path | str) -> tuple[Path, Path]:
    """Write a tiny NAB-format corpus under `root` and return (data directory, windows file):
    two corpora of two 500-row files each (noise around 10, seeded): `alpha/spike.csv` (a spike
    to 60, labelled), `alpha/flat.csv` (no window, but a blip to 40 at row 200: what alarms
    there is a false positive), `beta/step.csv` (a lasting step to 25, labelled) and
    `beta/subtle.csv` (a nudge to 11.5, labelled, hard to see). For examples and tests that
    need no shared data.

    >>> import tempfile
    >>> data, labels = write_example(tempfile.mkdtemp())
    >>> [(s.name, len(s.values), len(s.windows)) for s in load_corpus(data, labels)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('alpha/flat.csv', 500, 0), ('alpha/spike.csv', 500, 1), ('beta/step.csv', 500, 1),
     ('beta/subtle.csv', 500, 1)]
    """
    from datetime import timedelta

    root = Path(root)
    rng = np.random.default_rng(19)
    start = datetime(2020, 1, 1)
    stamps = [start + timedelta(minutes=5 * i) for i in range(_EXAMPLE_ROWS)]
    windows: dict[str, list[list[str]]] = {}
    for name, (kind, at, window) in _EXAMPLE.items():
        values = rng.normal(10.0, 1.0, _EXAMPLE_ROWS)
        if kind == "step":
            values[at:] += 15.0
        else:
            values[at:at + 3] = {"spike": 60.0, "blip": 40.0, "nudge": 11.5}[kind]
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("timestamp,value\n" + "".join(
            f"{t:%Y-%m-%d %H:%M:%S},{v:.3f}\n" for t, v in zip(stamps, values, strict=True)))
        windows[name] = [] if window is None else [
            [f"{stamps[row]:%Y-%m-%d %H:%M:%S}.000000" for row in window]]
    labels = root / "labels" / "combined_windows.json"
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_bytes(orjson.dumps(windows, option=orjson.OPT_INDENT_2))
    return root / "data", labels
