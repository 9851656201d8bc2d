"""Runs a remediation `Engine` on its own thread and event loop, for the detector's synchronous
runtimes (`vigil follow --policy`, `vigil consume --policy` in either mode, `vigil remediate`,
`vigil demo`):
they hand it triggers and may wait for what each one started to finish (its audit rows written).

It owns nothing the engine does not: the policy, guards, claims and audit are the engine's, so
an incident goes through exactly what an Alertmanager alert goes through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from pathlib import Path
from typing import Any

from remediation.audit_log import open_audit
from remediation.engine import Engine
from remediation.engine_settings import EngineSettings
from remediation.hooks.base import HookRegistry
from remediation.policy import Policy
from remediation.trigger import Trigger


class EngineHost:
    """`start()`, then `submit(trigger)` from any thread; `stop()` finishes what was started.

    >>> import tempfile
    >>> from remediation.policy import parse_policy
    >>> pol = parse_policy("rules: [{name: r, ladder: [{name: note, hook: log, wait_s: 0}]}]")
    >>> host = EngineHost(pol, Path(tempfile.mkdtemp()) / "audit.db").start()
    >>> host.submit(Trigger("manual", "f", "firing", 1.0, labels={"service": "cart"})).result(5)
    >>> [r.verdict for r in host.store.query()]
    ['dry_run', 'not_better', 'escalated']
    >>> host.stop()
    """

    def __init__(self, policy: Policy, audit_db: Path | str,
                 settings: EngineSettings | None = None, hooks: HookRegistry | None = None
                 ) -> None:
        self.policy = policy
        self.settings = settings or EngineSettings()
        self.store = open_audit(audit_db)  # a SQLite file, or a postgresql:// DSN
        self._hooks = hooks
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vigil-engine",
                                        daemon=True)
        self.engine: Engine | None = None

    def start(self) -> EngineHost:
        """Start the loop and the engine; the engine resolves steps an earlier run left claimed."""
        self._thread.start()
        self._call(self._make()).result()
        return self

    async def _make(self) -> None:
        self.engine = Engine(self.policy, self.store, self._hooks, self.settings)
        self.engine.resume_interrupted()

    def submit(self, trigger: Trigger) -> concurrent.futures.Future[None]:
        """Hand a trigger to the engine; the future is done when everything it started has
        finished (its ladders, or the row of a resolution or suppression)."""
        assert self.engine is not None, "start() first"
        return self._call(self.engine.process(trigger))

    def _call(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def stop(self, timeout_s: float | None = None) -> None:
        """Wait (up to `timeout_s`) for started ladders to finish, then stop; a ladder still
        running is left claimed, and the next engine on this audit resolves it."""
        if self._thread.is_alive():
            if self.engine is not None:
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    self._call(self.engine.drain()).result(timeout_s)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()
        self.store.close()
