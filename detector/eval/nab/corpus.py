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
