"""`vigil bench kafka`: `vigil consume` against a bare kafka-python loop on the same local broker
and topic, and end-to-end latency at a steady rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from detector.bench.servers import Broker
from detector.config import VigilConfig
from detector.simulate.fleet import Fleet, render
from detector.simulate.runs import simulated_lines


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


def bench_kafka(events: int = 60_000, partitions: int = 3, steady_rate: float = 1000.0,
                steady_seconds: float = 45.0, bootstrap: str | None = None) -> KafkaFigures:
    """Throughput of `vigil consume` against a bare kafka-python loop on the same broker and
    topic, then end-to-end latency at a steady produce rate with injected faults."""
    import threading

    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    from detector.runtime.consume import LogConsumer
    from detector.simulate.fleet import Fault

    broker = None if bootstrap else Broker()
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

        def consumer_for(topic: str, group: str,
                         on_batch: Callable[[dict[Any, list[Any]]], None] | None = None
                         ) -> LogConsumer:
            cfg = VigilConfig()
            k = cfg.kafka
            k.bootstrap_servers, k.topics, k.group_id = [addr], [topic], group
            k.anomalies_topic, k.incidents_topic, k.dead_letter_topic = outs
            k.session_timeout_ms, k.heartbeat_interval_ms, k.max_poll_interval_ms = 3000, 500, 30000
            k.poll_timeout_ms = 100
            k.checkpoint_dir = Path(tempfile_dir) / group
            return LogConsumer(cfg, on_batch=on_batch)

        import tempfile
        with tempfile.TemporaryDirectory() as tempfile_dir:
            c = consumer_for(logs, f"vigil-{run_id}")
            c.connect()
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
            latencies: list[float] = []

            def committed(batch: dict[Any, list[Any]]) -> None:  # produce -> batch committed
                now = time.time()
                for recs_ in batch.values():
                    latencies.extend(now - r.timestamp / 1000.0 for r in recs_
                                     if r.timestamp / 1000.0 >= start)
            c = consumer_for(steady, f"vigil-steady-{run_id}", on_batch=committed)
            c.connect()
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
            seen: dict[str, tuple[float, float, str]] = {}  # id -> (received, opened, key)
            watch = KafkaConsumer(outs[1], bootstrap_servers=addr, auto_offset_reset="earliest",
                                  group_id=f"watch-{run_id}", fetch_max_wait_ms=100, **session)
            end = start + dur + 25
            while time.time() < end:
                c.poll_once()
                for wrecs in watch.poll(timeout_ms=10).values():
                    for r in wrecs:
                        inc = orjson.loads(r.value)
                        seen.setdefault(inc["id"], (time.time(), inc["opened_at"], inc["service"]))
            stop.set()
            producer.join()
            c.drain()
            watch.close()
        delays = []
        for f in faults:
            hits = [received - f.start for received, opened, service in seen.values()
                    if f.start - 10 <= opened <= f.end and service == f.service]
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
            broker.stop()
