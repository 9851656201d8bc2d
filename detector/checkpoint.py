"""Checkpoints of a pipeline's state (baselines, templates, services, per-service latency
baselines, open requests and their events, the learned call graph), as plain JSON written
atomically: no pickle, so loading one runs no code.

Open windows are not kept: the consumer commits offsets only after it has flushed what they
produced, and a restored pipeline starts its windows afresh.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from detector.pipeline import Pipeline

VERSION = 1


class CheckpointError(ValueError):
    pass


def pipeline_state(p: Pipeline) -> dict[str, Any]:
    s = p.scorer
    return {
        "version": VERSION,
        "scorer": {
            "series": [[svc, feat, sid] for (svc, feat), sid in s._series.items()],
            "model": s.model.state_dict(),
            "periodic": s.periodic.state_dict() if s.periodic is not None else None,
            "calibrator": s.calibrator.state_dict() if s.calibrator is not None else None,
            "periodic_calibrator": (s.periodic_calibrator.state_dict()
                                    if s.periodic_calibrator is not None else None),
        },
        "templates": p.miner.state_dict(),
        "events": p.stats.events,
        "services": list(p.services.names),
        "flagger": p.flagger.state_dict() if p.flagger is not None else None,
        "correlator": p.correlator.state_dict() if p.correlator is not None else None,
        "call_graph": ([[a, b, n] for (a, b), n in p.ranker.edges.items()]
                       if p.ranker is not None else []),
    }


def restore_pipeline(p: Pipeline, state: dict[str, Any]) -> None:
    """Load `pipeline_state` output into a fresh pipeline built with the same configuration."""
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {state.get('version')!r}, expected {VERSION}")
    sc, s = state["scorer"], p.scorer
    s._series = {(svc, feat): int(sid) for svc, feat, sid in sc["series"]}
    s.model.load_state(sc["model"])
    for name in ("periodic", "calibrator", "periodic_calibrator"):
        part, st = getattr(s, name), sc.get(name)
        if part is not None and st is not None:
            part.load_state(st)
    p.miner.load_state(state["templates"])
    for name in state.get("services", []):  # ids first: the correlator's events refer to them
        p.services.id_of(name)
    if p.flagger is not None and state.get("flagger"):
        p.flagger.load_state(state["flagger"])
    if p.correlator is not None and state.get("correlator"):
        p.correlator.load_state(state["correlator"])
    if p.ranker is not None:
        for a, b, n in state.get("call_graph", []):
            p.ranker.edges[(int(a), int(b))] += int(n)


def save(directory: Path, key: str, state: dict[str, Any]) -> Path:
    """Write `state` to DIRECTORY/KEY.json atomically (temp file, fsync, rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{_safe(key)}.json"
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, separators=(",", ":"), allow_nan=False)  # strict JSON
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(directory: Path, key: str) -> dict[str, Any] | None:
    """The checkpoint for `key`, or None when there is none; a corrupt file raises."""
    path = directory / f"{_safe(key)}.json"
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    return state


def _safe(key: str) -> str:
    """A file name for a key like 'logs/3' (topic names may hold dots, dashes, underscores).

    >>> _safe("app.logs/3")
    'app.logs-p3'
    """
    topic, _, part = key.rpartition("/")
    clean = "".join(c if c.isalnum() or c in "._-" else "_" for c in (topic or key))
    return f"{clean}-p{part}" if topic else clean
