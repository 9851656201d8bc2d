"""Where input comes from, reading only: JSONL files and stdin (`files`), a Kafka consumer group
(`kafka`), Prometheus series (`prometheus`)."""
