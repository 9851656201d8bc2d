"""`vigil consume --role partitions --policy`: the incident records of the partition pipelines,
once their outputs are flushed, go as triggers to an in-process remediation engine
(`EngineHost`).

The poll loop never waits for a ladder: each trigger is submitted and the loop moves on; the
futures are kept to log and count what failed. The guarantee is the process's: a trigger
handed to the engine but not yet claimed is lost if the process dies, and comes again only if
the detector emits the incident again (a later revision, or the at-least-once re-processing of
an uncommitted batch). `--triggers-topic` with `vigil remediate` is the at-least-once path.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

from detector.incidents.triggers import incident_trigger
from detector.runtime.engine_host import EngineHost

log = logging.getLogger("vigil.consume")


class EngineFeed:
    """Called with a batch's incident records (`Incident.to_dict()`); `failed` counts triggers
    the engine raised on (or that could not be made from their record)."""

    def __init__(self, host: EngineHost) -> None:
        self.host = host
        self.submitted = 0
        self.failed = 0
        self._futures: set[concurrent.futures.Future[None]] = set()

    def __call__(self, records: list[dict[str, Any]]) -> None:
        for rec in records:
            try:
                trigger = incident_trigger(rec)
            except (KeyError, TypeError, ValueError) as exc:
                self.failed += 1
                log.error("incident %s has no trigger (%s: %s)", rec.get("id"), type(exc).__name__,
                          exc)
                continue
            fut = self.host.submit(trigger)
            self.submitted += 1
            self._futures.add(fut)
            fut.add_done_callback(self._done)

    def _done(self, fut: concurrent.futures.Future[None]) -> None:
        self._futures.discard(fut)
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:
            self.failed += 1
            log.error("the engine failed on a trigger: %s: %s", type(exc).__name__, exc)

    @property
    def in_flight(self) -> int:
        """Triggers whose decisions are not all audited yet."""
        return len(self._futures)

    def close(self, timeout_s: float | None = None) -> None:
        """Wait (bounded) for the started ladders, then stop the engine."""
        self.host.stop(timeout_s)
