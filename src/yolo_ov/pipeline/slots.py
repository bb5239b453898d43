"""The request slots: one bound on requests in flight, shared by every caller of one compiled model.

A :class:`SlotKeeper` is the only place that knows how many requests may run
at once, how long one may take, and whether the device is still trusted.
Stream runs, the ``submit()`` front and the latency path's fan-out all take
and give back slots here, and all ask it whether a request they are waiting
for has hung: a request older than ``timeout_s`` becomes an
:class:`~yolo_ov.errors.InferenceError` and the keeper turns **broken** (the
device state is unknown, so no further work is accepted).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from ..errors import InferenceError

__all__ = ["POLL_S", "SlotKeeper"]

#: How often a waiter wakes to look at its stop flag and at the hang check.
POLL_S = 0.05


class SlotKeeper:
    """Request slots, the hang check and the "broken" state of one compiled model.

    Args:
        num_requests: requests in flight at most (every lane reserves this many).
        timeout_s: a request not answered within this many seconds is hung.
        device: named in the hang message.
        cancel: asks the backend to cancel what still runs (after a hang).
    """

    def __init__(self, num_requests: int, *, timeout_s: float, device: str = "CPU",
                 cancel: Callable[[], None] | None = None) -> None:
        self.num_requests = num_requests
        self.timeout_s = timeout_s
        self.device = device
        self._slots = threading.Semaphore(num_requests)
        self._cancel = cancel
        self._broken = False

    # -- slots -------------------------------------------------------------------
    def try_acquire(self, timeout: float = POLL_S) -> bool:
        """One slot within ``timeout`` seconds (``False`` if none came free)."""
        return self._slots.acquire(timeout=timeout)

    def acquire(self, stop: threading.Event | None = None, on_wait: Callable[[], None] | None = None) -> bool:
        """Block until a slot is free; ``False`` when ``stop`` is set first.

        ``on_wait`` runs at every poll while waiting (a hang check may raise
        from there: the wait then ends with that error).
        """
        while not self._slots.acquire(timeout=POLL_S):
            if stop is not None and stop.is_set():
                return False
            if on_wait is not None:
                on_wait()
        return True

    def release(self) -> None:
        self._slots.release()

    # -- the hang check ---------------------------------------------------------------
    def overdue(self, started: Iterable[float], now: float | None = None) -> list[int]:
        """Positions in ``started`` (request start times) older than ``timeout_s``.

        Any overdue request marks the keeper broken: the caller fails those
        requests with :meth:`hang_error`.
        """
        now = time.perf_counter() if now is None else now
        late = [k for k, t in enumerate(started) if now - t > self.timeout_s]
        if late:
            self._broken = True
        return late

    def check(self, started: Iterable[float], in_flight: int | None = None) -> None:
        """Raise :meth:`hang_error` if any request started at ``started`` is overdue."""
        times = list(started)
        if times and self.overdue(times):
            raise self.hang_error(len(times) if in_flight is None else in_flight)

    def hang_error(self, in_flight: int) -> InferenceError:
        """The error a hung request becomes (one message for streams, submit and the latency path)."""
        return InferenceError(
            f"an inference request did not complete within {self.timeout_s:g} s "
            f"({in_flight} in flight on {self.device}); the device may be hung or overloaded: "
            "raise timeout_s or reduce num_requests"
        )

    # -- broken --------------------------------------------------------------------------
    @property
    def broken(self) -> bool:
        return self._broken

    def mark_broken(self) -> None:
        """After a hung request the device state is unknown: refuse further work."""
        self._broken = True

    def cancel_busy(self) -> None:
        """Ask the backend to cancel what still runs (best effort, after a hang)."""
        if self._cancel is not None:
            self._cancel()

    def check_usable(self) -> None:
        if self._broken:
            raise InferenceError("this pipeline had a hung request; create a new Detector to continue")
