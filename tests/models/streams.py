"""Synthetic streams and runners shared by the model tests: white noise with a spike or a level
shift, one series fed step by step, and a JSON checkpoint round trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from models import TailCalibrator, surprise

SURPRISE_THRESHOLD = 0.5  # surprise(p) >= 0.5 <=> p <= 1e-5, the pipeline's default


def noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(10.0, 1.0, n)


def with_spike(n: int, seed: int, at: int) -> np.ndarray:
    x = noise(n, seed)
    x[at] += 12.0
    return x


def with_shift(n: int, seed: int, at: int) -> np.ndarray:
    x = noise(n, seed)
    x[at:] += 8.0
    return x


def vector_runner(make: Callable[[], Any], warm: int) -> Callable[[np.ndarray], np.ndarray]:
    """Vector detectors see (value, change) and are calibrated per series, as `vigil eval nab`."""
    def run(x: np.ndarray) -> np.ndarray:
        det, cal = make(), TailCalibrator(min_history=warm)
        out, prev = [], x[0]
        for v in x:
            raw = det.score_learn(np.array([0]), np.array([[v, v - prev]]))
            prev = v
            out.append(float(surprise(cal.calibrate(np.array([0]), np.clip(1.0 - raw, 1e-300, 1)))[0]))
        return np.array(out)
    return run


def roundtrip(make: Callable[[], Any], step: Callable[[Any, int], Any], n: int = 700) -> None:
    """Run `n` steps, restore a fresh instance from the JSON state, and require identical outputs
    for the next 300 steps."""
    a = make()
    for t in range(n):
        step(a, t)
    b = make()
    b.load_state(json.loads(json.dumps(a.state_dict())))  # plain JSON, no pickle
    for t in range(n, n + 300):
        np.testing.assert_allclose(np.asarray(step(a, t)), np.asarray(step(b, t)), rtol=0, atol=0)


def vectors(t: int) -> np.ndarray:
    return np.random.default_rng(t).normal(5.0, 1.0, (3, 2))
