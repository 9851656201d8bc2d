"""The consumer's Prometheus metrics (base units in the names, bounded label sets)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.events = Counter("vigil_events_processed_total", "Log events decoded and processed",
                              ["topic"], registry=r)
        self.batches = Counter("vigil_batches_total", "Polled batches processed", registry=r)
        self.dead = Counter("vigil_dead_letters_total", "Records sent to the dead-letter topic",
                            ["reason"], registry=r)
        self.anomalies = Counter("vigil_anomalies_total", "Anomalies produced", registry=r)
        self.incidents = Counter("vigil_incidents_total", "Incident changes produced", ["status"],
                                 registry=r)
        self.lag = Gauge("vigil_consumer_lag_messages", "High watermark minus position",
                         ["topic", "partition"], registry=r)
        self.assigned = Gauge("vigil_assigned_partitions", "Partitions this consumer owns",
                              registry=r)
        self.checkpoint_age = Gauge("vigil_checkpoint_age_seconds",
                                    "Seconds since the last checkpoint was written", registry=r)
        self.ready = Gauge("vigil_ready", "1 when connected, assigned and polling", registry=r)
        self.broker_errors = Counter("vigil_broker_errors_total", "Broker or topic errors",
                                     ["kind"], registry=r)
        self.checkpoints_refused = Counter(
            "vigil_checkpoints_refused_total", "Checkpoints that could not be used on assignment "
            "(the partition started cold)", ["kind"], registry=r)
        self.pipeline_errors = Counter(
            "vigil_pipeline_errors_total", "Batches a partition's pipeline failed on (its records "
            "were dead-lettered and the partition restarted cold)", registry=r)
        self.batch_seconds = Histogram("vigil_pipeline_batch_seconds", "Time to process a batch",
                                       registry=r)
