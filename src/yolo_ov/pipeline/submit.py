"""``submit()``: many independent callers, one compiled model.

Each :meth:`Submitter.submit` returns a :class:`~concurrent.futures.Future`
at once. Behind it:

* a small **worker pool** decodes and prepares the image (the head's
  letterbox at the model's own input shape, so an image gets the same answer
  as on the latency path) and, later, decodes the outputs;
* one **dispatcher** thread groups prepared images into requests (up to the
  compiled batch; a partly filled batch waits at most ``max_wait_ms`` for
  more), takes a request slot shared with every stream run, and starts the
  request;
* the engine's callback hands the outputs back to the pool, which sets each
  future's result.

Bounded: at most ``max_queue`` images may be accepted and not yet started on
a request; one more raises :class:`~yolo_ov.errors.OverloadedError` at once
(nothing is queued), so memory never grows with the load. A request not
answered within ``timeout_s`` fails its futures with
:class:`~yolo_ov.errors.InferenceError` (and the pipeline refuses further
work: the device state is unknown).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import DetectConfig
from ..errors import InferenceError, OverloadedError
from ..imaging.decode import ImageInput, describe_source, load_image_for
from ..imaging.letterbox import PAD_VALUE
from ..results import Timings
from .config import DEFAULT_WORKERS

if TYPE_CHECKING:
    from .core import Pipeline

__all__ = ["SubmitStats", "Submitter"]

log = logging.getLogger(__name__)

_POLL_S = 0.05


@dataclass
class SubmitStats:
    """Counters of the ``submit()`` front (read them at any time)."""

    accepted: int = 0
    rejected: int = 0
    completed: int = 0
    failed: int = 0
    requests: int = 0
    #: images per request, as sent (``batch_sizes[k]``: requests that carried k real images)
    batch_sizes: dict[int, int] = field(default_factory=dict)
    waiting: int = 0
    in_flight: int = 0


@dataclass(slots=True)
class _Item:
    future: Future
    frame: np.ndarray
    geo: Any
    detect: DetectConfig
    source: str
    prep_ms: float
    queued: float


@dataclass(slots=True)
class _Request:
    items: list[_Item]
    batch: np.ndarray
    started: float = 0.0


class Submitter:
    """The ``submit()`` front of a :class:`~yolo_ov.pipeline.Pipeline` (made on first use)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._p = pipeline
        self._lane = pipeline.base
        self._max_queue = pipeline.config.max_queue
        self._max_wait_s = pipeline.config.max_wait_ms / 1e3
        self._timeout_s = pipeline.config.timeout_s
        self.stats = SubmitStats()
        self._cond = threading.Condition()
        self._ready: deque[_Item] = deque()
        self._inflight: dict[int, _Request] = {}
        self._closed = False
        self._pool = ThreadPoolExecutor(pipeline.config.workers or DEFAULT_WORKERS, thread_name_prefix="yolo-ov-submit")
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="yolo-ov-dispatch", daemon=True)
        self._dispatcher.start()

    # -- callers' side (any thread) --------------------------------------------
    def submit(self, image: ImageInput, *, detect: DetectConfig, source: str | None = None) -> Future:
        """Accept one image, or raise :class:`OverloadedError` at once when ``max_queue`` are waiting."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise InferenceError("this Detector is closed; submit() needs an open Detector")
            if self.stats.waiting >= self._max_queue:
                self.stats.rejected += 1
                raise OverloadedError(
                    f"{self.stats.waiting} images are already waiting (max_queue={self._max_queue}); "
                    "retry later or raise max_queue"
                )
            self.stats.waiting += 1
            self.stats.accepted += 1
        name = source or describe_source(image)
        try:
            self._pool.submit(self._prepare, future, image, detect, name)
        except RuntimeError as exc:  # pool shut down: closing
            self._settle_waiting(1)
            raise InferenceError("this Detector is closing; submit() refused the image") from exc
        return future

    # -- worker pool ---------------------------------------------------------------
    def _prepare(self, future: Future, image: ImageInput, detect: DetectConfig, name: str) -> None:
        if not future.set_running_or_notify_cancel():
            self._settle_waiting(1)
            return
        t0 = time.perf_counter()
        try:
            img, original = load_image_for(image, self._lane.input_hw, name, reduce=detect.fast_decode,
                                            reduction=self._p.head.decode_reduction)
            frame, geo = self._p.head.prepare(img, self._lane.input_hw, original)
        except BaseException as exc:  # noqa: BLE001 - an unreadable image fails its own future only
            self._settle_waiting(1, failed=1)
            future.set_exception(exc)
            return
        item = _Item(future, frame, geo, detect, name, (time.perf_counter() - t0) * 1e3, time.perf_counter())
        with self._cond:
            self._ready.append(item)
            self._cond.notify_all()

    def _finish(self, request: _Request, outputs: list[np.ndarray], done: float) -> None:
        infer_ms = (done - request.started) * 1e3
        head = self._p.head
        for k, item in enumerate(request.items):
            t0 = time.perf_counter()
            try:
                result = head.decode([o[k] for o in outputs], item.geo, item.detect)
                result.source = item.source
                result.timing = Timings(item.prep_ms, infer_ms, (time.perf_counter() - t0) * 1e3)
            except BaseException as exc:  # noqa: BLE001 - reported on the caller's future
                self._count(failed=1)
                item.future.set_exception(exc)
                continue
            self._count(completed=1)
            item.future.set_result(result)

    def _settle_waiting(self, n: int, failed: int = 0) -> None:
        with self._cond:
            self.stats.waiting -= n
            self.stats.failed += failed
            self._cond.notify_all()

    def _count(self, completed: int = 0, failed: int = 0) -> None:
        with self._cond:
            self.stats.completed += completed
            self.stats.failed += failed

    # -- the dispatcher thread ---------------------------------------------------------
    def _dispatch_loop(self) -> None:
        batch = self._lane.batch
        while True:
            with self._cond:
                # After close(), keep going until every accepted image was started.
                while not self._ready and (not self._closed or self.stats.waiting > 0):
                    self._check_hang()
                    self._cond.wait(_POLL_S)
                if not self._ready:
                    return
                if batch > 1:  # group requests from different callers, up to max_wait
                    deadline = self._ready[0].queued + self._max_wait_s
                    while len(self._ready) < batch and not self._closed:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                items = [self._ready.popleft() for _ in range(min(batch, len(self._ready)))]
            if items:
                self._start(items)

    def _start(self, items: list[_Item]) -> None:
        lane = self._lane
        if lane.batch == 1:
            frames = items[0].frame[None]
        else:
            frames = np.full((lane.batch, *lane.input_hw, 3), PAD_VALUE, np.uint8)
            for i, item in enumerate(items):
                frames[i] = item.frame
        while not self._p.acquire_request(_POLL_S):
            with self._cond:
                self._check_hang()
        request = _Request(items, frames)
        with self._cond:
            request.started = time.perf_counter()
            self._inflight[id(request)] = request
            self.stats.waiting -= len(items)
            self.stats.in_flight += len(items)
            self.stats.requests += 1
            self.stats.batch_sizes[len(items)] = self.stats.batch_sizes.get(len(items), 0) + 1
        try:
            self._p.run_batch(lane, frames, lambda outputs, done: self._on_done(request, outputs, done))
        except BaseException as exc:  # noqa: BLE001 - fails this request's futures, the rest go on
            self._p.release_request()
            self._drop(request, exc)

    def _on_done(self, request: _Request, outputs: Any, done: float) -> None:
        self._p.release_request()
        with self._cond:
            if self._inflight.pop(id(request), None) is None:
                return  # already failed by the hang check
            self.stats.in_flight -= len(request.items)
            self._cond.notify_all()
        if isinstance(outputs, BaseException):
            self._fail(request, outputs)
            return
        try:
            self._pool.submit(self._finish, request, outputs, done)
        except RuntimeError:  # closing: decode here rather than lose the results
            self._finish(request, outputs, done)

    def _drop(self, request: _Request, exc: BaseException) -> None:
        with self._cond:
            self._inflight.pop(id(request), None)
            self.stats.in_flight -= len(request.items)
        self._fail(request, exc)

    def _fail(self, request: _Request, exc: BaseException) -> None:
        error = exc if isinstance(exc, InferenceError) else InferenceError(f"inference failed: {exc}")
        self._count(failed=len(request.items))
        for item in request.items:
            if not item.future.done():
                item.future.set_exception(error)

    def _check_hang(self) -> None:
        """Called with the lock held: fail requests older than ``timeout_s``."""
        if not self._inflight:
            return
        now = time.perf_counter()
        hung = [r for r in self._inflight.values() if now - r.started > self._timeout_s]
        if not hung:
            return
        self._p.mark_broken()
        for request in hung:
            self._inflight.pop(id(request), None)
            self.stats.in_flight -= len(request.items)
            error = InferenceError(
                f"an inference request did not complete within {self._timeout_s:g} s on {self._p.device}; "
                "the device may be hung or overloaded: raise timeout_s or reduce num_requests"
            )
            self.stats.failed += len(request.items)
            for item in request.items:
                if not item.future.done():
                    item.future.set_exception(error)

    # -- shutdown ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting, finish what was accepted (bounded by ``timeout_s``), stop the threads."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._dispatcher.join(timeout=self._timeout_s)
        deadline = time.perf_counter() + self._timeout_s
        with self._cond:
            while self._inflight and time.perf_counter() < deadline:
                self._cond.wait(_POLL_S)
            leftover = list(self._inflight.values())
            self._inflight.clear()
        for request in leftover:
            self._fail(request, InferenceError("the Detector was closed before this request completed"))
        self._pool.shutdown(wait=True)
