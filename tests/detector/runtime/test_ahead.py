"""Decoding ahead on a worker thread changes nothing but the time: every simulator scenario,
with bad lines mixed in, gives the same events, dead letters, anomalies and incidents as
`Pipeline.process` batch by batch; a decode that raises reaches the caller."""

from __future__ import annotations

from typing import Any

import pytest

from detector.config import VigilConfig
from detector.pipeline import BatchOutcome, Pipeline
from detector.runtime.ahead import DecodeAhead
from detector.simulate.runs import simulated_lines
from detector.simulate.scenarios import SCENARIOS


def _seen(outs: list[BatchOutcome]) -> dict[str, Any]:
    return {
        "events": sum(len(o.events) for o in outs),
        "dead": [(d.reason, d.source) for o in outs for d in o.dead],
        "anomalies": [(a.service, a.feature, a.window_start, a.score) for o in outs
                      for a in o.anomalies],
        "incidents": [(i.id, i.status, i.service) for o in outs for i in o.incidents],
    }


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_same_outcomes_as_batch_by_batch(scenario: str) -> None:
    lines, _ = simulated_lines(30_000, seed=2, scenario=scenario)
    lines = [b"{broken" if i % 997 == 5 else x for i, x in enumerate(lines)]
    cfg = VigilConfig(batch_size=4096)
    batches = [(lines[i:i + 4096], "f", range(i + 1, i + 4097)) for i in range(0, len(lines), 4096)]
    plain = Pipeline(cfg)
    one = [plain.process(*b) for b in batches] + [plain.finish()]
    ahead = Pipeline(cfg)
    two: list[BatchOutcome] = []
    DecodeAhead(ahead).run(batches, two.append)
    two.append(ahead.finish())
    assert _seen(two) == _seen(one)
    assert _seen(one)["dead"]  # the bad lines were there to be told apart


def test_a_decode_that_raises_reaches_the_caller() -> None:
    pipe = Pipeline(VigilConfig())

    def broken(*_: Any) -> Any:
        raise RuntimeError("decoder gone")
    pipe.decode = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="decoder gone"):
        DecodeAhead(pipe).run([([b"{}"], "a", None)], lambda _: None)
