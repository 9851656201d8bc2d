"""Third-party hooks load from the `vigil.hooks` entry points."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

from remediation.hooks.base import HookRegistry
from remediation.policy import parse_policy
from remediation.trigger import Trigger


# ---- third-party hooks --------------------------------------------------------------------------
def test_third_party_hooks_load_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    (tmp_path / "acme_hooks.py").write_text(textwrap.dedent("""
        from remediation.actions import Outcome

        class PagerHook:
            name = "acme-pager"
            def validate(self, params):
                return params
            def run(self, action, trigger):  # synchronous: the engine runs it in a thread
                return Outcome(True, "paged acme")

        broken = 42
    """))
    dist = tmp_path / "acme_hooks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hooks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[vigil.remediation_hooks]\nacme = acme_hooks:PagerHook\nbad = acme_hooks:broken\n"
        "missing = acme_hooks:Nope\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("acme_hooks", None)
    reg = HookRegistry()
    assert "acme-pager" in reg.hooks and {"http", "command", "kubernetes", "log"} <= set(reg.hooks)
    assert any("not a Hook" in e for e in reg.errors) and any("failed to load" in e for e in reg.errors)

    from remediation.audit import AuditStore
    from remediation.engine import Engine, EngineSettings

    policy = parse_policy("rules: [{name: r, ladder: [{name: p, hook: acme-pager, wait_s: 0, "
                          "success: {resolved: false}}]}]", hooks=reg)
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy, store, hooks=reg, settings=EngineSettings(dry_run=False))
        e.submit(Trigger("manual", "f", "firing", 0.0, labels={"service": "x"}))
        await e.drain()
    asyncio.run(go())
    assert [(r.verdict, r.detail) for r in store.query()][:2] == [("acted", "paged acme"),
                                                                  ("verified", "no verification configured")]
