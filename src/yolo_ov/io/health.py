"""The health of one live source: its state, when and why it last changed, and who is told.

A camera is ``connecting`` until its first frame, ``live`` while frames
arrive, ``stalled`` when they stop (no frame within the read time-out, or
the stream ended), ``reconnecting`` while :class:`~yolo_ov.io.capture.Capture`
tries to open it again with back-off, and ``failed`` when it is given up on
(reconnection off or its attempts used up). Every change is a
:class:`HealthChange` (state, previous state, wall-clock time, reason) kept
in a short history and handed to each subscriber, so a status page, a metrics
exporter or an MQTT publisher can follow a camera without polling it.

Subscribers run on the reader thread that saw the change: they must be quick
and must not block (queue the change and publish it elsewhere). One that
raises is logged and kept; it never stops the camera.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HEALTH_STATES", "Health", "HealthChange"]

log = logging.getLogger(__name__)

#: Every state a live source can be in, in the order a healthy start goes through the first two.
HEALTH_STATES = ("connecting", "live", "stalled", "reconnecting", "failed")


@dataclass(frozen=True, slots=True)
class HealthChange:
    """One change of a source's state (what a ``camera`` event publishes).

    Attributes:
        source: the source as the user named it (URL, index, path).
        stream: its stream index in the run (``None`` outside a multi-source run).
        state: the new state (one of :data:`HEALTH_STATES`).
        previous: the state before (``None`` for the first).
        time: wall-clock time of the change, epoch seconds.
        reason: why, in words (``"no frame for 5.0 s"``, ``"reconnect attempt 3 failed: ..."``).
        reconnects: successful reconnections so far.
    """

    source: str
    stream: int | None
    state: str
    previous: str | None
    time: float
    reason: str
    reconnects: int

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "stream": self.stream, "state": self.state, "previous": self.previous,
                "time": self.time, "reason": self.reason, "reconnects": self.reconnects}


class Health:
    """The current state of one source plus its recent changes; thread-safe.

    Example:
        >>> h = Health("rtsp://cam/1")
        >>> seen = []
        >>> _ = h.subscribe(seen.append)
        >>> h.set("live", "first frame")
        >>> h.state, [c.state for c in seen]
        ('live', ['live'])
    """

    def __init__(self, source: str, stream: int | None = None, *, history: int = 64) -> None:
        self.source = source
        self.stream = stream
        self._lock = threading.Lock()
        self._listeners: list[Callable[[HealthChange], None]] = []
        self.history: deque[HealthChange] = deque(maxlen=history)
        self.reconnects = 0
        self.state = "connecting"
        self.reason = "opening"
        self.since = time.time()

    def subscribe(self, listener: Callable[[HealthChange], None]) -> Callable[[], None]:
        """Call ``listener(change)`` on every change from now on; returns the function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def set(self, state: str, reason: str) -> None:
        """Move to ``state`` (a no-op when already there), recording why and telling the subscribers."""
        if state not in HEALTH_STATES:
            raise ValueError(f"unknown health state {state!r}; expected one of {', '.join(HEALTH_STATES)}")
        with self._lock:
            if state == self.state and self.history:
                return
            change = HealthChange(self.source, self.stream, state, self.state if self.history else None,
                                  time.time(), reason, self.reconnects)
            self.state, self.reason, self.since = state, reason, change.time
            self.history.append(change)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:
                log.exception("health listener for %s failed", self.source)

    def __repr__(self) -> str:
        return f"Health({self.source!r}, state={self.state!r}, reason={self.reason!r})"
