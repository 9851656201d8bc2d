"""`vigil consume --role ingest|merge|incidents|all`: each stage a consumer group of its own
(group `<kafka.group_id>-<role>`), its tasks one per partition, wired by topics.

- ingest reads `kafka.topics` (logs keyed by request id) in chunks whose ends are deterministic
  (`ChunkCutter`); per chunk it sends the partials to the partials topic (by service, each to
  the partition `crc32(service) % partitions`), flushes, then a watermark record to every
  partials partition and the chunk's verdicts to the judge topic, and its dead letters.
- merge reads the partials topic: a chunk's partials are held until its watermark arrives, then
  folded in once (a chunk whose end a source has passed is a copy: dropped); each poll closes
  and scores the windows the slowest source has passed and sends them to the judge topic.
- incidents reads the judge topic (one partition: one active owner, the others stand by) and
  writes incident changes (and triggers, with `--triggers-topic`) as `vigil consume` does. The
  owner also runs the Prometheus poller (`prometheus.queries`), a singleton by construction: its
  progress and models go into the snapshot with the incidents they produced, so a new owner goes
  on from there, warm, with no gap and no second poller.

Every task snapshots its state with its position to the state topic (`topology.state_topic`)
every `topology.snapshot_every_s` and when the process drains, then commits that position. A
task assigned on any host loads the newest snapshot and replays from its position: at
least once, and every record downstream dedupes on (source, chunk end). A position is committed
only after its snapshot is written, so the committed offset is never past the newest snapshot.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from detector.config import VigilConfig
from detector.events import EventBatch
from detector.pipeline import BatchOutcome
from detector.runtime.metric_feed import MetricFeed
from detector.runtime.state_topic import StateTopic
from detector.runtime.watch import MetricWatcher
from detector.sinks.kafka import KafkaOutputs
from detector.sources.kafka import LogSource, Partition, log_source
from detector.topology import records, snapshots
from detector.topology.incidents import IncidentStage
from detector.topology.ingest import IngestStage
from detector.topology.merge import MergeStage
from detector.windows.partials import WindowPartial

log = logging.getLogger("vigil.topology")


def owner_partition(service: str, partitions: int) -> int:
    """The partials partition (merge task) that owns `service`.

    >>> owner_partition("cart", 4) == owner_partition("cart", 4)
    True
    """
    return zlib.crc32(service.encode()) % partitions


@dataclass
class TaskCounts:
    records: int = 0
    bad_records: int = 0  # not ours: skipped, counted
    duplicates: int = 0  # copies sent again after a restart, dropped
    overlaps: int = 0  # chunks that overlapped one already folded in (an idle cut replayed)
    snapshots: int = 0
    restored: int = 0
    cold: int = 0  # snapshots that did not load


class StageTask:
    """The consumer loop every role shares: assignment restores from snapshots, revocation
    and a timer snapshot and commit."""

    role = ""

    def __init__(self, cfg: VigilConfig, producer: KafkaProducer, store: StateTopic,
                 topics: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.k = cfg.kafka
        self.t = cfg.topology
        self.producer = producer
        self.store = store
        self.clock = clock
        self.counts = TaskCounts()
        # The role's own group over its topics, with the client of kafka.client.
        k = self.k.model_copy(update={"group_id": f"{self.k.group_id}-{self.role}",
                                      "topics": topics, "auto_offset_reset": "earliest"})
        self.source: LogSource = log_source(k, self.assigned, self.revoked)
        self.source.connect()
        self.tasks: dict[Partition, Any] = {}
        self.mine: set[Partition] = set()
        self._pending: set[Partition] = set()
        self._floors: dict[Partition, int] = {}  # restored: records below are in the state
        self._last_snapshot = clock()

    def key(self, tp: Partition) -> str:
        return f"{self.role}/{tp.topic}/{tp.partition}"

    # ---- to implement ---------------------------------------------------------------------
    def new_task(self, tp: Partition) -> Any:
        raise NotImplementedError

    def task_state(self, task: Any) -> dict[str, Any]:
        raise NotImplementedError

    def load_task(self, task: Any, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def position(self, tp: Partition, task: Any) -> int | None:
        """The offset the task's state covers up to (None: nothing processed yet)."""
        return task.done  # type: ignore[no-any-return]

    def set_position(self, task: Any, offset: int) -> None:
        task.done = offset

    def handle(self, tp: Partition, task: Any, recs: list[Any]) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        """After every poll, records or not (closing on time, idle flushes)."""

    def resumed(self, tasks: dict[Partition, tuple[Any, int]]) -> None:
        """Tasks loaded from their snapshots, each about to replay from its offset."""

    # ---- the loop ---------------------------------------------------------------------------
    def poll_once(self) -> int:
        batch = self.source.poll()
        if self._pending:
            self._start(self._pending)
            self._pending = set()
        n = 0
        for tp, recs in batch.items():
            if tp not in self.mine:
                continue  # revoked inside this poll
            floor = self._floors.get(tp)
            if floor is not None:  # committed before its snapshot: skip what the state holds
                recs = [r for r in recs if r.offset >= floor]
                if not recs:
                    continue
                del self._floors[tp]
            task = self.tasks.get(tp)
            if task is None:  # assigned without the callback (should not happen): start it
                self._start({tp})
                task = self.tasks[tp]
            self.handle(tp, task, recs)
            n += len(recs)
        self.counts.records += n
        self.tick()
        if self.clock() - self._last_snapshot >= self.t.snapshot_every_s:
            self.snapshot_all()
        return n

    def assigned(self, tps: set[Partition]) -> None:
        """From inside `poll` (kafka-python's IO thread, where no blocking call may run): the
        tasks are started once `poll` returns."""
        tps = {Partition(t.topic, t.partition) for t in tps}
        self.mine |= tps
        self._pending |= {tp for tp in tps if tp not in self.tasks}
        log.info("%s: assigned %s", self.role, sorted(f"{t.topic}/{t.partition}" for t in tps))

    def _start(self, tps: set[Partition]) -> None:
        """Start tasks from their snapshots. A snapshot is written before its position is
        committed, so the group's committed offset is the snapshot's, or before it (a crash in
        between): reading resumes there and what the snapshot already holds is skipped."""
        new = [tp for tp in tps if tp not in self.tasks and tp in self.mine]
        found = self.store.load({self.key(tp) for tp in new}) if new else {}
        resumed: dict[Partition, tuple[Any, int]] = {}
        for tp in new:
            task = self.new_task(tp)
            snap = found.get(self.key(tp))
            if snap is not None:
                offsets, state = snap
                try:
                    self.load_task(task, state)
                    self.set_position(task, offsets[tp.partition])
                    resumed[tp] = (task, offsets[tp.partition])
                    self._floors[tp] = offsets[tp.partition]
                    self.counts.restored += 1
                    log.info("%s: restored %s at offset %d", self.role, self.key(tp),
                             offsets[tp.partition])
                except (snapshots.SnapshotError, KeyError) as exc:
                    log.error("%s: snapshot of %s unusable (%s); starting cold", self.role,
                              self.key(tp), exc)
                    self.counts.cold += 1
                    resumed.pop(tp, None)
                    task = self.new_task(tp)
            self.tasks[tp] = task
        if resumed:
            self.resumed(resumed)

    def revoked(self, tps: set[Partition]) -> None:
        """From inside `poll`, on kafka-python's IO thread, where nothing may wait on the
        network (a flush there stalls every client of the process): the tasks are dropped.
        Their next owner resumes from the last snapshot and replays; what it sends again
        carries the same (source, chunk end) keys, which downstream drops."""
        tps = {Partition(t.topic, t.partition) for t in tps}
        self._pending -= tps
        self.mine -= tps
        for tp in tps:
            self.tasks.pop(tp, None)
            self._floors.pop(tp, None)

    def snapshot(self, tp: Partition) -> None:
        task = self.tasks[tp]
        pos = self.position(tp, task)
        if pos is None:
            return
        self.producer.flush(timeout=30)  # what the state covers is out before the state
        self.store.save(self.key(tp), {tp.partition: pos}, self.task_state(task))
        try:
            self.source.commit({tp: pos})
        except KafkaError as exc:  # revoked meanwhile: the snapshot is what the next owner uses
            log.info("%s: commit of %s refused (%s)", self.role, self.key(tp), exc)
        self.counts.snapshots += 1

    def snapshot_all(self) -> None:
        for tp in list(self.tasks):
            self.snapshot(tp)
        self._last_snapshot = self.clock()

    def close(self, snapshot: bool = True) -> None:
        """Leave the group; with `snapshot`, snapshot and commit every task first (drain)."""
        if snapshot:
            self.snapshot_all()
        self.source.close()


# ---- ingest ----------------------------------------------------------------------------------
@dataclass
class ChunkCutter:
    """Records of one partition in, chunks out. A chunk ends after `records` records or before
    the first record whose Kafka timestamp is `span_ms` past the chunk's first: both follow from
    the log alone, so a replay cuts the same chunks. `flush_idle` cuts what waits when nothing
    has come for a while, a boundary the log does not hold: so a restored task is given the
    ends its predecessor cut (`ends`, read from the judge topic's chunk records) and cuts there
    first, by those alone.

    >>> c = ChunkCutter(records=3, span_ms=1000)
    >>> class R:
    ...     def __init__(self, o, ts): self.offset, self.timestamp, self.value = o, ts, b"x"
    >>> [[r.offset for r in ch] for ch in c.add([R(0, 0), R(1, 10), R(2, 20), R(3, 30), R(4, 2000)])]
    [[0, 1, 2], [3]]
    >>> [r.offset for r in c.pending]
    [4]
    >>> c = ChunkCutter(records=3, span_ms=1000, ends=deque([2, 4]))  # a replay: cut as before
    >>> [[r.offset for r in ch] for ch in c.add([R(0, 0), R(1, 10), R(2, 20), R(3, 30), R(4, 40)])]
    [[0, 1], [2, 3]]
    """

    records: int
    span_ms: int
    pending: list[Any] = field(default_factory=list)
    last_add: float = 0.0
    ends: deque[int] = field(default_factory=deque)  # chunk ends to repeat, oldest first

    def add(self, recs: list[Any], now: float = 0.0) -> list[list[Any]]:
        out = []
        for r in recs:
            self._drop_passed(r.offset)
            if self.pending and self._ends_before(r):
                out.append(self.pending)
                self.pending = []
            self.pending.append(r)
        if self.pending and (self.ends[0] == self.pending[-1].offset + 1 if self.ends
                             else len(self.pending) >= self.records):
            out.append(self.pending)
            self.pending = []
        if recs:
            self.last_add = now
        return out

    def _drop_passed(self, offset: int) -> None:
        """Forget ends at or before where the chunk in hand starts (or `offset`, with none)."""
        start = self.pending[0].offset if self.pending else offset
        while self.ends and self.ends[0] <= start:
            self.ends.popleft()

    def _ends_before(self, r: Any) -> bool:
        if self.ends:
            return bool(r.offset >= self.ends[0])
        return (len(self.pending) >= self.records
                or r.timestamp - self.pending[0].timestamp >= self.span_ms)

    def flush_idle(self, now: float, idle_s: float) -> list[Any] | None:
        if self.pending:
            self._drop_passed(self.pending[0].offset)
        if self.pending and not self.ends and now - self.last_add >= idle_s:
            out, self.pending = self.pending, []
            return out
        return None


@dataclass
class IngestTask:
    stage: IngestStage
    cutter: ChunkCutter
    said_idle: float = -math.inf  # when it last told merge it is caught up
    done: int | None = None  # offset after the last chunk processed


class IngestRole(StageTask):
    role = "ingest"

    def __init__(self, cfg: VigilConfig, producer: KafkaProducer, store: StateTopic,
                 outputs: KafkaOutputs, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(cfg, producer, store, list(cfg.kafka.topics), clock)
        self.outputs = outputs
        self.partials_partitions = self.source.partitions_of(self.t.partials_topic)
        if not self.partials_partitions:
            raise KafkaError(f"topic {self.t.partials_topic} not found")
        self.chunks = 0

    def new_task(self, tp: Partition) -> IngestTask:
        return IngestTask(IngestStage(self.cfg),
                          ChunkCutter(self.t.chunk_records, self.t.chunk_ms, last_add=self.clock()))

    def task_state(self, task: IngestTask) -> dict[str, Any]:
        return snapshots.ingest_state(task.stage)

    def load_task(self, task: IngestTask, state: dict[str, Any]) -> None:
        snapshots.load_ingest(task.stage, state)

    def resumed(self, tasks: dict[Partition, tuple[Any, int]]) -> None:
        """The chunks their predecessors cut past the snapshots are cut again at the same ends
        (read, in one pass, from the judge topic, where every chunk's record names them), so
        what a replay sends again has the keys merge and incidents already hold."""
        names = {tp: f"{tp.topic}/{tp.partition}" for tp in tasks}
        cut = self.store.chunks(self.t.judge_topic, set(names.values()))
        for tp, (task, offset) in tasks.items():
            ends = sorted(e for first, e in cut[names[tp]] if first >= offset)
            task.cutter.ends = deque(ends)
            if ends:
                log.info("ingest: %s replays %d chunk(s) at the ends cut before", names[tp],
                         len(ends))

    def handle(self, tp: Partition, task: IngestTask, recs: list[Any]) -> None:
        for chunk in task.cutter.add(recs, self.clock()):
            self._chunk(tp, task, chunk)

    def tick(self) -> None:
        now = self.clock()
        for tp, task in self.tasks.items():
            chunk = task.cutter.flush_idle(now, self.t.idle_flush_s)
            if chunk:
                self._chunk(tp, task, chunk)
        quiet = [tp for tp, task in self.tasks.items() if not task.cutter.pending
                 and now - task.cutter.last_add >= self.t.idle_flush_s
                 and now - task.said_idle >= self.t.idle_flush_s and tp not in self._floors]
        if quiet:
            lag = self.source.lag(set(quiet))
            for tp in quiet:
                if lag.get(tp) == 0:  # read to the end, nothing pending: say so
                    self._say_idle(tp, self.tasks[tp], now)

    def _say_idle(self, tp: Partition, task: IngestTask, now: float) -> None:
        """Tell every merge task this source is caught up, so windows need not wait for it (a
        task that dies says nothing, so its partition holds them back, up to max_wait_s)."""
        src = f"{tp.topic}/{tp.partition}"
        wm = task.stage.windows.max_ts
        pos = task.done if task.done is not None else -1
        value = records.encode({"t": "i", "src": src, "first": pos, "end": pos,
                                "wm": wm if math.isfinite(wm) else None})
        for part in range(self.partials_partitions):
            self.producer.send(self.t.partials_topic, partition=part, key=src.encode(),
                               value=value)
        task.said_idle = now

    def _chunk(self, tp: Partition, task: IngestTask, chunk: list[Any]) -> None:
        src = f"{tp.topic}/{tp.partition}"
        first, end = chunk[0].offset, chunk[-1].offset + 1
        lines = [r.value if r.value is not None else b"" for r in chunk]
        out = task.stage.process(lines, source=src, positions=[r.offset for r in chunk])
        t = self.t
        n = self.partials_partitions
        by_part: dict[int, list[WindowPartial]] = {}
        for p in out.partials:
            by_part.setdefault(owner_partition(p.service, n), []).append(p)
        send = self.producer.send
        for part, ps in by_part.items():
            send(t.partials_topic, partition=part, key=src.encode(), value=records.encode(
                {"t": "p", "src": src, "first": first, "end": end,
                 "p": [p.to_dict() for p in ps]}))
        self.outputs.write(tp.topic, tp.partition, BatchOutcome(
            events=EventBatch.empty(), dead=out.dead), {r.offset: r.key for r in chunk})
        self.producer.flush(timeout=30)  # partials before the watermark that vouches for them
        wm = out.watermark if math.isfinite(out.watermark) else None
        for part in range(n):
            send(t.partials_topic, partition=part, key=src.encode(), value=records.encode(
                {"t": "w", "src": src, "first": first, "end": end, "wm": wm}))
        send(t.judge_topic, partition=0, key=src.encode(), value=records.encode(
            {"t": "v", "src": src, "first": first, "end": end, "v": out.verdicts, "e": out.edges}))
        self.outputs.flush(timeout=30)
        self.producer.flush(timeout=30)
        task.done = end
        self.chunks += 1


# ---- merge -----------------------------------------------------------------------------------
@dataclass
class MergeTask:
    stage: MergeStage
    # source -> (first, end) of a chunk -> its partials for this task, until its watermark (a
    # chunk's record sent again replaces the one before: one record per chunk and partition)
    held: dict[str, dict[tuple[int, int], list[WindowPartial]]] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)  # source -> end of its last chunk
    done: int | None = None
    through: float = -math.inf  # what was last sent to the judge topic


class MergeRole(StageTask):
    role = "merge"

    def __init__(self, cfg: VigilConfig, producer: KafkaProducer, store: StateTopic,
                 outputs: KafkaOutputs, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(cfg, producer, store, [cfg.topology.partials_topic], clock)
        self.outputs = outputs
        self.sources = [f"{topic}/{p}" for topic in cfg.kafka.topics
                        for p in range(self.source.partitions_of(topic))]
        self.late_events = 0

    def new_task(self, tp: Partition) -> MergeTask:
        return MergeTask(MergeStage(self.cfg, self.sources, self.clock))

    def task_state(self, task: MergeTask) -> dict[str, Any]:
        return {"merge": snapshots.merge_state(task.stage), "applied": task.applied,
                "held": {s: [[a, b, [p.to_dict() for p in ps]] for (a, b), ps in h.items()]
                         for s, h in task.held.items()}}

    def load_task(self, task: MergeTask, state: dict[str, Any]) -> None:
        try:
            snapshots.load_merge(task.stage, state["merge"])
            task.applied = {str(s): int(e) for s, e in state["applied"].items()}
            size = task.stage.windows.buckets.size
            task.held = {str(s): {(int(a), int(b)): [WindowPartial.from_dict(p, size)
                                                     for p in ps] for a, b, ps in h}
                         for s, h in state["held"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise snapshots.SnapshotError(f"merge task: {exc}") from exc

    def handle(self, tp: Partition, task: MergeTask, recs: list[Any]) -> None:
        size = task.stage.windows.buckets.size
        for r in recs:
            try:
                rec = records.decode(r.value)
                kind = rec.get("t")
                if kind == "p":
                    src, first, end, ps = records.partials(rec, size)
                    if end <= task.applied.get(src, -1):
                        self.counts.duplicates += 1
                    else:
                        task.held.setdefault(src, {})[(first, end)] = ps
                elif kind == "w":
                    self._watermark(task, *records.watermark(rec))
                elif kind == "i":
                    src, _first, end, _wm = records.watermark(rec)
                    if end >= task.applied.get(src, -1) and not task.held.get(src):
                        task.stage.marks.say_idle(src)  # caught up at what was folded in
                else:
                    raise records.BadRecord(f"unknown record type {kind!r}")
            except records.BadRecord as exc:
                self.counts.bad_records += 1
                log.warning("merge: %s/%s@%d skipped: %s", tp.topic, tp.partition, r.offset, exc)
            task.done = r.offset + 1
        self._close(tp, task)

    def _watermark(self, task: MergeTask, src: str, first: int, end: int, wm: float) -> None:
        applied = task.applied.get(src, -1)
        held = task.held.pop(src, {})
        if end <= applied:
            self.counts.duplicates += 1
            return
        if first < applied:
            self.counts.overlaps += 1
            log.warning("merge: chunk %s[%d, %d) overlaps one folded in up to %d", src, first,
                        end, applied)
        mine = held.get((first, end), [])  # others: chunks cut short by a crash, sent again
        late = task.stage.late_events
        task.stage.add(src, mine, wm)
        task.applied[src] = end
        if task.stage.late_events > late:
            log.warning("merge: %d events of %s[%d, %d) came for windows already closed "
                        "(topology.idle_seconds, topology.max_wait_s)",
                        task.stage.late_events - late, src, first, end)

    def tick(self) -> None:
        for tp, task in self.tasks.items():
            self._close(tp, task)

    def _close(self, tp: Partition, task: MergeTask) -> None:
        out = task.stage.close_ready()
        through = task.stage.closed_through()
        if not out.scored and through <= task.through:
            return
        name = f"{tp.topic}/{tp.partition}"
        self.producer.send(self.t.judge_topic, partition=0, key=name.encode(),
                           value=records.encode({"t": "s", "task": name,
                                                 "w": [w.to_dict() for w in out.scored],
                                                 "through": through if math.isfinite(through) else None}))
        anomalies = [a for w in out.scored for a in w.anomalies]
        if anomalies:
            self.outputs.write(tp.topic, tp.partition,
                               BatchOutcome(events=EventBatch.empty(), anomalies=anomalies))
        task.through = through


# ---- incidents -------------------------------------------------------------------------------
@dataclass
class JudgeTask:
    stage: IncidentStage
    applied: dict[str, int] = field(default_factory=dict)  # ingest source -> last chunk end
    done: int | None = None
    metrics: MetricFeed | None = None  # the Prometheus poller, on the owner of partition 0
    metric_state: dict[str, Any] | None = None  # its progress and models, as of the snapshot


class IncidentsRole(StageTask):
    role = "incidents"

    def __init__(self, cfg: VigilConfig, producer: KafkaProducer, store: StateTopic,
                 outputs: KafkaOutputs, clock: Callable[[], float] = time.monotonic,
                 on_incidents: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        super().__init__(cfg, producer, store, [cfg.topology.judge_topic], clock)
        self.outputs = outputs
        self.on_incidents = on_incidents
        t = cfg.topology
        self.merge_tasks = [f"{t.partials_topic}/{p}"
                            for p in range(self.source.partitions_of(t.partials_topic))]
        self.incidents: list[dict[str, Any]] = []  # every change written (tests, the bench)

    def new_task(self, tp: Partition) -> JudgeTask:
        return JudgeTask(IncidentStage(self.cfg, self.merge_tasks, self.clock))

    def task_state(self, task: JudgeTask) -> dict[str, Any]:
        out = {"incidents": snapshots.incidents_state(task.stage), "applied": task.applied}
        if task.metric_state is not None:
            out["metrics"] = task.metric_state
        return out

    def load_task(self, task: JudgeTask, state: dict[str, Any]) -> None:
        snapshots.load_incidents(task.stage, state["incidents"])
        task.applied = {str(s): int(e) for s, e in state["applied"].items()}
        metrics = state.get("metrics")
        task.metric_state = metrics if isinstance(metrics, dict) else None

    # ---- the Prometheus poller: a singleton, on the owner of the judge topic's partition 0 ----
    def _poller(self, tp: Partition, task: JudgeTask) -> None:
        """Start the poller of a task just owned, from the snapshot's progress and models."""
        if task.metrics is not None or not self.cfg.prometheus.queries or tp.partition != 0:
            return
        watcher = MetricWatcher(self.cfg)
        restored = watcher.load_state(task.metric_state) if task.metric_state else []
        log.info("incidents: polling Prometheus (%d queries; %s)", len(self.cfg.prometheus.queries),
                 f"restored {', '.join(restored)}" if restored else "warming up from the lookback")
        task.metrics = MetricFeed(self.cfg, watcher, keep_state=True)
        task.metrics.start()

    def _fold_metrics(self, tp: Partition, task: JudgeTask) -> None:
        if task.metrics is not None:
            self._emit(tp, task.stage.add_anomalies(task.metrics.take()))

    def position(self, tp: Partition, task: JudgeTask) -> int | None:
        if task.done is None and task.metrics is not None:
            return 0  # nothing read yet, and a poller to keep: the state covers offset 0 on
        return task.done

    def snapshot(self, tp: Partition) -> None:
        """The poller's state goes in with the incidents it produced: what it found up to its
        state is folded in and written first."""
        task = self.tasks[tp]
        if task.metrics is not None:
            found, task.metric_state = task.metrics.checkpoint()
            self._emit(tp, task.stage.add_anomalies(found))
        super().snapshot(tp)

    def revoked(self, tps: set[Partition]) -> None:
        for tp in tps:
            task = self.tasks.get(Partition(tp.topic, tp.partition))
            if task is not None and task.metrics is not None:
                task.metrics.abandon()  # no wait here: the new owner goes on from the snapshot
        super().revoked(tps)

    def close(self, snapshot: bool = True) -> None:
        super().close(snapshot)
        for task in self.tasks.values():
            if task.metrics is not None:
                task.metrics.stop()

    def metrics_ready(self) -> tuple[bool, str] | None:
        """The poller's readiness where this process runs it (None: it runs elsewhere, or no
        queries are configured)."""
        feeds = [t.metrics for t in list(self.tasks.values()) if t.metrics is not None]
        return feeds[0].ready() if feeds else None  # (the probe's thread: a copy of the tasks)

    def handle(self, tp: Partition, task: JudgeTask, recs: list[Any]) -> None:
        found = []
        for r in recs:
            try:
                rec = records.decode(r.value)
                kind = rec.get("t")
                if kind == "v":
                    src, _first, end, v, e = records.verdicts(rec)
                    if end <= task.applied.get(src, -1):
                        self.counts.duplicates += 1
                    else:
                        found += task.stage.observe(v, e)
                        task.applied[src] = end
                elif kind == "s":
                    name, windows, through = records.scored(rec)
                    task.stage.add_scored(name, windows, through)
                    found += task.stage.advance()
                else:
                    raise records.BadRecord(f"unknown record type {kind!r}")
            except records.BadRecord as exc:
                self.counts.bad_records += 1
                log.warning("incidents: %s/%s@%d skipped: %s", tp.topic, tp.partition, r.offset,
                            exc)
            task.done = r.offset + 1
        self._emit(tp, found)

    def tick(self) -> None:
        for tp, task in self.tasks.items():
            self._poller(tp, task)
            self._fold_metrics(tp, task)
            self._emit(tp, task.stage.advance())

    def _emit(self, tp: Partition, found: list[Any]) -> None:
        if not found:
            return
        self.outputs.write(tp.topic, tp.partition, BatchOutcome(events=EventBatch.empty(),
                                                                incidents=found))
        self.outputs.flush(timeout=30)
        changes = [i.to_dict() for i in found]
        self.incidents.extend(changes)
        if self.on_incidents is not None:
            self.on_incidents(changes)
