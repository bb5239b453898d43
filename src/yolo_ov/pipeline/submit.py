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

Bounded: at most ``max_queue`` frames may be accepted and not yet started on
a request; one more image raises :class:`~yolo_ov.errors.OverloadedError` at
once (nothing is queued), so memory never grows with the load. An image that
a fan-out makes several frames is accepted or refused as a whole: its
frames all count once it is split, never some of them. A request not
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
from typing import Any

from ..config import DetectConfig
from ..errors import InferenceError, OverloadedError
from ..heads import Head
from ..imaging.decode import ImageInput, describe_source
from ..runtime.engine import Engine
from .config import DEFAULT_WORKERS, PipelineConfig
from .slots import POLL_S, SlotKeeper
from .steps import FanOut, Frame, Request, decode, finish, pack, prepare, prepare_parts, start

__all__ = ["SubmitStats", "Submitter"]

log = logging.getLogger(__name__)


@dataclass
class SubmitStats:
    """Counters of the ``submit()`` front (read them at any time).

    ``accepted``, ``rejected``, ``completed`` and ``failed`` count images;
    ``waiting``, ``in_flight`` and ``batch_sizes`` count frames (an image a
    fan-out splits is several frames).
    """

    accepted: int = 0
    rejected: int = 0
    completed: int = 0
    failed: int = 0
    requests: int = 0
    #: frames per request, as sent (``batch_sizes[k]``: requests that carried k real frames)
    batch_sizes: dict[int, int] = field(default_factory=dict)
    waiting: int = 0
    in_flight: int = 0


class Submitter:
    """The ``submit()`` front of a pipeline (made on first use).

    Args:
        keeper: the request slots shared with every stream run.
        lane: the engine of the model's own input shape (every image is letterboxed to it).
        head: prepares each image and decodes each result.
        settings: ``max_queue``, ``max_wait_ms``, ``timeout_s``, ``workers``.
    """

    def __init__(self, keeper: SlotKeeper, lane: Engine, head: Head, settings: PipelineConfig) -> None:
        self._keeper = keeper
        self._lane = lane
        self._head = head
        self._max_queue = settings.max_queue
        self._max_wait_s = settings.max_wait_ms / 1e3
        self.stats = SubmitStats()
        self._cond = threading.Condition()
        self._ready: deque[Frame] = deque()
        self._inflight: dict[int, Request] = {}
        self._closed = False
        self._timeout_s = settings.timeout_s
        self._pool = ThreadPoolExecutor(settings.workers or DEFAULT_WORKERS, thread_name_prefix="yolo-ov-submit")
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="yolo-ov-dispatch", daemon=True)
        self._dispatcher.start()

    # -- callers' side (any thread) --------------------------------------------
    def submit(self, image: ImageInput, *, detect: DetectConfig, source: str | None = None,
               fanout: FanOut | None = None) -> Future:
        """Accept one image, or raise :class:`OverloadedError` at once when ``max_queue`` frames are waiting."""
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
            self._pool.submit(self._prepare, future, image, detect, name, fanout)
        except RuntimeError as exc:  # pool shut down: closing
            self._settle_waiting(1)
            raise InferenceError("this Detector is closing; submit() refused the image") from exc
        return future

    # -- worker pool ---------------------------------------------------------------
    def _prepare(self, future: Future, image: ImageInput, detect: DetectConfig, name: str,
                 fanout: FanOut | None) -> None:
        if not future.set_running_or_notify_cancel():
            self._settle_waiting(1)
            return
        t0 = time.perf_counter()
        lane = self._lane
        try:
            img, original = decode(image, self._head, lane.input_hw, name, reduce=detect.fast_decode, fanout=fanout)
            if fanout is None:
                frames = [prepare(self._head, img, original, lane, t0, key=future, item=name, detect=detect)]
            else:
                frames = prepare_parts(self._head, img, original, fanout, lambda hw: lane, t0, key=future, item=name,
                                       detect=detect)
        except BaseException as exc:  # noqa: BLE001 - an unreadable image fails its own future only
            self._settle_waiting(1, failed=1)
            future.set_exception(exc)
            return
        queued = time.perf_counter()
        with self._cond:
            for frame in frames:
                frame.queued = queued
                self._ready.append(frame)
            self.stats.waiting += len(frames) - 1  # accepted as one image: all of its frames count now
            self._cond.notify_all()

    def _finish(self, request: Request, outputs: list[Any], done: float) -> None:
        infer_ms = (done - request.started) * 1e3
        for k, frame in enumerate(request.frames):
            future: Future = frame.key
            try:
                assert frame.detect is not None
                result = finish(self._head, outputs, k, frame, frame.detect, infer_ms)
                if frame.group is not None:
                    result = frame.group.add(frame.part, result)
                    if result is None:
                        continue
                result.source = frame.item
            except BaseException as exc:  # noqa: BLE001 - reported on the caller's future
                self._fail_frame(frame, exc)
                continue
            self._count(completed=1)
            future.set_result(result)

    def _fail_frame(self, frame: Frame, exc: BaseException) -> None:
        """Fail the frame's image (once, however many of its frames fail)."""
        if frame.group is not None and not frame.group.fail():
            return
        future: Future = frame.key
        if not future.done():
            self._count(failed=1)
            future.set_exception(exc)

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
                    self._cond.wait(POLL_S)
                if not self._ready:
                    return
                if batch > 1:  # group requests from different callers, up to max_wait
                    deadline = self._ready[0].queued + self._max_wait_s
                    while len(self._ready) < batch and not self._closed:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                frames = [self._ready.popleft() for _ in range(min(batch, len(self._ready)))]
            if frames:
                self._start(frames)

    def _start(self, frames: list[Frame]) -> None:
        lane = self._lane
        request = Request(lane, frames, pack(frames, lane))
        try:
            start(self._keeper, request, self._on_done, on_wait=self._check_hang_locked, register=self._register)
        except BaseException as exc:  # noqa: BLE001 - fails this request's futures, the rest go on
            self._drop(request, exc)

    def _register(self, request: Request) -> None:
        n = len(request.frames)
        with self._cond:
            self._inflight[id(request)] = request
            self.stats.waiting -= n
            self.stats.in_flight += n
            self.stats.requests += 1
            self.stats.batch_sizes[n] = self.stats.batch_sizes.get(n, 0) + 1

    def _on_done(self, request: Request, outputs: Any, done: float) -> None:
        self._keeper.release()
        with self._cond:
            if self._inflight.pop(id(request), None) is None:
                return  # already failed by the hang check
            self.stats.in_flight -= len(request.frames)
            self._cond.notify_all()
        if isinstance(outputs, BaseException):
            self._fail(request, outputs)
            return
        try:
            self._pool.submit(self._finish, request, outputs, done)
        except RuntimeError:  # closing: decode here rather than lose the results
            self._finish(request, outputs, done)

    def _drop(self, request: Request, exc: BaseException) -> None:
        with self._cond:
            if self._inflight.pop(id(request), None) is not None:
                self.stats.in_flight -= len(request.frames)
            else:  # never started: its frames were still counted as waiting
                self.stats.waiting -= len(request.frames)
        self._fail(request, exc)

    def _fail(self, request: Request, exc: BaseException) -> None:
        error = exc if isinstance(exc, InferenceError) else InferenceError(f"inference failed: {exc}")
        for frame in request.frames:
            self._fail_frame(frame, error)

    def _check_hang_locked(self) -> None:
        with self._cond:
            self._check_hang()

    def _check_hang(self) -> None:
        """Called with the lock held: fail requests older than ``timeout_s`` (the keeper turns broken)."""
        if not self._inflight:
            return
        requests = list(self._inflight.values())
        late = self._keeper.overdue([r.started for r in requests])
        if not late:
            return
        error = self._keeper.hang_error(len(requests))
        for k in late:
            request = requests[k]
            self._inflight.pop(id(request), None)
            self.stats.in_flight -= len(request.frames)
            for frame in request.frames:
                if frame.group is not None and not frame.group.fail():
                    continue
                future: Future = frame.key
                if not future.done():
                    self.stats.failed += 1
                    future.set_exception(error)

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
                self._cond.wait(POLL_S)
            leftover = list(self._inflight.values())
            self._inflight.clear()
        for request in leftover:
            self._fail(request, InferenceError("the Detector was closed before this request completed"))
        self._pool.shutdown(wait=True)
