"""The Numenta Anomaly Benchmark as a yardstick: reading its corpus, running a detector over it,
and scoring the results by NAB's published rules."""

DEFAULT_DETECTOR = "default"  # here, not in `run`, so the CLI can name it without numpy
