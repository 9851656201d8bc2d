"""Follows growing JSONL files through a `Pipeline` into an output directory until stopped (the
`vigil follow` job): outputs are flushed after every batch, so another process can read them live.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from detector.config import VigilConfig
from detector.pipeline import BatchOutcome, Pipeline, PipelineStats
from detector.runtime.replay import OUTPUT_FILES
from detector.sinks.base import Outputs
from detector.sources.follow import FollowSource, FollowStats


@dataclass(slots=True)
class FollowResult:
    out_dir: Path
    stats: PipelineStats
    follow: FollowStats  # rotations, truncations, partial lines released, ...


def run_follow(
    paths: Sequence[str | Path],
    cfg: VigilConfig,
    out_dir: Path,
    stop: threading.Event,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
    from_end: bool = False,
    poll_s: float = 0.2,
    partial_timeout_s: float = 2.0,
) -> FollowResult:
    """Run `paths`, followed as they grow, through one pipeline until `stop` is set; outputs
    replace earlier ones in `out_dir`, as a replay's do.

    After each batch its outcome is written and flushed, then handed to `on_outcome`. The
    pipeline keeps event time: windows close as the logs' timestamps move on, not while the
    files are idle. On stop, what was read (unterminated lines included) is processed, then
    `Pipeline.finish` closes every window and writes the open incidents' latest state (handed
    to `on_outcome` too), and the outputs are closed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (out_dir / name).unlink(missing_ok=True)
    pipe = Pipeline(cfg)
    outputs = Outputs.jsonl(out_dir)
    source = FollowSource(paths, from_end=from_end, poll_s=poll_s, batch_size=cfg.batch_size,
                          partial_timeout_s=partial_timeout_s,
                          max_line_bytes=cfg.parsing.max_record_bytes)

    def deliver(out: BatchOutcome) -> None:
        outputs.write(out)
        outputs.flush()
        if on_outcome is not None:
            on_outcome(out)

    try:
        for batch in source.batches(stop):
            if batch.lines:  # an empty batch is an idle poll: nothing to do in event time
                deliver(pipe.process(batch.lines, batch.source, batch.line_numbers))
        deliver(pipe.finish())
    finally:
        source.close()
        outputs.close()
    return FollowResult(out_dir, pipe.stats, source.stats)
