"""Where input comes from, reading only: JSONL files and stdin (`files`), growing files followed
like `tail -F` (`follow`), a Kafka consumer group (`kafka`), Prometheus series (`prometheus`)."""
