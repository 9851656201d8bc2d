"""Speed work must not change what Vigil finds: every simulator scenario, through the pipeline as
`vigil replay` runs it, gives the events, dead letters, anomalies, request verdicts and incidents
(with their root causes) pinned in `data/pinned_outcomes.json`.

The pins were written by the code before the columnar verdicts and the numpy timestamp path
(commit 9e09029). A change that means to alter detection rewrites them, and says why:
`python -m tests.detector.test_pinned_outcomes --write`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from detector.config import VigilConfig
from detector.pipeline import BatchOutcome, Pipeline
from detector.runtime.ahead import DecodeAhead
from detector.simulate.runs import simulated_lines
from detector.simulate.scenarios import SCENARIOS

PINS = Path(__file__).parent / "data" / "pinned_outcomes.json"


def outcomes(scenario: str) -> dict[str, Any]:
    """What one scenario (50k events, bad lines mixed in) gives, as plain data: the verdicts,
    one per anomalous request, as their count and a digest."""
    lines, _ = simulated_lines(50_000, seed=8, scenario=scenario)
    lines = [b'{"ts": "soon"' if i % 4999 == 7 else x for i, x in enumerate(lines)]
    size = 8192
    pipe = Pipeline(VigilConfig(batch_size=size))
    outs: list[BatchOutcome] = []
    DecodeAhead(pipe).run(((lines[i:i + size], "f", range(i + 1, i + size + 1))
                           for i in range(0, len(lines), size)), outs.append)
    outs.append(pipe.finish())
    ts = hashlib.sha256()
    for o in outs:
        ts.update(o.events.ts.tobytes())
    return {
        "events": sum(len(o.events) for o in outs),
        "event_times_sha256": ts.hexdigest(),
        "dead": [[d.reason, d.position] for o in outs for d in o.dead],
        "anomalies": [[a.service, a.feature, a.window_start, a.score] for o in outs
                      for a in o.anomalies],
        "verdicts": _digest([[v.request_id, v.root, v.propagators, v.onset, v.root_onset,
                              v.kinds, v.templates, v.silent, v.method, sorted(v.edges)]
                             for o in outs for v in o.verdicts]),
        "incidents": [[i.id, i.status, i.service, i.opened_at, i.anomaly_count,
                       [[r.get("service"), r.get("score")] for r in i.root_cause]]
                      for o in outs for i in o.incidents],
    }


def _digest(rows: list[Any]) -> dict[str, Any]:
    return {"count": len(rows), "sha256": hashlib.sha256(json.dumps(rows).encode()).hexdigest()}


def _plain(x: Any) -> Any:
    """As JSON would give it back (tuples as lists)."""
    return json.loads(json.dumps(x))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_scenario_gives_its_pinned_outcomes(scenario: str) -> None:
    pinned = json.loads(PINS.read_text())
    assert scenario in pinned, f"no pins for {scenario}: rewrite them (see the module docstring)"
    got = _plain(outcomes(scenario))
    want = pinned[scenario]
    for key in want:
        assert got[key] == want[key], f"{scenario}: {key} changed"
    assert got["dead"], "the bad lines were there to be told apart"


if __name__ == "__main__" and "--write" in sys.argv:
    PINS.parent.mkdir(exist_ok=True)
    PINS.write_text(json.dumps({s: outcomes(s) for s in sorted(SCENARIOS)}, indent=1) + "\n")
    print(f"wrote {PINS}")
