"""`vigil demo`: the live loop on a local fleet of real services (detector/runtime/demo.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detector.cli.common import choose, err, out


def demo_cmd(
    scenario: Annotated[str, typer.Option(help="bad_deploy (→ rollback), overload (→ throttle), "
                                          "crash_loop (→ restart, restart-loop protection "
                                          "escalates) or none (fault-free: nothing should "
                                          "happen)")] = "bad_deploy",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="decide and audit, but act on "
                                          "nothing")] = False,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="run directory (replaced): "
                                          "fleet logs, incidents, audit, summary.json")
                       ] = Path("demo"),
    warmup: Annotated[float, typer.Option(min=5, help="seconds of healthy traffic before the "
                                          "fault")] = 30.0,
    timeout: Annotated[float, typer.Option(min=5, help="seconds after the fault before the "
                                           "story is cut short")] = 75.0,
    duration: Annotated[float | None, typer.Option(min=1, help="with --scenario none: seconds "
                                                   "to run after the warm-up")] = None,
    rps: Annotated[float, typer.Option(min=1, max=500, help="requests per second of load")] = 40.0,
    seed: Annotated[int, typer.Option(help="random seed of the fleet")] = 0,
) -> None:
    """Start a fleet of real local HTTP services under load, follow their logs with Vigil, inject
    a fault and watch Vigil detect it, name the root cause, act through the policy, verify the
    recovery from its own signal and print the story; then stop everything. Exit 1 when a fault
    went undetected."""
    from detector.runtime.demo import run_demo
    from detector.runtime.demo_scenarios import SCENARIOS
    from detector.simulate.live.control import FleetControlError, FleetStartError

    choose("scenario", scenario, list(SCENARIOS))
    try:
        summary = run_demo(out_dir, scenario, dry_run=dry_run, warmup_s=warmup,
                           timeout_s=timeout, duration_s=duration, rps=rps, seed=seed,
                           say=lambda s: out.print(s, markup=False, highlight=False))
    except (FleetStartError, FleetControlError, OSError) as exc:
        err.print(f"error: the demo could not run: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    if summary["fault_service"] is not None and summary["fault_to_incident_s"] is None:
        raise typer.Exit(1)
