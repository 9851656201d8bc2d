"""Log template mining (Drain): the miner (`miner`) over a bounded prefix tree (`tree`)."""

from detector.templates.miner import MinedBatch, Template, TemplateMiner

__all__ = ["MinedBatch", "Template", "TemplateMiner"]
