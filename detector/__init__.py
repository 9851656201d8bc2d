"""Vigil's detector (floor 3): sources, decoding, templates, windows, scoring, correlation,
incidents, sinks; the runtimes that run them, the CLI, evaluations and benchmarks. May import
`models` and `remediation`; neither imports it.

What a notebook needs is importable from here, loaded on first use (so `vigil --help` stays
light):

>>> from detector import Pipeline, VigilConfig
>>> out = Pipeline(VigilConfig()).process([b'{"ts": 1795435200, "service": "cart", "msg": "hi"}'])
>>> len(out.events)
1
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "VigilConfig": "detector.config", "load_config": "detector.config",
    "Pipeline": "detector.pipeline", "BatchOutcome": "detector.pipeline",
    "LogEvent": "detector.events", "EventBatch": "detector.events", "Anomaly": "detector.events",
    "Incident": "detector.events",
    "replay": "detector.runtime.replay", "replay_lines": "detector.runtime.replay",
    "simulated_lines": "detector.simulate.runs", "Outputs": "detector.sinks.base",
    "analyze": "detector.analysis", "Analysis": "detector.analysis",
    "nab_report": "detector.eval.nab.report", "NabReport": "detector.eval.nab.report",
    "from_prometheus": "detector.series_analysis", "from_series": "detector.series_analysis",
    "SeriesAnalysis": "detector.series_analysis",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'detector' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
