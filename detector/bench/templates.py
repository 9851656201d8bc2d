"""`vigil bench templates`: the batch miner against drain3 on the same messages and masks, and
all-distinct messages at growing sizes (the cost must stay linear)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from detector.config import VigilConfig


@dataclass(slots=True)
class TemplateFigures:
    messages: int
    ours_per_s: float
    ours_templates: int
    drain3_per_s: float | None  # None when drain3 is not installed
    drain3_templates: int | None


def bench_templates(messages: list[str], cfg: VigilConfig) -> TemplateFigures:
    """Our batch miner against drain3's per-message `add_log_message`, same masks, same data."""
    import numpy as np
    import polars as pl

    from detector.templates.miner import TemplateMiner

    miner = TemplateMiner(cfg.templates)
    bs = cfg.batch_size
    ts = np.zeros(len(messages))
    t0 = time.perf_counter()
    for i in range(0, len(messages), bs):
        miner.mine(pl.Series(messages[i:i + bs], dtype=pl.String), ts[i:i + bs], 10.0)
    ours = len(messages) / (time.perf_counter() - t0)
    try:
        from drain3 import TemplateMiner as Drain3  # type: ignore[import-untyped]
        from drain3.masking import MaskingInstruction  # type: ignore[import-untyped]
        from drain3.template_miner_config import TemplateMinerConfig  # type: ignore[import-untyped]
    except ImportError:
        return TemplateFigures(len(messages), ours, len(miner), None, None)
    dc = TemplateMinerConfig()
    dc.masking_instructions = [MaskingInstruction(rx, tok.strip("<>"))
                               for rx, tok in cfg.templates.masks]
    dc.drain_sim_th = cfg.templates.similarity
    dc.drain_depth = cfg.templates.depth
    dc.drain_max_children = cfg.templates.max_children
    dc.drain_max_clusters = cfg.templates.max_templates
    dc.profiling_enabled = False
    d3 = Drain3(config=dc)
    t0 = time.perf_counter()
    for m in messages:
        d3.add_log_message(m)
    theirs = len(messages) / (time.perf_counter() - t0)
    return TemplateFigures(len(messages), ours, len(miner), theirs, len(d3.drain.clusters))


@dataclass(slots=True)
class DistinctFigures:
    messages: int
    seconds: float
    templates: int
    evictions: int

    @property
    def us_per_message(self) -> float:
        return self.seconds / self.messages * 1e6


def distinct_messages(n: int, seed: int = 0) -> list[str]:
    """`n` messages that are all different and that no mask collapses: letters only, one to
    eight words, half of them a single word (the worst case: all share one leaf of the tree)."""
    import random
    import string

    r = random.Random(seed)
    letters = string.ascii_lowercase

    def word() -> str:
        return "".join(r.choices(letters, k=r.randint(6, 12)))

    out: set[str] = set()
    while len(out) < n:
        out.add(word() if r.random() < 0.5 else " ".join(word() for _ in range(r.randint(2, 8))))
    return sorted(out, key=lambda _: r.random())


def bench_templates_distinct(cfg: VigilConfig, sizes: tuple[int, ...] = (16_384, 65_536, 262_144),
                             ) -> list[DistinctFigures]:
    """Mining all-distinct messages, `batch_size` a call, at growing sizes: linear when the
    time per message stays flat."""
    import numpy as np
    import polars as pl

    from detector.templates.miner import TemplateMiner

    figures = []
    for n in sizes:
        messages = distinct_messages(n, seed=n)
        miner = TemplateMiner(cfg.templates)
        bs = cfg.batch_size
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            part = messages[i:i + bs]
            miner.mine(pl.Series(part, dtype=pl.String), np.full(len(part), float(i)), 10.0)
        figures.append(DistinctFigures(n, time.perf_counter() - t0, len(miner), miner.evictions))
    return figures
