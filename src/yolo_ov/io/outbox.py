"""A bounded in-memory queue with one sender thread: how a network output never slows the cameras down.

The MQTT and webhook sinks (:mod:`yolo_ov.io.mqtt`, :mod:`yolo_ov.io.webhook`)
hand each message to an :class:`Outbox` and return at once; its thread sends
them in order, one at a time, and keeps retrying while the destination is
away. Why a thread of our own rather than the network library's queue: the
caller's thread runs the inference loop, a write must never block it, and
what is kept while the destination is away must have a bound we choose and
count, whatever the library does.

Rules, and why:

* :meth:`Outbox.put` never blocks and never fails while open. When
  ``capacity`` messages are already waiting (the one being sent included),
  the **oldest waiting** message is dropped to make room: after a long
  outage a consumer (a dashboard, Home Assistant) gets the most recent
  ``capacity`` events, which describe the scene as it is now, rather than
  the first ones of the outage. The message being sent is never withdrawn
  (it may already be on the wire); with ``capacity=1`` that means the
  newest is refused instead. Either way the drop is counted (``dropped``)
  and logged once per burst (the first drop, then a summary when room is
  back), so nothing is lost silently.
* The ``send`` callable delivers one message or raises :class:`Retry` (the
  destination is away or answered "try later": the same message is tried
  again after an exponential backoff with jitter, see :class:`Backoff`) or
  :class:`Reject` (the destination refused *this* message for good: counted
  as ``failed``, logged, and the next one goes). Any other exception counts
  as a rejection too, so a bug in one message never stops the thread.
  :meth:`Outbox.wake` cuts a backoff short (the MQTT client calls it when
  the broker is back).
* :meth:`Outbox.close` stops taking messages and tries for ``timeout_s`` to
  deliver what is waiting; what is still undelivered then is counted as
  dropped and logged with its number.

Example:
    >>> sent = []
    >>> box = Outbox(sent.append, name="demo", capacity=10)
    >>> box.put("a"); box.put("b")
    >>> box.close(timeout_s=5)
    0
    >>> sent, box.stats()["sent"], box.stats()["dropped"]
    (['a', 'b'], 2, 0)
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from ..errors import ConfigError

__all__ = ["Backoff", "Outbox", "Reject", "Retry", "to_json"]

log = logging.getLogger(__name__)

M = TypeVar("M")


def to_json(message: Mapping[str, Any]) -> bytes:
    """An event (or record) as the compact UTF-8 JSON both network sinks send.

    numpy scalars and arrays (a box as an array) become plain numbers and
    lists; bytes (a JPEG snapshot) become base64 text.

    Example:
        >>> import numpy as np
        >>> to_json({"id": "a", "box": np.array([1.5, 2.0]), "n": np.int64(3), "jpeg": b"\\xff\\xd8"})
        b'{"id":"a","box":[1.5,2.0],"n":3,"jpeg":"/9g="}'
    """
    return json.dumps(dict(message), separators=(",", ":"), default=_jsonable).encode("utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Retry(Exception):  # an instruction to the outbox, not an error the user sees
    """The destination is away (or said "later"): send the same message again after a backoff."""


class Reject(Exception):  # an instruction to the outbox, not an error the user sees
    """The destination refused this message for good: count it as failed and go on with the next."""


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """How long to wait before retry number ``attempt`` (0 for the first): exponential, capped, with jitter.

    The delay is ``min(max_s, first_s * factor**attempt)`` reduced by a random
    fraction of up to ``jitter`` (0.5: anywhere in the upper half), so many
    cameras or services that lost the same broker do not all come back in
    the same instant. With the defaults: about 0.25-0.5 s, 0.5-1, 1-2, ...
    up to 15-30 s.

    Example:
        >>> Backoff(first_s=1, max_s=8, jitter=0).delay(0), Backoff(first_s=1, max_s=8, jitter=0).delay(5)
        (1.0, 8.0)
    """

    first_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (self.first_s > 0 and self.max_s >= self.first_s and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise ConfigError(f"backoff {self}: needs first_s > 0, max_s >= first_s, factor >= 1, 0 <= jitter <= 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based)."""
        base = min(self.max_s, self.first_s * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * (rng or random).random())


class Outbox(Generic[M]):
    """A bounded queue of messages and the one thread that sends them in order (see the module docstring).

    Args:
        send: delivers one message; raises :class:`Retry` or :class:`Reject` (see above).
        name: names the destination in log lines (``"MQTT 127.0.0.1:1883"``).
        capacity: messages kept while the destination is away (the one being sent included), >= 1.
        backoff: the retry schedule.
        connected: says whether the destination is reachable now, for :meth:`stats`.
    """

    def __init__(self, send: Callable[[M], object], *, name: str, capacity: int = 10_000,
                 backoff: Backoff | None = None, connected: Callable[[], bool] | None = None) -> None:
        if capacity < 1:
            raise ConfigError(f"{name}: buffer {capacity}: must hold at least 1 message")
        self.name = name
        self.capacity = capacity
        self.backoff = backoff or Backoff()
        self._send = send
        self._connected = connected
        self._cond = threading.Condition()
        self._queue: collections.deque[M] = collections.deque()
        self._inflight: M | None = None
        self._has_inflight = False
        self._sent = self._dropped = self._failed = self._retries = 0
        self._burst = 0  # drops since the last put that found room: logged once per burst
        self._woken = False
        self._closing = False  # no more puts; deliver what waits
        self._stopped = False  # give up now
        self._last_ok = True
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._thread = threading.Thread(target=self._run, name=f"outbox {name}", daemon=True)
        self._thread.start()

    # --- the caller's side ---------------------------------------------------------------------------------

    def put(self, message: M) -> None:
        """Queue ``message`` for sending; never blocks. When full, drops the oldest waiting message (counted)."""
        with self._cond:
            if self._closing:
                raise ConfigError(f"{self.name}: the output is closed")
            if self._pending() >= self.capacity:
                if self._queue:
                    self._queue.popleft()  # the oldest waiting; the one in flight stays
                    self._queue.append(message)
                # else: capacity 1 and that one is in flight: the newest is refused
                self._drop_one()
            else:
                if self._burst:
                    log.warning("%s: %d message(s) dropped in that burst (buffer %d full; %d dropped in all)",
                                self.name, self._burst, self.capacity, self._dropped)
                    self._burst = 0
                self._queue.append(message)
            self._cond.notify_all()

    def wake(self) -> None:
        """Cut the current backoff short: the destination is back (the MQTT client's on-connect)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until every queued message is delivered (or failed); True if none waits."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending() and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return not self._pending()

    def close(self, timeout_s: float = 5.0) -> int:
        """Stop taking messages, deliver what waits for up to ``timeout_s``, then stop; returns the number lost.

        Messages still undelivered at the deadline are counted as dropped and
        logged. Idempotent.
        """
        with self._cond:
            already = self._closing
            self._closing = True
            self._cond.notify_all()
        if already:
            self._thread.join(timeout_s)
            return 0
        self.flush(timeout_s)
        with self._cond:
            self._stopped = True
            lost = self._pending()
            self._queue.clear()
            self._inflight, self._has_inflight = None, False
            self._dropped += lost
            self._cond.notify_all()
        self._thread.join(max(1.0, timeout_s))
        if lost:
            log.warning("%s: %d message(s) not delivered in %.1f s at close (destination away); counted as dropped",
                        self.name, lost, timeout_s)
        if self._dropped:
            log.warning("%s: %d message(s) dropped in all (buffer %d)", self.name, self._dropped, self.capacity)
        return lost

    @property
    def stopped(self) -> bool:
        """True once :meth:`close` gave up: a ``send`` that waits (for an acknowledgement) should return now."""
        return self._stopped

    def stats(self) -> dict[str, int]:
        """Counters: ``queued`` (waiting, the one being sent included), ``sent``, ``dropped`` (buffer full or
        undelivered at close), ``failed`` (refused by the destination), ``retries``, ``connected`` (1 or 0)."""
        with self._cond:
            connected = self._connected() if self._connected else self._last_ok
            return {"queued": self._pending(), "sent": self._sent, "dropped": self._dropped, "failed": self._failed,
                    "retries": self._retries, "connected": int(bool(connected))}

    # --- the sender thread ---------------------------------------------------------------------------------

    def _pending(self) -> int:
        return len(self._queue) + int(self._has_inflight)

    def _drop_one(self) -> None:
        self._dropped += 1
        if not self._burst:
            log.warning("%s: buffer full (%d messages waiting, destination away?): dropping the oldest; "
                        "each drop is counted (dropped)", self.name, self.capacity)
        self._burst += 1

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._cond:
                while not self._stopped and not self._has_inflight and not self._queue:
                    if self._closing:
                        return
                    self._cond.wait()
                if self._stopped:
                    return
                if not self._has_inflight:
                    self._inflight, self._has_inflight = self._queue.popleft(), True
                message = self._inflight
            try:
                self._send(message)  # type: ignore[arg-type]
            except Retry as exc:
                self._retry_wait(attempt, exc)
                attempt += 1
                continue
            except Exception as exc:  # Reject, or a bug on one message: counted, the thread goes on
                self._finish(failed=True)
                if isinstance(exc, Reject):
                    log.warning("%s: message refused, not retried: %s", self.name, exc)
                else:
                    log.exception("%s: sending a message failed; it is counted as failed", self.name)
            else:
                self._finish(failed=False)
            if attempt:
                log.warning("%s: delivering again after %d retr%s", self.name, attempt, "y" if attempt == 1 else "ies")
            attempt = 0

    def _finish(self, *, failed: bool) -> None:
        with self._cond:
            if not self._has_inflight:  # close() gave up on it meanwhile and counted it as dropped
                self._dropped -= 1
            self._inflight, self._has_inflight = None, False
            if failed:
                self._failed += 1
            else:
                self._sent += 1
            self._last_ok = True
            self._cond.notify_all()

    def _retry_wait(self, attempt: int, exc: Retry) -> None:
        delay = self.backoff.delay(attempt, self._rng)
        if attempt == 0:
            log.warning("%s: cannot deliver (%s); retrying with backoff, keeping up to %d messages",
                        self.name, exc, self.capacity)
        with self._cond:
            self._retries += 1
            self._last_ok = False
            self._woken = False
            self._cond.wait_for(lambda: self._woken or self._stopped, timeout=delay)
            self._woken = False
