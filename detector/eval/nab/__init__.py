"""The Numenta Anomaly Benchmark as a yardstick: reading its corpus, running a detector over it,
and scoring the results by NAB's published rules."""
