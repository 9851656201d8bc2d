"""`vigil bench fleet`: N `vigil consume --role all` processes and two `vigil remediate`
replicas on one local Tansu broker and one real PostgreSQL audit, acting through a real HTTP
hook on loopback; one of the consumers is killed (-9) while an incident is open.

The figures (`FleetFigures`):
- `events_per_s`: events produced / wall seconds from the first produce until every merge task
  has sent windows through the last event time (minus 60 s) to the judge topic (the wait for
  the incident, 3 s for its snapshot and the group's takeover after the kill are in it: a
  fleet's figure, not the stages' peak);
- `client_cpu_us_per_record`: CPU microseconds per record of a bare loop (poll +
  orjson.loads) of the client the consumers ran with (`client`, `kafka.client`: confluent by
  default); `kafka_python_cpu_us_per_record`, `confluent_cpu_us_per_record`: each client's, over
  one topic of `client_records` simulated log lines (200,000 by default, so the consumer's start
  and group join, a fixed cost, do not stand in for a per-record one), in the same run on the
  same broker, after the fleet stopped, so they do not compete for the cores; CPU counted from
  before each consumer is made (`detector.bench.kafka`), so what librdkafka's threads fetch
  ahead is in it;
- `process_cpu_us_per_record`: the CPU (utime + stime, /proc) of the N consumer processes, the
  killed one up to its kill, per event produced (each read at least once: replays after the
  kill and the merge and incidents stages are in the numerator, that is the point);
- `incidents_per_root_cause`: the most distinct incident ids any one root-cause service got on
  the incidents topic (1: the fleet opened one incident per fault, the kill included);
- `actions_per_episode_rung`: the most audit rows of actions run (`acted`) or planned
  (`dry_run`) any one (episode, rung) got in PostgreSQL (1: never acted twice);
- `events_lost`: events of the single-process windows (`Pipeline` on the same lines) missing
  from the merged windows on the judge topic (last copy of each kept), both restricted to the
  windows every merge task has closed; counted per (window, service), negative is never
  offset by positive (an event counted twice is reported in `events_doubled`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from detector.bench.kafka import bench_clients
from detector.bench.postgres import PostgresServer
from detector.bench.servers import Broker
from detector.config import VigilConfig
from detector.decode.timestamps import epoch_seconds
from detector.pipeline import Pipeline
from detector.simulate.runs import simulated_lines

LOGS_PARTITIONS = 4
TRIGGERS = "vigil.triggers"
ACTION_VERDICTS = ("acted", "dry_run")


@dataclass(slots=True)
class FleetFigures:
    """One fleet run (see the module docstring for each figure's meaning)."""

    consumers: int
    events: int
    events_per_s: float
    client: str  # kafka.client of the consumers
    client_cpu_us_per_record: float
    kafka_python_cpu_us_per_record: float
    confluent_cpu_us_per_record: float
    client_records: int  # what the bare client loops read
    process_cpu_us_per_record: float
    incidents_per_root_cause: int
    actions_per_episode_rung: int
    events_lost: int
    events_doubled: int
    incidents: int  # distinct incident ids
    actions: int  # audit rows acted / dry_run
    hook_calls: int  # requests the loopback HTTP target answered
    killed: str | None  # the consumer killed -9 (None with one consumer)
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- the HTTP target the policy's hooks call -------------------------------------------------
class HookTarget:
    """A loopback HTTP server answering 200 to every POST, counting them (the actions that
    really happened)."""

    def __init__(self) -> None:
        calls: list[str] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                with lock:
                    calls.append(self.path)
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.calls = calls
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def policy_text(url: str) -> str:
    """Two rungs on every incident: throttle (an HTTP POST), and if the incident has not
    resolved 3 s later, restart (another POST)."""
    return (
        "rules:\n"
        "  - name: fleet\n"
        "    match: {}\n"
        "    ladder:\n"
        f"      - {{name: throttle, hook: http, wait_s: 3, params: {{url: \"{url}/throttle/"
        "${labels.service}\", json: {limit: 5}}}\n"
        f"      - {{name: restart, hook: http, wait_s: 0, params: {{url: \"{url}/restart/"
        "${labels.service}\"}, verify: {resolved: false}}\n"
        "guards: {cooldown_s: 0, retries: {attempts: 0}}\n")


# ---- processes -------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc), 0.0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def consumer_env(addr: str, work: Path) -> dict[str, str]:
    """The env of one `vigil consume --role all` (as the topology's Kafka tests set it)."""
    return {
        **os.environ,
        "VIGIL_KAFKA__BOOTSTRAP_SERVERS": json.dumps([addr]),
        "VIGIL_KAFKA__TOPICS": '["logs"]', "VIGIL_KAFKA__GROUP_ID": "fleet",
        "VIGIL_KAFKA__CHECKPOINT_DIR": str(work / "ckpt"), "VIGIL_KAFKA__HTTP_PORT": "0",
        "VIGIL_KAFKA__SESSION_TIMEOUT_MS": "4000", "VIGIL_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "VIGIL_KAFKA__MAX_POLL_INTERVAL_MS": "20000", "VIGIL_KAFKA__POLL_TIMEOUT_MS": "100",
        "VIGIL_TOPOLOGY__SNAPSHOT_EVERY_S": "2",
        "VIGIL_TOPOLOGY__CHUNK_RECORDS": "2000",
    }


class Fleet:
    """The child processes of a run, each in its own working directory under `tmp`, its
    output in `tmp/<name>.log`."""

    def __init__(self, tmp: Path, addr: str, dsn: str, policy: Path) -> None:
        self.tmp, self.addr, self.dsn, self.policy = tmp, addr, dsn, policy
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.consumers: list[str] = []
        self.cpu: dict[str, float] = {}  # consumer -> CPU seconds, read before it exited

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        work = self.tmp / name
        work.mkdir(parents=True, exist_ok=True)
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "detector", *args], env=env,
                                            cwd=work, stdout=log, stderr=log)
        log.close()

    def consumer(self, name: str) -> None:
        self._spawn(name, ["consume", "--role", "all", "--triggers-topic", TRIGGERS],
                    consumer_env(self.addr, self.tmp / name))
        self.consumers.append(name)

    def remediator(self, name: str) -> None:
        env = {**consumer_env(self.addr, self.tmp / name), "VIGIL_SERVE__AUDIT_DSN": self.dsn}
        self._spawn(name, ["remediate", "--topic", TRIGGERS, "--policy", str(self.policy),
                           "--act", "--http-port", "0", "--group", "fleet-remediate"], env)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def owner(self) -> str | None:
        """The consumer whose last incidents assignment holds the judge partition."""
        for name in self.consumers:
            lines = [x for x in self.log(name).splitlines() if "incidents: assigned" in x]
            if lines and "vigil.judge/0" in lines[-1]:
                return name
        return None

    def kill(self, name: str) -> None:
        p = self.procs[name]
        self.cpu[name] = cpu_seconds(p.pid)
        p.kill()
        p.wait()

    def stop(self) -> None:
        """CPU of every consumer still running is read, then SIGTERM to all (drain), kill what
        has not exited 30 s later."""
        for name in self.consumers:
            p = self.procs[name]
            if p.poll() is None:
                self.cpu[name] = cpu_seconds(p.pid)
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---- reading the topics ----------------------------------------------------------------------
def produce(b: Broker, lines: list[bytes]) -> None:
    """The lines onto `logs`, keyed by request id (a line without one: no key)."""
    recs = []
    for line in lines:
        rid = orjson.loads(line).get("request_id")
        recs.append((str(rid).encode() if rid else None, line))
    b.produce("logs", recs)


def incidents(b: Broker, timeout: float = 3) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in b.read("vigil.incidents", 10**9, timeout=timeout)]


def judged(addr: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Every scored-windows record the merge tasks sent to the judge topic (one partition)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=addr, enable_auto_commit=False)
    tp = TopicPartition("vigil.judge", 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    end = c.end_offsets([tp])[tp]
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while c.position(tp) < end and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=300).values():
            out.extend(orjson.loads(r.value) for r in recs)
    c.close()
    return [r for r in out if r.get("t") == "s"]


def merged_through(scored: list[dict[str, Any]], tasks: int) -> float:
    """The lowest `through` of the merge tasks (-inf until all `tasks` have sent one)."""
    through: dict[str, float] = {}
    for r in scored:
        if r.get("through") is not None:
            t = str(r["task"])
            through[t] = max(through.get(t, float("-inf")), float(r["through"]))
    return min(through.values()) if len(through) == tasks else float("-inf")


def window_counts(scored: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, int]]:
    """(merge task, window start) -> events per service, the last copy of each kept."""
    out: dict[tuple[str, float], dict[str, int]] = {}
    for rec in scored:
        for w in rec["w"]:
            out[(str(rec["task"]), float(w["start"]))] = {str(s): int(c)
                                                         for s, c in w["counts"].items()}
    return out


def lost_and_doubled(scored: list[dict[str, Any]], lines: list[bytes]) -> tuple[int, int]:
    """(events missing, events counted twice) of the merged windows against one `Pipeline`
    on the same lines, up to the last window every merge task has closed."""
    got = window_counts(scored)
    if not got:
        pipe = Pipeline(VigilConfig())
        rows = pipe.process(lines).windows + pipe.finish().windows
        return int(sum(int(c) for r in rows for c in r.counts.tolist())), 0
    bound = min(max(s for t, s in got if t == task) for task in {t for t, _ in got})
    merged: dict[tuple[float, str], int] = {}
    for (_, s), counts in got.items():
        if s <= bound:
            for svc, c in counts.items():
                merged[(s, svc)] = merged.get((s, svc), 0) + c
    pipe = Pipeline(VigilConfig())
    rows = pipe.process(lines).windows + pipe.finish().windows
    want = {(r.start, svc): int(c) for r in rows
            for svc, c in zip(r.services, r.counts.tolist(), strict=True) if c and r.start <= bound}
    lost = sum(max(0, c - merged.get(k, 0)) for k, c in want.items())
    doubled = sum(max(0, c - want.get(k, 0)) for k, c in merged.items())
    return lost, doubled


def incidents_per_root_cause(found: list[dict[str, Any]]) -> int:
    """The most distinct incident ids any one root-cause service (the top candidate, else the
    incident's service) got."""
    ids: dict[str, set[str]] = {}
    for i in found:
        ranked = [r for r in i.get("root_cause") or [] if isinstance(r, dict)]
        root = str(ranked[0]["service"]) if ranked else str(i.get("service"))
        ids.setdefault(root, set()).add(str(i["id"]))
    return max((len(v) for v in ids.values()), default=0)


def audit_actions(dsn: str) -> list[tuple[str, int, str]]:
    """(episode, rung, verdict) of every audited action run or planned."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute("SELECT episode, rung, verdict FROM audit WHERE verdict = ANY(%s)",
                                (list(ACTION_VERDICTS),)).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [(str(e), int(r if r is not None else -1), str(v)) for e, r, v in rows]


def most_per_episode_rung(rows: list[tuple[str, int, str]]) -> int:
    counts: dict[tuple[str, int], int] = {}
    for e, r, _ in rows:
        counts[(e, r)] = counts.get((e, r), 0) + 1
    return max(counts.values(), default=0)


def _until(pred: Callable[[], bool], timeout: float, every: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return pred()


@contextlib.contextmanager
def _servers() -> Iterator[tuple[Broker, PostgresServer, str, HookTarget]]:
    pg = PostgresServer.find()
    if isinstance(pg, str):
        raise RuntimeError(pg)
    pg.start()
    broker: Broker | None = None
    hook: HookTarget | None = None
    try:
        dsn = pg.new_database()
        broker = Broker(partitions=LOGS_PARTITIONS)
        broker.topics("logs", "vigil.anomalies", "vigil.incidents", "vigil.dead-letters")
        broker.topics("vigil.partials", TRIGGERS, partitions=2)
        broker.topics("vigil.judge", "vigil.state", partitions=1)
        hook = HookTarget()
        yield broker, pg, dsn, hook
    finally:
        if hook is not None:
            hook.stop()
        if broker is not None:
            broker.stop()
        pg.stop()


# ---- the run ---------------------------------------------------------------------------------
def bench_fleet(consumers: int = 2, events: int = 60_000, incident_timeout_s: float = 150,
                merge_timeout_s: float = 180, keep: Path | None = None,
                client_records: int = 200_000,
                say: Callable[[str], None] = lambda _: None) -> FleetFigures:
    """One fleet run (see the module docstring). `keep`: the processes' working directories
    and logs go there instead of a temporary directory removed at the end."""
    lines, _ = simulated_lines(events, seed=5, scenario="error_burst")
    cut = int(len(lines) * 0.75)  # the fault runs from 64% to 81% of the run
    last = max(epoch_seconds(orjson.loads(x)["ts"]) for x in lines[-50:])
    with contextlib.ExitStack() as stack:
        tmp = keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-fleet-")))
        broker, _pg, dsn, hook = stack.enter_context(_servers())
        policy = tmp / "policy.yaml"
        policy.write_text(policy_text(hook.url))
        fleet = Fleet(tmp, broker.addr, dsn, policy)
        killed: str | None = None
        try:
            for i in range(consumers):
                fleet.consumer(f"c{i}")
            for i in range(2):
                fleet.remediator(f"r{i}")
            say(f"{consumers} consumers, 2 remediate replicas; producing {cut:,} events")
            t0 = time.perf_counter()
            produce(broker, lines[:cut])
            if not _until(lambda: any(i["status"] == "open" for i in incidents(broker)),
                          incident_timeout_s, 1):
                raise RuntimeError("no incident opened within "
                                   f"{incident_timeout_s:g}s: {fleet.log('c0')[-2000:]}")
            if consumers > 1:
                time.sleep(3)  # a snapshot of the owner holds the open incident
                killed = fleet.owner() or fleet.consumers[-1]
                say(f"incident open; kill -9 {killed}")
                fleet.kill(killed)
            produce(broker, lines[cut:])
            say(f"produced {len(lines):,}; waiting for the merged windows")
            holder: dict[str, list[dict[str, Any]]] = {"scored": []}

            def caught_up() -> bool:
                holder["scored"] = judged(broker.addr)
                return merged_through(holder["scored"], 2) >= last - 60

            if not _until(caught_up, merge_timeout_s, 2):
                raise RuntimeError(f"the merge tasks did not reach the last event within "
                                   f"{merge_timeout_s:g}s")
            wall = time.perf_counter() - t0
            found = incidents(broker)
            # The remediation of what opened: every episode acted on, then a few seconds in
            # which a second action on any (episode, rung) would show.
            episodes = {str(i["id"]) for i in found}
            _until(lambda: len({e.split("@")[0] for e, _, _ in audit_actions(dsn)})
                   >= len(episodes), 30, 1)
            time.sleep(6)
        finally:
            fleet.stop()
        actions = audit_actions(dsn)
        scored = holder["scored"]
        say(f"bare client loops over {client_records:,} records")
        kp, cf = bench_clients(client_records, bootstrap=broker.addr)
        lost, doubled = lost_and_doubled(scored, lines)
        kp_us, cf_us = (1e6 * b.cpu_s / max(b.records, 1) for b in (kp, cf))
        client = VigilConfig().kafka.client  # what the consumers read from the environment
        return FleetFigures(
            consumers=consumers, events=len(lines), events_per_s=len(lines) / wall,
            client=client, client_cpu_us_per_record=cf_us if client == "confluent" else kp_us,
            kafka_python_cpu_us_per_record=kp_us, confluent_cpu_us_per_record=cf_us,
            client_records=kp.records,
            process_cpu_us_per_record=1e6 * sum(fleet.cpu.values()) / len(lines),
            incidents_per_root_cause=incidents_per_root_cause(found),
            actions_per_episode_rung=most_per_episode_rung(actions),
            events_lost=lost, events_doubled=doubled, incidents=len(episodes),
            actions=len(actions), hook_calls=len(hook.calls), killed=killed, wall_s=wall)
