"""Where log lines come from: files and stdin here; Kafka and Prometheus later, one module each."""
