"""`vigil bench kafka`: `vigil consume` against a bare consumer loop on the same local broker and
topic, a bare loop of each client (kafka-python, confluent-kafka) in records per CPU-second, and
end-to-end latency at a steady rate."""

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
class BareFigures:
    """One bare consumer (poll + orjson.loads, its own group) read the whole topic."""

    client: str
    records: int
    wall_s: float
    cpu_s: float  # process CPU time (librdkafka's threads included)

    @property
    def per_s(self) -> float:
        return self.records / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def per_cpu_s(self) -> float:
        return self.records / self.cpu_s if self.cpu_s > 0 else float("nan")


def bare_kafka_python(addr: str, topic: str, events: int, group: str) -> BareFigures:
    """kafka-python: poll up to 5000 records, decode each value (wall time from the first record;
    CPU from before the consumer is made, so what its threads fetch ahead counts)."""
    from kafka import KafkaConsumer

    c0 = time.process_time()
    bare = KafkaConsumer(topic, bootstrap_servers=addr, group_id=group,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         fetch_max_wait_ms=100, session_timeout_ms=3000,
                         heartbeat_interval_ms=500, max_poll_interval_ms=30000)
    n, t0 = 0, 0.0
    try:
        while n < events:
            for recs in bare.poll(timeout_ms=500, max_records=5000).values():
                if not n:
                    t0 = time.perf_counter()
                for r in recs:
                    orjson.loads(r.value)
                n += len(recs)
        return BareFigures("kafka-python", n, time.perf_counter() - t0, time.process_time() - c0)
    finally:
        bare.close()


def bare_confluent(addr: str, topic: str, events: int, group: str) -> BareFigures:
    """confluent-kafka: consume up to 5000 messages, decode each value (wall time from the first;
    CPU from before the consumer is made: librdkafka's threads fetch ahead of `consume`)."""
    from confluent_kafka import Consumer

    c0 = time.process_time()
    bare = Consumer({"bootstrap.servers": addr, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "fetch.wait.max.ms": 100, "session.timeout.ms": 6000,
                     "heartbeat.interval.ms": 500, "max.poll.interval.ms": 30000})
    bare.subscribe([topic])
    n, t0 = 0, 0.0
    try:
        while n < events:
            msgs = bare.consume(5000, 0.5)
            for m in msgs:
                if m.error() is not None:
                    continue
                if not n:
                    t0 = time.perf_counter()
                orjson.loads(m.value() or b"null")
                n += 1
        return BareFigures("confluent-kafka", n, time.perf_counter() - t0,
                           time.process_time() - c0)
    finally:
        bare.close()


def _send_lines(prod: Any, topic: str, lines: list[bytes]) -> None:
    """The log lines onto `topic`, keyed as request ids spread them over partitions; flushed."""
    for i, line in enumerate(lines):
        prod.send(topic, key=str(i % 9973).encode(), value=line)
    prod.flush()


BARE = {"kafka-python": bare_kafka_python, "confluent": bare_confluent}


def bench_clients(events: int = 200_000, partitions: int = 3, bootstrap: str | None = None,
                  clients: tuple[str, ...] = ("kafka-python", "confluent")) -> list[BareFigures]:
    """Only the bare loops: each client reads the same topic of `events` log lines in its own
    group, one after the other, on one broker (started here unless `bootstrap`)."""
    from kafka import KafkaProducer

    broker = None if bootstrap else Broker(partitions=partitions)
    addr = bootstrap or (broker.addr if broker else "")
    try:
        topic = f"bench-clients-{int(time.time())}"
        if broker is not None:
            broker.topics(topic)
        else:
            from kafka import KafkaAdminClient
            from kafka.admin import NewTopic
            admin = KafkaAdminClient(bootstrap_servers=addr)
            admin.create_topics([NewTopic(topic, partitions, 1)])
            admin.close()
        lines, _ = simulated_lines(events, seed=11)
        prod = KafkaProducer(bootstrap_servers=addr, linger_ms=20, batch_size=256 * 1024)
        _send_lines(prod, topic, lines)
        prod.close()
        return [BARE[c](addr, topic, len(lines), f"bare-{c}-{topic}") for c in clients]
    finally:
        if broker is not None:
            broker.stop()


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
    bare: list[BareFigures]  # a bare loop of each client over the same topic, one after another
    vigil: list[BareFigures]  # vigil consume with each client (kafka.client), same topic


def bench_kafka(events: int = 60_000, partitions: int = 3, steady_rate: float = 1000.0,
                steady_seconds: float = 45.0, bootstrap: str | None = None,
                clients: tuple[str, ...] = ("kafka-python", "confluent")) -> KafkaFigures:
    """Throughput of `vigil consume` against a bare loop of each of `clients` on the same
    broker and topic, then end-to-end latency at a steady produce rate with injected faults
    """
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
        _send_lines(prod, logs, lines)
        session = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500,
                   "max_poll_interval_ms": 30000}

        # Bare loops, each client in its own group over the same topic: poll and decode JSON,
        # nothing else (timed from the first record). The first is the comparison's "bare".
        bares = [BARE[c](addr, logs, len(lines), f"bare-{c}-{run_id}") for c in clients]
        bare_s = bares[0].wall_s

        def consumer_for(topic: str, group: str,
                         on_batch: Callable[[dict[Any, list[Any]]], None] | None = None,
                         client: str = clients[0]) -> LogConsumer:
            cfg = VigilConfig()
            k = cfg.kafka
            k.client = "confluent" if client == "confluent" else "kafka-python"
            k.bootstrap_servers, k.topics, k.group_id = [addr], [topic], group
            k.anomalies_topic, k.incidents_topic, k.dead_letter_topic = outs
            k.session_timeout_ms, k.heartbeat_interval_ms, k.max_poll_interval_ms = 3000, 500, 30000
            k.poll_timeout_ms = 100
            k.checkpoint_dir = Path(tempfile_dir) / group
            return LogConsumer(cfg, on_batch=on_batch)

        import tempfile
        with tempfile.TemporaryDirectory() as tempfile_dir:
            # vigil consume with each client, each in its own group over the same topic (timed
            # from the end of its first batch).
            vigils: list[BareFigures] = []
            for client in clients:
                c = consumer_for(logs, f"vigil-{client}-{run_id}", client=client)
                c.connect()
                n, t0, c0 = 0, 0.0, 0.0
                while n < events:
                    got = c.poll_once()
                    if got and not t0:
                        t0, c0 = time.perf_counter(), time.process_time()
                    n += got
                vigils.append(BareFigures(client, n, time.perf_counter() - t0,
                                          time.process_time() - c0))
                c.drain()
            vigil_s = vigils[0].wall_s

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
            incident_delays_s=delays, bare=bares, vigil=vigils)
    finally:
        if broker is not None:
            broker.stop()
