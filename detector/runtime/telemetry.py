"""Vigil's own metrics (what its /metrics serves; not the Prometheus series it watches), through
prometheus_client registries and collectors only: base units in the names, bounded label sets.

`ConsumerMetrics`: `vigil consume`. `RemediatorMetrics`: `vigil remediate`. `SourceCollector`:
the Prometheus source's counters (`vigil_prometheus_*`), read from its stats when scraped, in
`vigil metrics` and, with queries configured, in `vigil consume` too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from detector.sources.prometheus import PrometheusSource

_SOURCE_COUNTERS = {
    "polls": "Polls of every query", "requests": "query_range requests",
    "errors": "Failed requests, retries included",
    "failed_polls": "Query polls that failed after their retries",
    "points": "New finite points read", "duplicates": "Points at or before a series' last one",
    "non_finite": "NaN or Inf points dropped", "gaps": "Series steps missing between two points",
    "new_series": "Series seen for the first time", "expired_series": "Idle series forgotten",
    "dropped_series": "New series refused at prometheus.max_series",
}


class SourceCollector(Collector):
    """The Prometheus source's counters and readiness, read at scrape time."""

    def __init__(self, source: PrometheusSource, ready: Callable[[], tuple[bool, str]]) -> None:
        self.source = source
        self.ready = ready

    def collect(self) -> Iterator[Metric]:
        st = self.source.stats
        for name, doc in _SOURCE_COUNTERS.items():
            yield CounterMetricFamily(f"vigil_prometheus_{name}", doc, value=getattr(st, name))
        yield GaugeMetricFamily("vigil_prometheus_series", "Series held",
                                value=self.source.series_count())
        yield GaugeMetricFamily("vigil_prometheus_ready", "1 when every query's last poll worked",
                                value=int(self.ready()[0]))


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
        self.metric_anomalies_dropped = Counter(
            "vigil_metric_anomalies_dropped_total", "Metric anomalies lost because the consumer "
            "stopped taking them from the Prometheus poller's queue", registry=r)
        self.batch_seconds = Histogram("vigil_pipeline_batch_seconds", "Time to process a batch",
                                       registry=r)


class RemediatorMetrics:
    """`vigil remediate`: triggers taken, dead-lettered or failed, decisions in flight."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.triggers = Counter("vigil_triggers_total", "Trigger records polled, by what became "
                                "of them (submitted to the engine, dead_lettered)", ["outcome"],
                                registry=r)
        self.dead = Counter("vigil_dead_letters_total", "Records sent to the dead-letter topic",
                            ["reason"], registry=r)
        self.in_flight = Gauge("vigil_triggers_in_flight", "Submitted triggers whose decisions "
                               "are not all audited yet (their offsets are not committed)",
                               registry=r)
        self.commits = Counter("vigil_trigger_commits_total", "Offset commits of the triggers "
                               "topic", registry=r)
        self.lag = Gauge("vigil_consumer_lag_messages", "High watermark minus position",
                         ["topic", "partition"], registry=r)
        self.assigned = Gauge("vigil_assigned_partitions", "Partitions this consumer owns",
                              registry=r)
        self.ready = Gauge("vigil_ready", "1 when connected and polling", registry=r)
        self.broker_errors = Counter("vigil_broker_errors_total", "Broker or topic errors",
                                     ["kind"], registry=r)
