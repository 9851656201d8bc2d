"""Checkpoints of a pipeline's state (baselines, templates, services, per-service latency
baselines, open requests and their events, the learned call graph), as plain JSON written
atomically: no pickle, so loading one runs no code.

Open windows are not kept: the consumer commits offsets only after it has flushed what they
produced, and a restored pipeline starts its windows afresh (the clock guard's view of the stream
is kept).

A checkpoint is input like any other: a tampered or truncated one (wrong types, missing keys,
NaN, arrays past the configured caps, a file past `kafka.checkpoint_max_bytes`) raises
`CheckpointError` naming why, before the pipeline is used, and the caller starts that partition
cold. Files are created 0600 in a 0700 directory: they hold request ids and log templates.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from detector.pipeline import Pipeline

VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; `kind` says which way (for a metric's label)."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind  # unreadable | too_large | version | invalid


def pipeline_state(p: Pipeline) -> dict[str, Any]:
    """Each component's own state (plain data), under one version."""
    return {
        "version": VERSION,
        "scorer": p.scorer.state_dict(),
        "templates": p.miner.state_dict(),
        "windows": p.windows.state_dict(),
        "events": p.stats.events,
        "services": p.services.state_dict(),
        "flagger": p.flagger.state_dict() if p.flagger is not None else None,
        "correlator": p.correlator.state_dict() if p.correlator is not None else None,
        "call_graph": p.ranker.state_dict() if p.ranker is not None else [],
    }


def restore_pipeline(p: Pipeline, state: dict[str, Any]) -> None:
    """Load `pipeline_state` output into a fresh pipeline built with the same configuration.

    Raises `CheckpointError` for any state it cannot trust; `p` is then half-loaded and must be
    thrown away (the consumer builds a new, cold one).
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"a checkpoint is an object, not {type(state).__name__}")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {state.get('version')!r}, expected {VERSION}",
                              "version")
    try:
        _check_sizes(p, state)
        _restore(p, state)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc


def _check_sizes(p: Pipeline, state: dict[str, Any]) -> None:
    """Refuse parts larger than the configuration allows, before any is loaded."""
    from detector.windows.aggregate import FEATURES

    cfg = p.cfg
    limits = {
        "scorer series": (len(state["scorer"]["series"]), cfg.window.max_services * len(FEATURES)),
        "templates": (len(state["templates"]["templates"]), cfg.templates.max_templates),
        "services": (len(state.get("services", [])), cfg.window.max_services),
        "call graph edges": (len(state.get("call_graph", [])), cfg.window.max_services ** 2),
    }
    for what, (n, cap) in limits.items():
        if n > cap:
            raise CheckpointError(f"{n} {what}, more than the configuration allows ({cap})")


def _restore(p: Pipeline, state: dict[str, Any]) -> None:
    events = state.get("events", 0)
    if not isinstance(events, int) or events < 0:
        raise CheckpointError(f"events learned {events!r} is not a count")
    p.scorer.load_state(state["scorer"])  # refuses another scoring configuration's state
    p.miner.load_state(state["templates"])
    p.services.load_state(state.get("services") or [])  # first: the rest refer to its ids
    if p.flagger is not None and state.get("flagger"):
        p.flagger.load_state(state["flagger"])
    if p.correlator is not None and state.get("correlator"):
        p.correlator.load_state(state["correlator"])
    if p.ranker is not None:
        p.ranker.load_state(state.get("call_graph") or [])
    elif not isinstance(state.get("call_graph") or [], list):
        raise CheckpointError("call_graph is not a list")
    if state.get("windows"):
        p.windows.load_state(state["windows"])


def save(directory: Path, key: str, state: dict[str, Any]) -> Path:
    """Write `state` to DIRECTORY/KEY.json atomically (temp file, fsync, rename), mode 0600."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
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


def load(directory: Path, key: str, max_bytes: int = 256 << 20) -> dict[str, Any] | None:
    """The checkpoint for `key`, or None when there is none; an unusable file raises
    `CheckpointError` (past `max_bytes`, not strict JSON, not an object)."""
    path = directory / f"{_safe(key)}.json"
    if not path.is_file():
        return None
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CheckpointError(f"{path}: {size} bytes, over the cap of {max_bytes} "
                                  "(kafka.checkpoint_max_bytes)", "too_large")
        state = json.loads(path.read_bytes(), parse_constant=_refuse_constant,
                           parse_float=_finite_float)
    except CheckpointError:
        raise
    except (OSError, ValueError, RecursionError) as exc:  # JSON, UTF-8, nesting, NaN
        raise CheckpointError(f"{path}: {type(exc).__name__}: {str(exc)[:300]}",
                              "unreadable") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds {type(state).__name__}, not an object", "unreadable")
    return state


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a checkpoint can hold")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text[:40]} is not finite")
    return v


def _safe(key: str) -> str:
    """A file name for a key like 'logs/3' (topic names may hold dots, dashes, underscores).

    >>> _safe("app.logs/3")
    'app.logs-p3'
    """
    topic, _, part = key.rpartition("/")
    clean = "".join(c if c.isalnum() or c in "._-" else "_" for c in (topic or key))
    return f"{clean}-p{part}" if topic else clean
