"""The metric feed that stage C's poller runs on: a checkpoint never waits for a poll (a slow
or hung Prometheus does not stall the incidents stage), its state and finds go together, and a
feed whose thread died says so in its readiness."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from detector.config import PrometheusConfig, PromQuery, VigilConfig
from detector.events import Anomaly
from detector.runtime.metric_feed import MetricFeed
from detector.runtime.watch import MetricWatcher, PollResult

CFG = VigilConfig(prometheus=PrometheusConfig(queries=[PromQuery(name="q", query="up",
                                                                 step_seconds=1)]))


def anomaly(t: float) -> Anomaly:
    return Anomaly("cart", "metric:q", t - 1, t, 5.0, 1.0, 0.5, 0.9999, "ewma", "x", 0)


class Scripted(MetricWatcher):
    """A watcher whose polls are released one at a time by the test (no Prometheus: what is
    under test is the feed's threading, not the source)."""

    def __init__(self) -> None:
        super().__init__(CFG)
        self.go = threading.Semaphore(0)
        self.polled = 0
        self.fail = False

    def poll_once(self) -> PollResult:
        self.go.acquire()
        if self.fail:
            raise RuntimeError("a bug in a poll")
        self.polled += 1
        self.source.state["q"].next_start = 1000.0 + self.polled
        return PollResult(anomalies=[anomaly(1000.0 + self.polled)])

    def state_dict(self) -> dict[str, Any]:
        return {"polled": self.polled}


def test_a_checkpoint_never_waits_for_a_poll_and_holds_what_was_found_with_its_state() -> None:
    w = Scripted()
    feed = MetricFeed(CFG, w, keep_state=True)
    feed.start()
    try:
        assert feed.checkpoint() == ([], {"polled": 0})  # a poll is blocked: this is not
        w.go.release()
        w.go.release()
        waited = threading.Event()
        for _ in range(200):  # both polls' finds queued (the state goes in with them)
            if feed.queue.qsize() == 2:
                break
            waited.wait(0.05)
        found, state = feed.checkpoint()
        assert state == {"polled": 2}
        assert [a.window_end for a in found] == [1001.0, 1002.0]
        assert feed.checkpoint() == ([], {"polled": 2})  # taken once
    finally:
        w.go.release()
        feed.abandon()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_feed_whose_thread_died_says_so() -> None:
    w = Scripted()
    w.fail = True
    feed = MetricFeed(CFG, w, keep_state=True)
    feed.start()
    w.go.release()
    assert feed._thread is not None
    feed._thread.join(timeout=10)
    ok, why = feed.ready()
    assert not ok and "stopped" in why
