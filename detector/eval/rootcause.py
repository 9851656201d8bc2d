"""AC@k of the root-cause ranking on seeded simulator cases: every fault kind, its root cause
cycled over the services it can strike."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from detector.config import VigilConfig
from detector.eval.detection import root_cause_rank
from detector.simulate.scenarios import ROOTS


@dataclass(slots=True)
class KindFigures:
    kind: str
    cases: int = 0
    covered: int = 0  # an incident covered the fault
    ranks: list[int | None] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)  # "service/seed: top candidate" of AC@1 misses

    def ac(self, k: int) -> float:
        return sum(1 for r in self.ranks if r is not None and r <= k) / max(self.cases, 1)


def evaluate(cfg: VigilConfig, cases: int = 50, events: int = 50_000,
             kinds: Iterable[str] | None = None, first_seed: int = 0) -> list[KindFigures]:
    """`cases` runs per fault kind (seeds first_seed.., root cause cycling over ROOTS[kind])."""
    from detector.runtime.replay import replay_lines
    from detector.simulate.runs import simulated_lines

    out = []
    for kind in kinds or ROOTS:
        fig = KindFigures(kind)
        roots = ROOTS[kind]
        for i in range(cases):
            seed = first_seed + i
            service = roots[i % len(roots)]
            lines, truth = simulated_lines(events, seed=seed, scenario=kind, service=service)
            incidents = replay_lines(lines, cfg)
            rank, inc = root_cause_rank(truth, incidents, cfg.window.seconds,
                                        cfg.incidents.gap_seconds)
            fig.cases += 1
            fig.covered += inc is not None
            fig.ranks.append(rank)
            if rank != 1:
                top = (inc["root_cause"][0]["service"] if inc and inc.get("root_cause")
                       else inc["service"] if inc else "no incident")
                fig.misses.append(f"{service}/{seed}: {top}")
        out.append(fig)
    return out
