"""Vigil's configuration: one typed tree, read from a YAML file and `VIGIL_*` environment overrides.

Environment overrides use `__` between levels: `VIGIL_WINDOW__SECONDS=5`,
`VIGIL_PARSING__MAX_RECORD_BYTES=65536`. This module only describes settings; it does no work.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from remediation.alertmanager.settings import ServeConfig
from remediation.retry import Backoff, Retry


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message names the field."""


class _Section(BaseModel):
    """Every section of the tree: unknown keys are errors (`window: {secnds: 30}` is refused,
    naming `window.secnds`)."""

    model_config = ConfigDict(extra="forbid")


# The features a closed window has per service (`windows/aggregate.py` computes them in this
# order); `scoring.features` may only name these.
WINDOW_FEATURES = (
    "rate", "error_ratio", "latency_p50", "latency_p95", "latency_p99",
    "new_template_share", "rare_template_share",
)


class FieldMapping(_Section):
    """Where each `LogEvent` field is found in a JSON record, as candidate paths in priority order.

    A path is dotted: `resource.service.name` matches `{"resource": {"service.name": ...}}`,
    `{"resource": {"service": {"name": ...}}}` and a flat `{"resource.service.name": ...}` alike.
    The defaults recognise OpenTelemetry log records, ECS and the common plain shape.
    """

    timestamp: list[str] = Field(
        default=[
            "ts", "timestamp", "time", "@timestamp", "timeUnixNano", "observedTimeUnixNano",
        ],
        description=(
            "event time: RFC 3339 text, or epoch s/ms/µs/ns (by magnitude), or OTLP nanosecond digits"),
    )
    service: list[str] = Field(
        default=["service", "service.name", "resource.service.name", "resource.attributes.service.name"],
        description="the service that wrote the line",
    )
    level: list[str] = Field(
        default=["level", "log.level", "severityText", "severity", "severityNumber"],
        description="a level name (error, WARN, ...) or an OpenTelemetry severity number",
    )
    message: list[str] = Field(default=["msg", "message", "body", "body.stringValue"], description=(
        "the text templates are mined from (an object or array is kept as its JSON text)"))
    request_id: list[str] = Field(
        default=["request_id", "requestId", "trace_id", "traceId", "trace.id"],
        description="what correlates a request's lines across services (a trace id)",
    )
    span_id: list[str] = Field(default=["span_id", "spanId", "span.id"], description=(
        "this line's span, for the call chain"))
    parent_id: list[str] = Field(
        default=["parent_id", "parentSpanId", "parent_span_id", "parent.id"],
        description="the calling span, for the call chain",
    )
    latency_ms: list[str] = Field(
        default=["latency_ms", "duration_ms", "attributes.latency_ms", "event.duration_ms"],
        description="a duration in milliseconds (non-negative)",
    )
    status: list[str] = Field(
        default=[
            "status", "status_code", "http.response.status_code", "attributes.http.status_code",
        ],
        description="an HTTP-like status code 0-999 (>= 500 counts as an error), or an "
        "OpenTelemetry span status: its name (ERROR is 500, OK 200, UNSET none) or the OTLP "
        "status object ({\"code\": 2} is ERROR)",
    )
    attrs: list[str] = Field(
        default=["event", "version", "host", "caller", "callee", "name", "kind", "pod"],
        description="extra top-level keys kept in LogEvent.attrs when their values are scalars "
        "(as text: numbers and booleans in their JSON form)",
    )


# The ready layouts of `parsing.preset` (defined in `detector/decode/layouts.py`).
PresetName = Literal["syslog-rfc5424", "syslog-rfc3164", "nginx-combined", "hdfs", "bgl"]


class ParsingConfig(_Section):
    """How a line becomes an event: JSON objects (the default), logfmt `key=value` pairs, or
    raw text matched by a regex with named groups (your own `pattern` or a `preset`).

    Logfmt keys and named groups map onto Vigil's fields through `fields` as JSON keys do (a
    group or key named after a field, such as `service` or `latency_ms`, always maps to it).
    """

    format: Literal["json", "logfmt", "regex"] = Field(default="json", description=(
        "json: one JSON object a line; logfmt: key=value pairs; regex: raw text matched by "
        "pattern or preset (a line that does not match is a dead letter, no_match)"))
    pattern: str | None = Field(default=None, description=(
        "with format regex: a Python regex whose named groups are field names or keys of "
        "fields, e.g. `(?P<timestamp>\\S+) (?P<service>\\w+): (?P<message>.*)`; a group "
        "latency_s is a latency in seconds, pri a syslog priority (its severity is the level)"))
    preset: PresetName | None = Field(
        default=None, description="with format regex, instead of pattern: a ready layout "
        "(see docs/input.md for how each maps onto the fields)")
    timestamp_format: str | None = Field(default=None, description=(
        "with logfmt or a pattern: a strftime format of the timestamp (e.g. %Y-%m-%d "
        "%H:%M:%S,%3f; no offset means UTC); unset, RFC 3339 or epoch numbers"))
    default_service: str | None = Field(default=None, description=(
        "with logfmt or regex: the service of lines that name none (the nginx-combined preset "
        "uses nginx when unset)"))
    year: int | None = Field(default=None, ge=1970, le=9999, description=(
        "the year of timestamps written without one (syslog-rfc3164); unset, the current "
        "year, or the previous one for a date more than a day ahead of this machine's clock"))
    fields: FieldMapping = Field(default_factory=FieldMapping)
    required: list[Literal["timestamp", "service", "message"]] = Field(
        default=["timestamp", "service"],
        description="fields a line must have, or it is a dead letter (missing_field)",
    )
    max_record_bytes: int = Field(default=1 << 20, gt=0, description=(
        "longer lines are dead letters (oversize) before they are parsed"))
    max_message_chars: int = Field(
        default=8192, gt=0, description="longer messages are truncated before template mining"
    )

    @model_validator(mode="after")
    def _format_needs(self) -> ParsingConfig:
        if self.format != "regex" and (self.pattern is not None or self.preset is not None):
            raise ValueError("parsing.pattern and parsing.preset need parsing.format: regex")
        if self.format == "regex":
            if (self.pattern is None) == (self.preset is None):
                raise ValueError("parsing.format regex needs one of parsing.pattern (a regex "
                                 "with named groups) or parsing.preset, not both")
            if self.pattern is not None:
                try:
                    rx = re.compile(self.pattern)
                except re.error as exc:
                    raise ValueError(f"parsing.pattern is not a valid regex: {exc}") from exc
                if not rx.groupindex:
                    raise ValueError("parsing.pattern has no named groups; name them after "
                                     "fields, e.g. (?P<message>.*)")
        return self


class TemplatesConfig(_Section):
    max_templates: int = Field(default=5000, gt=0, description=(
        "templates kept at once; the least recently used is evicted"))
    similarity: float = Field(default=0.5, ge=0.0, le=1.0, description=(
        "share of equal tokens for a message to join a template (Drain's threshold)"))
    depth: int = Field(default=4, ge=1, description=(
        "depth of Drain's prefix tree (the token count and depth - 2 first tokens route a message)"))
    max_children: int = Field(default=100, gt=1, description=(
        "children of a tree node; past it new tokens route as <*>"))
    max_leaf_templates: int = Field(
        default=256, ge=1, description="templates one leaf of the prefix tree holds (same token "
        "count and first tokens); past it the leaf's least recently used is evicted, so a flood "
        "of distinct texts costs linear time")
    cache_size: int = Field(default=200_000, gt=0, description="exact message -> template cache")
    rare_count: int = Field(
        default=10, ge=1, description="a template seen fewer times than this is rare"
    )
    masks: list[tuple[str, str]] = Field(
        default=[
            (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
             "<UUID>"),
            (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "<IP>"),
            (r"\b0[xX][0-9a-fA-F]+\b", "<HEX>"),
            (r"\b[0-9a-fA-F]{8,}\b", "<HEX>"),
            (r"\b[-+]?\d+(?:\.\d+)?(?:ms|us|ns|s)?\b", "<NUM>"),
        ],
        description="(regex, token) pairs applied in order before clustering; Rust regex syntax "
        "(no look-around), as polars runs them over whole batches",
    )


class WindowConfig(_Section):
    seconds: float = Field(default=10.0, gt=0, description="width of a tumbling window of event time")
    allowed_lateness: float = Field(default=5.0, ge=0, description=(
        "a window closes this long (event time) after its end; later events are too_late"))
    min_events: int = Field(
        default=8, ge=1, description="ratio and latency features need this many events in a window"
    )
    max_future_seconds: float = Field(
        default=3600.0, gt=0, description="an event this far ahead of the stream (the newest "
        "event time accepted) is a clock error, not the future: it is dead-lettered as "
        "clock_skew instead of closing every open window, unless the stream has really moved "
        "there (see jump_confirm)",
    )
    max_past_seconds: float = Field(
        default=86_400.0, gt=0, description="an event this far behind the stream is a clock "
        "error (clock_skew); nearer ones whose window has closed are too_late",
    )
    max_ahead_of_clock_seconds: float = Field(
        default=86_400.0, gt=0, description="an event this far ahead of this machine's clock "
        "is always a clock error (the slack covers a wrong host clock)",
    )
    jump_confirm: int = Field(
        default=20, ge=1, description="a run of consecutive events agreeing on a time this far "
        "ahead moves the stream there once it is as long as the events the stream had in its "
        "last max_future_seconds, at most this many (a sparse stream moves at once); a live "
        "stream resuming at this machine's time moves at once",
    )
    gap_seconds: float = Field(
        default=60.0, gt=0, description="a silence of the whole stream at least this long is a "
        "gap in the input: its windows are skipped, not judged as every service gone quiet, "
        "and the windows at its edges are rated over the time they covered",
    )
    max_services: int = Field(
        default=2000, ge=2, description="services tracked at most; events of services beyond "
        "that are counted together as '(other services)', so a mis-mapped field cannot "
        "exhaust memory",
    )
    silence_after: int = Field(
        default=30, ge=1, description="a known service stays tracked for this many silent windows"
    )


class FeatureRule(_Section):
    """How one feature is judged: which direction is bad and how small a change is noise."""

    direction: Literal["up", "down", "both"] = "up"
    abs_floor: float = Field(default=0.0, ge=0)
    rel_floor: float = Field(default=0.0, ge=0)
    enabled: bool = True


def _default_features() -> dict[str, FeatureRule]:
    return {
        "rate": FeatureRule(direction="both", rel_floor=0.15),
        "error_ratio": FeatureRule(direction="up", abs_floor=0.03),
        "latency_p50": FeatureRule(direction="up", abs_floor=2.0, rel_floor=0.1),
        "latency_p95": FeatureRule(direction="up", abs_floor=4.0, rel_floor=0.15),
        "latency_p99": FeatureRule(direction="up", abs_floor=8.0, rel_floor=0.2),
        "new_template_share": FeatureRule(direction="up", abs_floor=0.02),
        "rare_template_share": FeatureRule(direction="up", abs_floor=0.05),
    }


class ScoringConfig(_Section):
    model: Literal["ewma", "robust"] = Field(default="ewma", description=(
        "the level baseline: ewma (mean and variance) or robust (median and MAD of the last "
        "robust_window windows)"))
    alpha: float = Field(default=0.05, gt=0, le=1, description="EWMA weight of a new window")
    warmup: int = Field(default=12, ge=2, description="windows per series before it may alarm")
    robust_window: int = Field(default=64, ge=8, description="values kept by the median/MAD model")
    threshold: float = Field(
        default=0.99999, gt=0.5, lt=1, description="score (1 - p) at or above which a window is "
        "anomalous. Set for about one false alarm per service a day before calibration: a "
        "service has 7 features judged every 10 s window (60,480 tests a day), so 1e-5 per "
        "test; a metric series is judged once a step (1,440 a day at 1 min), hence "
        "prometheus.threshold 0.9999"
    )
    clip_z: float = Field(
        default=3.0, gt=0, description="values beyond mean +/- clip_z*std are clipped before "
        "they update a baseline, so an incident does not become the new normal at once"
    )
    calibrate: bool = Field(
        default=True, description="correct each series' tail probabilities by its own history "
        "(models.TailCalibrator), so heavy-tailed series do not page on their usual noise"
    )
    calibration_history: int = Field(default=100, ge=10, description="windows per series before "
                                     "its calibration starts")
    calibration_k: int = Field(default=25, ge=1, description="most extreme past windows that "
                               "measure how heavy a series' tail is")
    periodic: bool = Field(
        default=True, description="also judge each series against its value one period earlier "
        "(models.PeriodicZScore), where that explains the series better than a flat level"
    )
    members: list[Literal["weekly", "shift", "subsequence", "counts"]] = Field(
        default=["shift"], description="members of the default metric detector (models.default) "
        "judged beside the level and periodic ones: shift (the recent mean has moved: 40 bytes "
        "and a 610-byte calibrator a series) by default; weekly (the value a week earlier, once "
        "two weeks show a weekly shape: 5.4 KiB a series), subsequence (the recent windows' "
        "shape is unlike any seen: 14.8 KiB) and counts (a negative-binomial tail, for features "
        "whose values are counts; the window features are rates) on request. 2,000 services x 7 "
        "features are 14,000 series, so the larger members cost hundreds of MB of state and "
        "checkpoint")
    period_seconds: float = Field(default=86_400.0, gt=0, description="the period (a day)")
    period_buckets: int = Field(default=48, ge=1, le=100_000, description="phase slots per "
                                "period (48: half-hour slots of a day, 768 bytes a series)")
    features: dict[str, FeatureRule] = Field(default_factory=_default_features, description=(
        "per feature: which direction is bad and how small a change is noise (only the window "
        "features may be named)"))

    @field_validator("features")
    @classmethod
    def _known_features(cls, v: dict[str, FeatureRule]) -> dict[str, FeatureRule]:
        unknown = sorted(set(v) - set(WINDOW_FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {', '.join(unknown)}; the features are "
                             f"{', '.join(WINDOW_FEATURES)}")
        return v


class CorrelationConfig(_Section):
    """Request-ID correlation and root cause (`detector/correlation/`, `detector/incidents/rootcause.py`)."""

    enabled: bool = Field(default=True, description=(
        "gather each request's events and rank root causes by request evidence"))
    ttl_seconds: float = Field(default=5.0, gt=0, description="a request closes this long (event "
                               "time) after its last event")
    max_open_requests: int = Field(default=1_000_000, ge=16, description="open requests kept; "
                                   "beyond it the least recently active are closed early "
                                   "(counted as evicted)")
    max_events_per_request: int = Field(default=1024, ge=1, description="events kept per request; "
                                        "more are dropped and counted")
    late_memory: int = Field(default=200_000, ge=0, description="closed request ids remembered "
                             "for counting late events")
    latency_z: float = Field(default=4.0, gt=0, description="an event's latency is anomalous "
                             "beyond this many standard deviations of its service's log latency")
    latency_factor: float = Field(default=2.0, ge=1, description="...and at least this many times "
                                  "the service's typical latency")
    warmup_events: int = Field(default=1000, ge=0, description="events of a service before its "
                               "rare templates and latencies can mark events anomalous")
    graph_sample: int = Field(default=100, ge=0, description="one normal request in this many is "
                              "read to learn the service call graph (0: never)")
    horizon_seconds: float = Field(default=120.0, gt=0, description="request evidence kept for "
                                   "ranking the root cause of an incident")
    max_verdicts: int = Field(default=20_000, ge=100, description="anomalous-request verdicts kept "
                              "(the most recent) for ranking")
    min_requests: int = Field(default=10, ge=1, description="anomalous requests a service needs "
                              "before request evidence speaks for it (fewer are background noise)")
    explain_gap: float = Field(default=30.0, ge=0, description="request evidence this long before "
                               "an incident's first or after its last anomaly still counts for it")
    explain_share: float = Field(default=0.5, gt=0, le=1, description="a service whose anomalous "
                                 "requests are at least this share rooted in another service "
                                 "joins that service's incident")


class KafkaConfig(_Section):
    """`vigil consume`: the consumer group, its output topics, checkpoints and side server.
    Every field has a `VIGIL_KAFKA__<FIELD>` environment override."""

    bootstrap_servers: list[str] = Field(default=["127.0.0.1:9092"], description="brokers to bootstrap from")
    topics: list[str] = Field(default=["logs"], min_length=1, description="log topics to consume")
    group_id: str = Field(default="vigil", description=(
        "the consumer group (instances of one group split the partitions)"))
    client_id: str = Field(default="vigil", description="the client id brokers see")
    client: Literal["kafka-python", "confluent"] = Field(default="confluent", description=(
        "the consumer of `vigil consume` (and of its --role stages): confluent-kafka "
        "(librdkafka, the faster), or kafka-python; outputs are produced with kafka-python "
        "either way"))
    anomalies_topic: str = Field(default="vigil.anomalies", description=(
        "where anomalies go (keyed by service)"))
    incidents_topic: str = Field(default="vigil.incidents", description=(
        "where incident changes go (keyed by root-cause target)"))
    dead_letter_topic: str = Field(default="vigil.dead-letters", description=(
        "where unusable records go (original bytes; reason in headers)"))
    auto_offset_reset: Literal["earliest", "latest"] = Field(default="earliest", description=(
        "where a group without committed offsets starts"))
    poll_max_records: int = Field(default=5000, ge=1, description="records per poll at most")
    poll_timeout_ms: int = Field(default=500, ge=1, description="how long a poll waits for records")
    session_timeout_ms: int = Field(default=10_000, ge=1000, description=(
        "the group's session timeout (a consumer silent this long is dropped)"))
    heartbeat_interval_ms: int = Field(default=3000, ge=100, description=(
        "heartbeats to the group coordinator"))
    max_poll_interval_ms: int = Field(default=300_000, ge=1000, description=(
        "most time between polls before the group rebalances away"))
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="passed to the Kafka client")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = Field(
        default=None, description="passed to the Kafka client")
    sasl_plain_username: str | None = Field(default=None, description="passed to the Kafka client")
    sasl_plain_password: str | None = Field(default=None, repr=False, description=(
        "passed to the Kafka client (prefer VIGIL_KAFKA__SASL_PLAIN_PASSWORD)"))
    ssl_cafile: str | None = Field(default=None, description="passed to the Kafka client")
    ssl_certfile: str | None = Field(default=None, description="passed to the Kafka client")
    ssl_keyfile: str | None = Field(default=None, description="passed to the Kafka client")
    checkpoint_dir: Path = Field(default=Path("vigil-checkpoints"), description=(
        "where each partition's state is checkpointed (0700; files 0600)"))
    checkpoint_every_s: float = Field(default=60.0, gt=0, description=(
        "checkpoint period (also on revocation and on shutdown)"))
    checkpoint_max_bytes: int = Field(default=256 << 20, gt=0, description="a checkpoint file "
                                      "larger than this is refused (the partition starts cold)")
    http_host: str = Field(default="127.0.0.1", description="address of /healthz /readyz /metrics")
    http_port: int = Field(default=9108, ge=0, le=65535, description=(
        "port of /healthz /readyz /metrics (0: any free port)"))
    drain_timeout_s: float = Field(default=30.0, gt=0, description=(
        "on SIGTERM: time allowed to flush and checkpoint"))
    reconnect: Backoff = Field(default_factory=lambda: Backoff(base_s=0.5, max_s=15.0),
                               description="delays between reconnects after a broker outage "
                               "(it never gives up)")
    stall_after_s: float = Field(default=120.0, gt=0, description="not ready when no poll has "
                                 "returned for this long")

    def confluent_options(self) -> dict[str, object]:
        """The same connection and security options, as librdkafka names them."""
        opts: dict[str, object] = {
            "bootstrap.servers": ",".join(self.bootstrap_servers), "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        names = {"sasl_mechanism": "sasl.mechanism", "sasl_plain_username": "sasl.username",
                 "sasl_plain_password": "sasl.password", "ssl_cafile": "ssl.ca.location",
                 "ssl_certfile": "ssl.certificate.location", "ssl_keyfile": "ssl.key.location"}
        for name, option in names.items():
            value = getattr(self, name)
            if value is not None:
                opts[option] = value
        return opts

    def client_options(self) -> dict[str, object]:
        """Options passed through to kafka-python (security included)."""
        opts: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers, "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        for name in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password", "ssl_cafile",
                     "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                opts[name] = value
        return opts


class PromQuery(_Section):
    """One PromQL query whose result series Vigil watches."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_:.-]*$", description="names its anomalies "
                      "(feature `metric:<name>`)")
    query: str = Field(min_length=1, description="the PromQL expression (each series it returns "
                       "is watched)")
    step_seconds: float = Field(default=60.0, gt=0, description="resolution and poll interval")
    lookback_seconds: float = Field(default=6 * 3600.0, ge=0, description="history read at start "
                                    "(warm-up) with query_range")
    service_labels: list[str] = Field(default=["service", "job", "app"], min_length=1,
                                      description="the first of these labels present names the "
                                      "series' service")
    series_labels: list[str] | None = Field(default=None, description="labels that identify a "
                                            "series (default: all of them)")
    baseline: Literal["default", "level", "periodic", "seasonal"] = Field(
        default="default", description="default: the default metric detector (models.default: "
        "level, a day and a week earlier, level shift and shape, each where it explains the "
        "series; its own settings, alpha 0.001); level: EWMA only; periodic: EWMA plus the value "
        "a day earlier where that explains the series better; seasonal: hour-of-week profile")
    direction: Literal["up", "down", "both"] = Field(default="both", description="which way of "
                                                     "moving is anomalous")
    alpha: float = Field(default=0.02, gt=0, le=1, description="EWMA weight of a new point "
                         "(level, periodic and seasonal baselines)")
    warmup: int = Field(default=30, ge=2, description="points a series needs before it may alarm")
    quiet_steps: int = Field(default=100, ge=0, description="points an alarm silences its series "
                             "for: one anomaly per episode (0: every point over the threshold)")
    abs_floor: float = Field(default=0.0, ge=0, description="spread below this is noise")
    rel_floor: float = Field(default=0.01, ge=0, description="...or below this share of the level")


class PrometheusConfig(_Section):
    """Prometheus series as a source (prometheus-api-client)."""

    url: str = Field(default="http://127.0.0.1:9090", description="the Prometheus server")
    queries: list[PromQuery] = Field(default_factory=list, description=(
        "the PromQL queries whose series are watched"))
    bearer_token_file: Path | None = Field(default=None, description=(
        "a file holding a bearer token for Prometheus"))
    verify_tls: bool = Field(default=True, description="verify Prometheus's certificate")
    timeout_s: float = Field(default=10.0, gt=0, description="per HTTP request")
    retry: Retry = Field(default_factory=lambda: Retry(attempts=3, base_s=0.5, max_s=10.0),
                         description="retries of a failed query within one poll")
    max_backfill_seconds: float = Field(default=6 * 3600.0, gt=0, description="after an outage, "
                                        "read back at most this much")
    idle_series_seconds: float = Field(default=900.0, gt=0, description="a series with no point "
                                       "for this long is forgotten (pod churn)")
    max_series: int = Field(default=200_000, ge=1, description="series held at once; new ones "
                            "beyond are counted and dropped")
    threshold: float = Field(default=0.9999, gt=0, lt=1, description="1 - p at which a point is "
                             "anomalous: about one false alarm per series a day at a 1-minute "
                             "step (1,440 tests a day; see scoring.threshold for logs)")


class IncidentConfig(_Section):
    gap_seconds: float = Field(
        default=60.0, gt=0, description="an incident resolves after this long with no anomaly"
    )


class RcaConfig(_Section):
    """Root cause from spans (`detector/rca/`): `vigil rca`, and the same analysis on the stream.

    While an incident is open, the stream re-runs the analysis `vigil rca` runs on the spans and
    logs it kept from `lookback_seconds` before the incident opened (the onset found as there)
    and its ranking orders the incident's `root_cause`, when the capture holds spans.
    """

    enabled: bool = Field(default=True, description="rank incidents from the kept spans and logs")
    keep_seconds: float = Field(default=600.0, gt=0, description=(
        "event time of spans and logs kept for the analysis"))
    max_records: int = Field(default=500_000, ge=1000, description=(
        "spans and logs kept at most; the oldest go first, counted as rca_records_dropped"))
    lookback_seconds: float = Field(default=300.0, gt=0, description=(
        "how far before an incident's onset the stream compares against"))
    refresh_seconds: float = Field(default=30.0, gt=0, description=(
        "event time between two analyses of one open incident"))
    max_runs: int = Field(default=20, ge=1, description="analyses of one incident at most")
    min_spans: int = Field(default=50, ge=1, description=(
        "spans since the incident opened needed before the span ranking orders it"))


class OutputConfig(_Section):
    dir: Path = Field(default=Path("vigil-out"), description=(
        "where vigil replay and vigil metrics write their JSONL files"))


class TopologyConfig(_Section):
    """The stages across processes (`vigil consume --role`, `detector/topology/`): ingest tasks
    emit window partials with their watermark, merge closes a window when the slowest source's
    watermark passes it, one incidents owner tracks them fleet-wide.

    A source (a `logs` partition's ingest task) that says it is caught up with nothing pending
    holds windows back only as far as the newest source had got when it said so; one that goes
    silent without saying so (its task died) holds them back from there while its partition
    moves. A window the fastest source
    passed `max_wait_s` ago closes even if a source is still behind it, and what that source
    sends for it later is counted as late.
    """

    idle_seconds: float = Field(default=30.0, gt=0, description=(
        "wall seconds an ingest task's word that it is caught up (nothing pending) holds; it "
        "repeats it every idle_flush_s while idle"))
    max_wait_s: float = Field(default=120.0, gt=0, description=(
        "wall seconds a window waits at most for the slowest live source once the fastest "
        "has passed it"))
    partials_topic: str = Field(default="vigil.partials", description=(
        "window partials and watermarks, keyed by service (ingest -> merge)"))
    judge_topic: str = Field(default="vigil.judge", description=(
        "one partition: request verdicts and call edges (ingest) and scored windows (merge), "
        "read by the one incidents owner"))
    state_topic: str = Field(default="vigil.state", description=(
        "compacted: each task's state snapshot with the source offsets it covers"))
    snapshot_every_s: float = Field(default=10.0, gt=0, description=(
        "wall seconds between state snapshots of a task"))
    chunk_records: int = Field(default=5000, ge=1, le=200_000, description=(
        "an ingest chunk ends after this many records of its partition"))
    chunk_ms: int = Field(default=2000, ge=1, description=(
        "or at the first record whose Kafka timestamp is this far past the chunk's first"))
    idle_flush_s: float = Field(default=2.0, gt=0, description=(
        "or when no record has come for this long (a boundary a replay may not repeat: its "
        "overlap is counted)"))


class VigilConfig(BaseSettings):
    """The whole effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_nested_delimiter="__", extra="forbid"
    )

    parsing: ParsingConfig = Field(default_factory=ParsingConfig)
    templates: TemplatesConfig = Field(default_factory=TemplatesConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    incidents: IncidentConfig = Field(default_factory=IncidentConfig)
    correlation: CorrelationConfig = Field(default_factory=CorrelationConfig)
    rca: RcaConfig = Field(default_factory=RcaConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    topology: TopologyConfig = Field(default_factory=TopologyConfig)
    batch_size: int = Field(default=65536, gt=0, description="lines decoded and scored together")

    @field_validator("batch_size")
    @classmethod
    def _sane_batch(cls, v: int) -> int:
        if v > 1_000_000:
            raise ValueError("batch_size above 1,000,000 holds too much in memory; use 8192")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file: the file's values arrive as init kwargs.
        return env_settings, init_settings


def load_config(path: Path | str | None = None) -> VigilConfig:
    """Read `path` (YAML) if given, then apply `VIGIL_*` environment overrides.

    >>> load_config().window.seconds
    10.0
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {p} does not exist") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top, not {type(loaded).__name__}")
        data = loaded
    try:
        return VigilConfig(**data)
    except ValidationError as exc:
        raise ConfigError("invalid configuration:\n" + "\n".join(
            f"  {'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}"
            + (f" (got {str(e['input'])[:60]!r})" if e["type"] != "missing" and
               not isinstance(e["input"], dict) else "")
            for e in exc.errors())) from exc
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc


def config_as_yaml(cfg: VigilConfig) -> str:
    """The effective configuration as YAML, as `vigil config show` prints it."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
