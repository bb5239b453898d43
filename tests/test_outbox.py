"""The Outbox on fake destinations (no network): bound, drop counting, backoff schedule, flush and close time-outs."""

from __future__ import annotations

import logging
import random
import threading
import time

import pytest

from yolo_ov.errors import ConfigError
from yolo_ov.io.outbox import Backoff, Outbox, Reject, Retry

pytestmark = pytest.mark.timeout(30)


class Gate:
    """A destination that is away (Retry) until opened; records what it delivered and when it was tried."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.delivered: list[int] = []
        self.tries: list[float] = []

    def __call__(self, message: int) -> None:
        self.tries.append(time.monotonic())
        if not self.open.is_set():
            raise Retry("away")
        self.delivered.append(message)


def test_backoff_doubles_up_to_its_cap_and_jitter_stays_in_the_upper_part():
    exact = Backoff(first_s=0.5, max_s=4, jitter=0)
    assert [exact.delay(a) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    rng = random.Random(1)
    jittered = [Backoff(first_s=1, max_s=8, jitter=0.5).delay(3, rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in jittered) and len(set(jittered)) > 100
    assert Backoff().delay(10_000) <= 30.0  # no overflow


@pytest.mark.parametrize("kwargs", [{"first_s": 0}, {"max_s": 0.1, "first_s": 1}, {"factor": 0.5}, {"jitter": 2}])
def test_bad_backoff_is_refused(kwargs):
    with pytest.raises(ConfigError, match="backoff"):
        Backoff(**kwargs)


def test_the_retry_schedule_is_the_backoff():
    gate = Gate()
    box = Outbox(gate, name="fake", backoff=Backoff(first_s=0.1, max_s=0.4, jitter=0))
    box.put(1)
    deadline = time.monotonic() + 5
    while len(gate.tries) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.open.set()
    box.wake()
    assert box.flush(5)
    gaps = [b - a for a, b in zip(gate.tries, gate.tries[1:4], strict=False)]
    for gap, expected in zip(gaps, [0.1, 0.2, 0.4], strict=True):
        assert expected - 0.02 <= gap <= expected + 0.15, gaps
    assert gate.delivered == [1]
    assert box.stats()["retries"] >= 4
    box.close(1)


def test_the_bound_drops_the_oldest_waiting_and_counts_each_drop_with_one_log_line_per_burst(caplog):
    gate = Gate()
    box = Outbox(gate, name="fake", capacity=4, backoff=Backoff(first_s=5, max_s=5))
    with caplog.at_level(logging.WARNING, logger="yolo_ov.io.outbox"):
        box.put(0)
        deadline = time.monotonic() + 5
        while not gate.tries and time.monotonic() < deadline:  # 0 is now the one being sent
            time.sleep(0.01)
        for i in range(1, 10):
            box.put(i)
        assert box.stats() | {"retries": 0} == {"queued": 4, "sent": 0, "dropped": 6, "failed": 0, "retries": 0,
                                                 "connected": 0}
        assert sum("buffer full" in r.getMessage() for r in caplog.records) == 1
        gate.open.set()
        box.wake()
        assert box.flush(5)
        assert gate.delivered == [0, 7, 8, 9]  # the one in flight is never withdrawn; the oldest waiting went
        box.put(10)  # room again: the burst is summed up once
        assert sum("6 message(s) dropped in that burst" in r.getMessage() for r in caplog.records) == 1
        assert box.close(5) == 0
    assert gate.delivered[-1] == 10
    assert box.stats() == {"queued": 0, "sent": 5, "dropped": 6, "failed": 0, "retries": 1, "connected": 1}


def test_capacity_one_refuses_the_newest_while_one_is_in_flight():
    gate = Gate()
    box = Outbox(gate, name="fake", capacity=1, backoff=Backoff(first_s=5, max_s=5))
    box.put(0)
    deadline = time.monotonic() + 5
    while not gate.tries and time.monotonic() < deadline:
        time.sleep(0.01)
    box.put(1)
    box.put(2)
    assert box.stats()["dropped"] == 2
    gate.open.set()
    box.wake()
    assert box.flush(5) and gate.delivered == [0]
    box.close(1)


def test_flush_and_close_are_bounded_and_what_is_left_is_counted_as_dropped(caplog):
    gate = Gate()
    box = Outbox(gate, name="fake", backoff=Backoff(first_s=0.05, max_s=0.05))
    for i in range(3):
        box.put(i)
    start = time.monotonic()
    assert box.flush(0.3) is False
    with caplog.at_level(logging.WARNING, logger="yolo_ov.io.outbox"):
        assert box.close(0.3) == 3
    assert time.monotonic() - start < 2.0
    assert box.stats()["dropped"] == 3 and box.stats()["queued"] == 0
    assert any("3 message(s) not delivered" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="fake: the output is closed"):
        box.put(4)
    assert box.close(1) == 0  # idempotent


def test_a_rejected_or_broken_message_is_counted_as_failed_and_the_next_goes():
    sent: list[int] = []

    def send(message: int) -> None:
        if message == 1:
            raise Reject("HTTP 400")
        if message == 2:
            raise KeyError("a bug")
        sent.append(message)

    box = Outbox(send, name="fake")
    for i in range(4):
        box.put(i)
    box.close(5)
    assert sent == [0, 3]
    assert box.stats() | {"connected": 1} == {"queued": 0, "sent": 2, "dropped": 0, "failed": 2, "retries": 0,
                                               "connected": 1}


def test_put_never_blocks_on_a_slow_destination():
    release = threading.Event()
    box = Outbox(lambda m: release.wait(5), name="slow", capacity=100)
    start = time.monotonic()
    for i in range(1000):
        box.put(i)
    assert time.monotonic() - start < 0.5
    assert box.stats()["dropped"] == 900
    release.set()
    box.close(5)
    assert box.stats()["sent"] == 100


def test_capacity_must_be_positive():
    with pytest.raises(ConfigError, match="buffer 0: must hold at least 1 message"):
        Outbox(lambda m: None, name="x", capacity=0)
