"""The live fleet as its users see it: real processes on loopback, logs Vigil's own decoder takes,
a control API that changes what the services do, and nothing left running after `stop()`.
Each test starts its own fleet (about half a second) and is bounded by a few seconds of load."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from detector.config import ParsingConfig
from detector.decode import BatchDecoder
from detector.simulate.live.control import FleetControlError, FleetHandle, start_fleet
from detector.simulate.live.service import CRASH_EXIT_CODE

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetHandle]:
    handle = start_fleet(tmp_path / "run", seed=7)
    try:
        yield handle
    finally:
        handle.stop()


def records(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        f.seek(offset)
        return [json.loads(line) for line in f.read().splitlines()]


def requests_of(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    """The request lines (not start/stop/crash events) of a log from `offset` on."""
    return [r for r in records(path, offset) if "span_id" in r]


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_fleet_json_names_the_control_url_and_every_service_port_and_log(
        fleet: FleetHandle) -> None:
    info = json.loads((fleet.run_dir / "fleet.json").read_text())
    assert info["control_url"].startswith("http://127.0.0.1:")
    assert info["pid"] == fleet.process.pid
    assert sorted(info["services"]) == ["cart", "catalog", "db", "gateway", "payments"]
    for name, svc in info["services"].items():
        assert svc["log"] == str(fleet.run_dir / "logs" / f"{name}.log")
        with _NO_PROXY.open(f"http://127.0.0.1:{svc['port']}/healthz", timeout=2) as resp:
            assert json.loads(resp.read())["service"] == name


def test_healthy_load_logs_json_lines_vigil_decodes_without_a_dead_letter(
        fleet: FleetHandle) -> None:
    wait_for(lambda: fleet.load()["by_status"].get("200", 0) >= 60, 8, "60 answered requests")
    fleet.stop()
    lines = [ln for p in fleet.log_paths().values() for ln in p.read_bytes().splitlines()]
    res = BatchDecoder(ParsingConfig()).decode(lines)
    assert res.dead == []
    assert len(res.batch) == len(lines) > 100
    assert set(res.batch.service.to_list()) == {"gateway", "cart", "catalog", "payments", "db"}
    reqs = [r for p in fleet.log_paths().values() for r in requests_of(p)]
    assert {r["status"] for r in reqs} == {200}
    assert {r["level"] for r in reqs} == {"info"}


def test_trace_ids_link_each_call_to_its_caller_across_services(fleet: FleetHandle) -> None:
    wait_for(lambda: fleet.load()["sent"] >= 60, 8, "60 requests sent")
    fleet.stop()  # every caller has logged by now
    spans = {(r["trace_id"], r["span_id"]): r
             for p in fleet.log_paths().values() for r in requests_of(p)}
    children = [r for r in spans.values() if r["parent_span_id"]]
    linked = [r for r in children if (r["trace_id"], r["parent_span_id"]) in spans]
    assert len(children) > 50
    assert len(linked) >= 0.95 * len(children)  # a call cut by the stop may have lost its caller
    edges = {(spans[(r["trace_id"], r["parent_span_id"])]["service"], r["service"]) for r in linked}
    assert edges == {("gateway", "cart"), ("gateway", "catalog"), ("cart", "payments"),
                     ("cart", "db"), ("catalog", "db")}
    roots = [r for r in spans.values() if not r["parent_span_id"]]
    assert {r["service"] for r in roots} == {"gateway"}


def test_deploying_v2_logs_exceptions_and_rolling_back_clears_them(fleet: FleetHandle) -> None:
    cart = fleet.log_paths()["cart"]
    out = fleet.deploy("cart", "v2")
    assert (out["version"], out["previous_version"]) == ("v2", "v1")
    wait_for(lambda: sum(r["status"] == 500 for r in requests_of(cart)) >= 10, 8, "10 cart 500s")
    failed = [r for r in requests_of(cart) if r["status"] == 500]
    assert all(r["level"] == "error" and r["version"] == "v2" for r in failed)
    assert {r["msg"] for r in failed} <= {"KeyError: 'currency' in handle_checkout",
                                          "KeyError: 'currency' in handle_get_cart"}
    gateway = requests_of(fleet.log_paths()["gateway"])
    assert any(r["status"] == 502 and r.get("callee") == "cart" for r in gateway)

    back = fleet.rollback("cart")
    assert (back["version"], back["previous_version"]) == ("v1", "v2")
    mark = cart.stat().st_size
    time.sleep(2.0)
    after = requests_of(cart, mark)
    assert len(after) > 20
    assert {r["status"] for r in after} == {200}
    assert {r["version"] for r in after} == {"v1"}


def test_restart_gives_the_service_a_new_pid(fleet: FleetHandle) -> None:
    before = fleet.service("db")
    out = fleet.restart("db")
    assert out["old_pid"] == before["pid"] != out["pid"]
    assert not alive(before["pid"])
    assert fleet.service("db")["pid"] == out["pid"] and out["restarts"] == before["restarts"] + 1


def test_the_control_api_refuses_a_missing_or_wrong_token(fleet: FleetHandle) -> None:
    def status(headers: dict[str, str], path: str = "/services", method: str = "GET") -> int:
        req = urllib.request.Request(fleet.control_url + path, headers=headers, method=method)
        try:
            with _NO_PROXY.open(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    token = fleet.token_file.read_text().strip()
    assert status({}) == 401
    assert status({"Authorization": "Bearer wrong"}) == 401
    assert status({"Authorization": token}) == 401  # no scheme
    assert status({}, "/services/db/restart", "POST") == 401
    assert status({}, "/healthz") == 200
    assert status({"Authorization": f"Bearer {token}"}) == 200
    with pytest.raises(FleetControlError) as err:
        fleet.deploy("nosuch", "v2")
    assert err.value.status == 404


def test_a_crash_fault_is_restarted_over_and_over_until_cleared(fleet: FleetHandle) -> None:
    fleet.fault("payments", "crash_loop")
    fleet.restart("payments")  # a restart does not clear it
    wait_for(lambda: fleet.service("payments")["crashes"] >= 3, 15, "three crashes")
    st = fleet.service("payments")
    assert st["fault"] == "crash_loop" and st["last_exit_code"] == CRASH_EXIT_CODE
    fatal = [r for r in records(fleet.log_paths()["payments"]) if r["level"] == "fatal"]
    assert len(fatal) >= 3 and all(r["msg"].startswith("panic: ") for r in fatal)

    cleared = fleet.fault("payments", "none")
    time.sleep(2.5)  # longer than a crash-looping process lives
    now = fleet.service("payments")
    assert now["status"] == "running" and now["pid"] == cleared["pid"]
    assert now["crashes"] == cleared["crashes"]


def test_a_throttle_turns_an_overloads_503s_into_429s(fleet: FleetHandle) -> None:
    gateway = fleet.log_paths()["gateway"]
    fleet.set_load(200)  # five times the usual rate
    wait_for(lambda: sum(r["status"] == 503 for r in requests_of(gateway)) >= 50, 8,
             "the gateway overloaded")
    fleet.throttle("gateway", 40)
    time.sleep(1.0)  # what was in flight drains
    mark = gateway.stat().st_size
    time.sleep(2.0)
    after = requests_of(gateway, mark)
    codes = [r["status"] for r in after]
    assert codes.count(429) > 100
    assert codes.count(503) <= 0.02 * len(codes)
    assert codes.count(200) > 40
    assert {r["level"] for r in after if r["status"] == 429} == {"warn"}
    assert fleet.service("gateway")["throttle_rps"] == 40


def test_stop_leaves_no_process_running(tmp_path: Path) -> None:
    handle = start_fleet(tmp_path / "run")
    pids = [s["pid"] for s in handle.state().values()] + [handle.process.pid]
    handle.stop()
    assert handle.process.returncode == 0
    assert not [p for p in pids if alive(p)]


def test_a_killed_supervisor_leaves_no_service_behind(tmp_path: Path) -> None:
    handle = start_fleet(tmp_path / "run")
    pids = [s["pid"] for s in handle.state().values()]
    os.kill(handle.process.pid, signal.SIGKILL)
    handle.process.wait(5)
    wait_for(lambda: not [p for p in pids if alive(p)], 5, "every service gone")
