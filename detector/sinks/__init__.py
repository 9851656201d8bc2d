"""Where outcomes go: JSONL files, memory, nothing (`base`), and Kafka topics (`kafka`)."""

from detector.sinks.base import JsonlSink, MemorySink, NullSink, Outputs, RecordSink

__all__ = ["JsonlSink", "MemorySink", "NullSink", "Outputs", "RecordSink"]
