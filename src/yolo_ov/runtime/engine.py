"""The engine contract: what the runners need from an inference backend, and a fake one.

Everything above the engine (the latency path, the throughput pipeline,
``submit()``, the server) talks to one small interface, as httpx's clients
talk to a transport: an :class:`Engine` is one compiled model of one input
shape that runs a ``uint8`` ``NHWC`` batch synchronously (:meth:`Engine.infer`)
or asynchronously (:meth:`Engine.start`), and returns **every** output of the
model, copied out of the request's buffers, in the model's output order.

:class:`FakeEngine` implements the contract with a Python function and a
thread pool, so ordering, backpressure, timeouts, shutdown and batching are
testable in milliseconds without OpenVINO or a model (like httpx's
``MockTransport``). The OpenVINO implementation is
:class:`yolo_ov.runtime.core.OpenVINOEngine`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InferenceError

__all__ = ["DoneCallback", "Engine", "FakeEngine", "Outputs"]

#: Every output of one request, in the model's output order, batch first.
Outputs = list[np.ndarray]

#: ``callback(outputs_or_error, done_time)``: called once per :meth:`Engine.start`,
#: from a backend thread, with the copied outputs (or the exception) and the
#: ``time.perf_counter()`` at which the request completed.
DoneCallback = Callable[[Outputs | BaseException, float], None]


@runtime_checkable
class Engine(Protocol):
    """One compiled model (one input shape), run synchronously or asynchronously.

    Attributes:
        input_hw: ``(height, width)`` of the ``NHWC`` input.
        batch: images per request.
        output_names: names of the outputs, in the order :meth:`infer` returns them.
    """

    input_hw: tuple[int, int]
    batch: int
    output_names: tuple[str, ...]

    def infer(self, batch: np.ndarray) -> Outputs:
        """Run one request on a ``(batch, h, w, 3)`` ``uint8`` array and return copies
        of every output. Safe to call from any number of threads."""
        ...

    def reserve(self, jobs: int) -> None:
        """Make room for ``jobs`` asynchronous requests in flight (idempotent; grows only)."""
        ...

    def start(self, batch: np.ndarray, callback: DoneCallback) -> None:
        """Start one asynchronous request; ``batch`` must stay alive until ``callback``.

        The caller bounds the requests in flight to what it :meth:`reserve` d.
        """
        ...

    def wait_all(self) -> None:
        """Block until every asynchronous request has called back."""
        ...

    def cancel(self) -> None:
        """Best effort: ask the backend to cancel requests still running (after a hang)."""
        ...

    def close(self) -> None:
        """Release the compiled model; later calls raise :class:`~yolo_ov.errors.InferenceError`."""
        ...


class FakeEngine:
    """An :class:`Engine` backed by a Python function, for tests of everything above the engine.

    Args:
        fn: ``fn(batch) -> list of outputs`` (each with the batch dimension first).
            Default: one output ``(B, 1)`` holding each frame's mean pixel value,
            so a test can tell which frame produced which result.
        input_hw: the ``(height, width)`` the fake pretends to be compiled for.
        batch: images per request it expects.
        delay_s: seconds each request takes (``time.sleep``: releases the GIL, like a device).
        hang: a predicate on the batch; requests it accepts never call back
            (for hang/timeout tests) until :meth:`cancel`.
        output_names: names reported for the outputs.

    Attributes:
        calls: batches run so far (``(batch size, number of real frames)`` is up to the caller).
        max_in_flight: the most asynchronous requests ever in flight at once.

    Example:
        >>> eng = FakeEngine(input_hw=(32, 32))
        >>> eng.infer(np.zeros((1, 32, 32, 3), np.uint8))[0].shape
        (1, 1)
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], Sequence[np.ndarray]] | None = None,
        *,
        input_hw: tuple[int, int] = (64, 64),
        batch: int = 1,
        delay_s: float = 0.0,
        hang: Callable[[np.ndarray], bool] | None = None,
        output_names: Sequence[str] = ("output0",),
    ) -> None:
        self.fn = fn or _mean_pixel
        self.input_hw = tuple(input_hw)  # type: ignore[assignment]
        self.batch = batch
        self.delay_s = delay_s
        self.hang = hang
        self.output_names = tuple(output_names)
        self.calls = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._jobs = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pool: ThreadPoolExecutor | None = None
        self._hung: list[tuple[DoneCallback, threading.Event]] = []
        self.closed = False

    def _run(self, batch: np.ndarray) -> Outputs:
        if self.closed:
            raise InferenceError("this engine is closed")
        if batch.shape != (self.batch, *self.input_hw, 3) or batch.dtype != np.uint8:
            raise InferenceError(
                f"expected a uint8 batch of shape {(self.batch, *self.input_hw, 3)}, got {batch.dtype} {batch.shape}"
            )
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.calls += 1
        return [np.array(o, copy=True) for o in self.fn(batch)]

    def infer(self, batch: np.ndarray) -> Outputs:
        return self._run(batch)

    def reserve(self, jobs: int) -> None:
        with self._lock:
            if self.closed:
                raise InferenceError("this engine is closed")
            if jobs > self._jobs:
                self._jobs = jobs
                old, self._pool = self._pool, ThreadPoolExecutor(jobs, thread_name_prefix="fake-engine")
                if old is not None:
                    old.shutdown(wait=False)

    def start(self, batch: np.ndarray, callback: DoneCallback) -> None:
        with self._lock:
            if self.closed:
                raise InferenceError("this engine is closed")
            if self._pool is None or self._in_flight >= self._jobs:
                raise InferenceError(f"more than the {self._jobs} reserved requests started at once")
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            pool = self._pool
        pool.submit(self._async, batch, callback)

    def _async(self, batch: np.ndarray, callback: DoneCallback) -> None:
        if self.hang is not None and self.hang(batch):
            released = threading.Event()
            with self._lock:
                self._hung.append((callback, released))
            released.wait()
            self._finish(callback, InferenceError("request cancelled"))
            return
        try:
            result: Outputs | BaseException = self._run(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the callback, as a device error would be
            result = exc
        self._finish(callback, result)

    def _finish(self, callback: DoneCallback, result: Outputs | BaseException) -> None:
        done = time.perf_counter()
        with self._lock:
            self._in_flight -= 1
        try:
            callback(result, done)
        finally:
            with self._idle:
                self._idle.notify_all()

    def wait_all(self) -> None:
        with self._idle:
            while self._in_flight > len(self._hung):
                self._idle.wait(0.05)

    def cancel(self) -> None:
        with self._lock:
            hung, self._hung = self._hung, []
        for _, released in hung:
            released.set()

    def close(self) -> None:
        self.cancel()
        with self._lock:
            self.closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _mean_pixel(batch: np.ndarray) -> list[np.ndarray]:
    return [batch.reshape(batch.shape[0], -1).mean(axis=1, keepdims=True).astype(np.float32)]

