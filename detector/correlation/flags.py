"""Marks single events anomalous, for correlation: errors, new or rare templates, and latencies far
above their service's usual, as a bitmask per event."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from detector.config import CorrelationConfig
from detector.events import LEVEL_ERROR, EventBatch
from detector.templates.miner import MinedBatch

ERROR = 1  # level ERROR or above, or status >= 500
SLOW = 2  # latency far above the service's baseline
NEW_TEMPLATE = 4  # a template first seen in this event's window
RARE_TEMPLATE = 8  # a template seen fewer than templates.rare_count times before
KIND_NAMES = {ERROR: "error", SLOW: "latency", NEW_TEMPLATE: "new_template",
              RARE_TEMPLATE: "rare_template"}

FlagArray = npt.NDArray[np.uint8]


def kinds(flags: int) -> list[str]:
    """Names of the bits set in `flags`.

    >>> kinds(ERROR | SLOW)
    ['error', 'latency']
    """
    return [name for bit, name in KIND_NAMES.items() if flags & bit]


class EventFlagger:
    """Per-service baselines of log latency (EWMA mean and variance, learned a batch at a time)
    and event counts, and the flags of each event judged before its batch is learned.

    Template flags wait until a service has `warmup_events` events (at start every template is
    rare); so do latency flags, which also need the latency above `latency_factor` times the
    service's typical (geometric mean) latency, so a service with very steady latencies does not
    flag a 10% wobble.
    """

    def __init__(self, cfg: CorrelationConfig, alpha: float = 0.01) -> None:
        self.cfg = cfg
        self.alpha = alpha
        self._mean = np.zeros(0)  # of log latency
        self._var = np.zeros(0)
        self._lat_n = np.zeros(0, dtype=np.int64)
        self._events = np.zeros(0, dtype=np.int64)

    def flag(self, batch: EventBatch, mined: MinedBatch | None, services: npt.NDArray[np.int32],
             chunk: int = 4096) -> FlagArray:
        """Flags of a batch's events; baselines learn after every `chunk` events, so a large
        batch (a file replay) is judged against its own earlier events too."""
        n = len(batch)
        flags = np.zeros(n, dtype=np.uint8)
        if n == 0:
            return flags
        top = int(services.max()) + 1
        if top > len(self._mean):
            grow = top - len(self._mean)
            self._mean = np.concatenate([self._mean, np.zeros(grow)])
            self._var = np.concatenate([self._var, np.zeros(grow)])
            self._lat_n = np.concatenate([self._lat_n, np.zeros(grow, dtype=np.int64)])
            self._events = np.concatenate([self._events, np.zeros(grow, dtype=np.int64)])
        flags[(batch.level >= LEVEL_ERROR) | (batch.status >= 500)] |= ERROR
        lat = batch.latency_ms
        has_mined = mined is not None and len(mined.is_new) == n
        # Template flags are relative to counts before the batch: trust them only for services
        # warm before it (in a service's first batch every template is "rare").
        warm_before = self._events.copy()
        for lo in range(0, n, chunk):
            sl = slice(lo, min(lo + chunk, n))
            svc_raw = services[sl]
            known = svc_raw >= 0
            svc = np.where(known, svc_raw, 0)
            warm = known & (self._events[svc] >= self.cfg.warmup_events)
            f = flags[sl]
            if has_mined:
                assert mined is not None
                tw = known & (warm_before[svc] >= self.cfg.warmup_events)
                f[tw & mined.is_new[sl]] |= NEW_TEMPLATE
                f[tw & mined.is_rare[sl] & ~mined.is_new[sl]] |= RARE_TEMPLATE
            has = known & np.isfinite(lat[sl]) & (lat[sl] > 0)
            loglat = np.log(np.where(has, lat[sl], 1.0))
            ready = has & (self._lat_n[svc] >= 100) & warm
            rise = loglat - self._mean[svc]
            z = rise / np.sqrt(np.maximum(self._var[svc], 1e-12))
            f[ready & (z > self.cfg.latency_z) & (rise > np.log(self.cfg.latency_factor))] |= SLOW
            self._learn(svc[known], loglat[known], has[known])
        return flags

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self._mean.tolist(), "var": self._var.tolist(),
                "lat_n": self._lat_n.tolist(), "events": self._events.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Load `state_dict` output; arrays of unequal length, non-finite or negative values
        raise ValueError before anything is replaced."""
        mean = np.asarray(state["mean"], dtype=np.float64)
        var = np.asarray(state["var"], dtype=np.float64)
        lat_n = np.asarray(state["lat_n"], dtype=np.int64)
        events = np.asarray(state["events"], dtype=np.int64)
        if not (mean.ndim == 1 and mean.shape == var.shape == lat_n.shape == events.shape):
            raise ValueError("flagger arrays are not one-dimensional of one length")
        if not (np.isfinite(mean).all() and np.isfinite(var).all()) or (var < 0).any() \
                or (lat_n < 0).any() or (events < 0).any():
            raise ValueError("flagger baselines hold non-finite or negative values")
        self._mean, self._var, self._lat_n, self._events = mean, var, lat_n, events

    def _learn(self, svc: npt.NDArray[np.int32], loglat: npt.NDArray[np.float64],
               has: npt.NDArray[np.bool_]) -> None:
        size = len(self._mean)
        self._events += np.bincount(svc, minlength=size)
        s, v = svc[has], loglat[has]
        if not len(s):
            return
        cnt = np.bincount(s, minlength=size)
        tot = np.bincount(s, weights=v, minlength=size)
        sq = np.bincount(s, weights=v * v, minlength=size)
        seen = cnt > 0
        bmean = np.where(seen, tot / np.maximum(cnt, 1), 0.0)
        bvar = np.where(seen, sq / np.maximum(cnt, 1) - bmean * bmean, 0.0)
        n0 = self._lat_n
        # The batch counts as cnt observations of weight alpha each (capped at half the weight),
        # a plain running mean while a service is young.
        w = np.where(n0 + cnt > 0, np.minimum(np.maximum(1 - (1 - self.alpha) ** cnt,
                                                         cnt / np.maximum(n0 + cnt, 1)), 1.0), 0.0)
        w = np.where(seen, w, 0.0)
        delta = bmean - self._mean
        new_mean = self._mean + w * delta
        new_var = (1 - w) * (self._var + w * delta * delta) + w * np.maximum(bvar, 0.0)
        self._mean = np.where(seen, new_mean, self._mean)
        self._var = np.where(seen, new_var, self._var)
        self._lat_n = n0 + cnt
