"""A small fleet of real local HTTP services for a live demo: each service a process that logs one
JSON line per request (`service`), a supervisor with a control API (`fleet`), a load generator
(`load`) and the parent's client (`control`). Loopback only; nothing here imports the pipeline.
"""
