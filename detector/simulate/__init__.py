"""The workload simulator: a microservice fleet's JSON logs with labeled faults (ground truth)."""
