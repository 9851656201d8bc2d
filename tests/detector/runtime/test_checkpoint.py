"""Checkpoints are input too: a tampered, truncated or oversized one never crashes the consumer on
assignment. The partition starts cold, the reason is logged and counted; whatever is accepted
keeps working on the next batches."""

from __future__ import annotations

import copy
import json
import random
import stat
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from detector.config import KafkaConfig, VigilConfig
from detector.pipeline import Pipeline
from detector.runtime import checkpoint
from detector.runtime.consume import LogConsumer
from detector.simulate.runs import simulated_lines

TP = TopicPartition("logs", 0)


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, Any], list[bytes]]:
    """A real pipeline's state after 15k simulated lines, and the lines that come next."""
    lines, _ = simulated_lines(20_000, seed=3)
    p = Pipeline(VigilConfig())
    for i in range(0, 15_000, 5000):
        p.process(lines[i:i + 5000])
    state = json.loads(json.dumps(checkpoint.pipeline_state(p)))
    assert state["correlator"] and state["templates"]["templates"] and state["scorer"]["series"]
    return state, lines[15_000:]


def _consumer(tmp_path: Path, **kafka: Any) -> LogConsumer:
    return LogConsumer(VigilConfig(kafka=KafkaConfig(checkpoint_dir=tmp_path, **kafka)))


def _refused(c: LogConsumer) -> dict[str, float]:
    return {s.labels["kind"]: s.value for m in c.metrics.checkpoints_refused.collect()
            for s in m.samples if s.name.endswith("_total")}


def _assign_and_go_on(tmp_path: Path, after: list[bytes], **kafka: Any) -> tuple[LogConsumer, Pipeline]:
    c = _consumer(tmp_path, **kafka)
    pipe = c._pipeline(TP)  # what on_partitions_assigned does
    for i in range(0, len(after), 1000):
        pipe.process(after[i:i + 1000])
    pipe.finish()
    assert pipe.stats.events + pipe.stats.dead.total == len(after)
    return c, pipe


def _write(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "logs-p0.json").write_bytes(data)


def test_a_good_checkpoint_restores_and_is_private(tmp_path: Path, run: Any) -> None:
    state, after = run
    path = checkpoint.save(tmp_path / "ckpt", "logs/0", state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o700
    c, pipe = _assign_and_go_on(tmp_path / "ckpt", after)
    assert c.restored[TP] == state["events"] and _refused(c) == {}
    assert pipe.scorer.series_count == len(state["scorer"]["series"])


def _mutations(state: dict[str, Any]) -> dict[str, bytes]:
    good = json.dumps(state).encode()
    out: dict[str, bytes] = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "not json": b"\x00\xff garbage",
        "a list": b"[1, 2, 3]",
        "NaN": good.replace(b'"events":', b'"events": NaN, "x":', 1),
        "huge float": good.replace(b'"events":', b'"events": 1e999, "x":', 1),
        "deep": b'{"version": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "version": json.dumps({**state, "version": 99}).encode(),
    }
    for key in state:
        out[f"missing {key}"] = json.dumps({k: v for k, v in state.items() if k != key}).encode()
        for name, value in (("string", "x"), ("number", 7), ("list", [1]), ("null", None)):
            out[f"{key} as {name}"] = json.dumps({**state, key: value}).encode()
    s = copy.deepcopy(state)
    s["services"] = [f"svc-{i}" for i in range(100_000)]
    out["services past the cap"] = json.dumps(s).encode()
    s = copy.deepcopy(state)
    s["templates"]["templates"] = s["templates"]["templates"] * 2000
    out["templates past the cap"] = json.dumps(s).encode()
    s = copy.deepcopy(state)
    s["scorer"]["series"] = [[f"s{i}", "rate", i] for i in range(20_000)]
    out["series past the cap"] = json.dumps(s).encode()
    s = copy.deepcopy(state)
    s["scorer"]["series"][0][2] = 10**9
    out["a series id out of range"] = json.dumps(s).encode()
    s = copy.deepcopy(state)
    s["correlator"]["slots"]["_seq"] = s["correlator"]["slots"]["_key"]
    out["slot arrays of another type"] = json.dumps(s).encode()
    s = copy.deepcopy(state)
    s["correlator"]["free"] = s["correlator"]["slots"]["_first"]
    out["free slots of another type"] = json.dumps(s).encode()
    s = copy.deepcopy(state)
    s["flagger"]["mean"] = s["flagger"]["mean"][:1]
    out["flagger arrays of unequal length"] = json.dumps(s).encode()
    s = copy.deepcopy(state)
    s["scorer"]["model"]["mean"] = "abc"
    out["a model array as text"] = json.dumps(s).encode()
    s = copy.deepcopy(state)
    s["windows"]["clock"]["watermark"] = "soon"
    out["a clock watermark as text"] = json.dumps(s).encode()
    return out


def test_tampered_checkpoints_start_the_partition_cold_and_say_why(tmp_path: Path, run: Any) -> None:
    state, after = run
    refused = 0
    for name, data in _mutations(state).items():
        _write(tmp_path, data)
        try:
            c, _ = _assign_and_go_on(tmp_path, after[:3000])
        except Exception as exc:  # pragma: no cover - the message names the mutation
            raise AssertionError(f"{name}: {type(exc).__name__}: {exc}") from exc
        kinds = _refused(c)
        if TP not in c.restored:
            assert sum(kinds.values()) == 1, name
            refused += 1
        else:  # only an optional part may be absent (older checkpoints lack some)
            part = name.split()[1] if name.startswith("missing") else name.split()[0]
            assert name == "events as number" or (
                (name.startswith("missing") or name.endswith("as null")) and part in (
                    "flagger", "correlator", "call_graph", "windows", "services", "events")), name
    assert refused >= 40


def test_random_type_mutations_never_crash_the_next_batches(tmp_path: Path, run: Any) -> None:
    state, after = run
    r = random.Random(5)
    replacements: list[Any] = ["x", -1, 0, 2**70, 1.5, [], {}, None, True, [[1, "a"]], {"b64": "@@"}]

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [prefix] if prefix else []
        items = node.items() if isinstance(node, dict) else (
            enumerate(node[:3]) if isinstance(node, list) else [])
        for k, v in items:
            found.extend(paths(v, (*prefix, k)))
        return found

    where = paths(state)
    for _ in range(150):
        s = copy.deepcopy(state)
        path = r.choice(where)
        node = s
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = r.choice(replacements)
        _write(tmp_path, json.dumps(s).encode())
        try:
            _assign_and_go_on(tmp_path, after[:2000])
        except Exception as exc:  # pragma: no cover
            raise AssertionError(f"{path}: {type(exc).__name__}: {exc}") from exc


def test_a_checkpoint_over_the_size_cap_is_refused_before_it_is_read(tmp_path: Path, run: Any) -> None:
    state, after = run
    checkpoint.save(tmp_path, "logs/0", state)
    c, _ = _assign_and_go_on(tmp_path, after[:1000], checkpoint_max_bytes=1000)
    assert TP not in c.restored and _refused(c) == {"too_large": 1.0}


def test_distinct_service_names_are_capped_counted_and_keep_the_checkpoint_bounded() -> None:
    """500k lines of distinct service names made a 25-63 MB checkpoint: every name was kept in
    the correlation index, its latency baselines and the checkpoint."""
    cfg = VigilConfig(window={"max_services": 50})

    def run(names: int) -> tuple[Pipeline, int]:
        p = Pipeline(cfg)
        lines = [json.dumps({"ts": 1795435200 + i * 0.01, "service": f"svc-{i % names}",
                             "msg": "x", "request_id": f"r{i}"}).encode() for i in range(40_000)]
        for i in range(0, len(lines), 10_000):
            p.process(lines[i:i + 10_000])
        return p, len(json.dumps(checkpoint.pipeline_state(p)))

    _, few_bytes = run(50)
    many, many_bytes = run(40_000)
    assert len(many.services) <= 50  # the one registry, windows and correlation alike
    assert many.stats.capped["events_of_services_over_cap"] > 0
    assert many_bytes < 2 * few_bytes + 100_000
