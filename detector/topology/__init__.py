"""Vigil beyond one process: ingest (A), merge and score (B) and incidents (C) as separate stages
whose outputs are plain records, so Kafka can carry them between processes and hosts."""
