"""One pass of a source through the pipeline: feeder, hand-offs, ordering, shutdown.

Threads of a run:

* the **feeder** pulls inputs from the source (never more than
  ``max_pending`` between being read and being yielded: that is the memory
  bound), hands decode + letterbox to the worker pool, groups prepared
  frames into batches per lane and starts a request whenever one is free;
* the engine's **callback** (outputs already copied out of the request,
  completion timestamped) hands them to the worker pool for the head;
* the **workers** (a small pool: OpenCV and OpenVINO release the GIL) decode,
  prepare (the head's letterbox) and decode the outputs (the head);
* the **caller** iterates: it receives results in input order (or as
  completed), and it is the waiting side where errors from any thread are
  re-raised and where a request that takes longer than ``timeout_s`` becomes
  an :class:`~yolo_ov.errors.InferenceError`.

Every input yields exactly one :class:`~yolo_ov.results.Detections` or one
:class:`~yolo_ov.results.Failure`. Closing (normally, on an exception, on
Ctrl-C or when the caller stops iterating) stops the feeder, waits for the
requests in flight (cancelling them after ``timeout_s``) and joins every
thread the run started.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import DetectConfig
from ..errors import InferenceError, InputError
from ..imaging.decode import load_image_for
from ..imaging.letterbox import PAD_VALUE
from ..io.sources import FrameSource, SourceItem
from ..results import Failure, Timings
from ..runtime.engine import Engine
from .config import DEFAULT_WORKERS, LARGE_IMAGE_PIXELS, MAX_AUTO_WORKERS
from .lanes import ShapePlanner

if TYPE_CHECKING:
    from .core import Pipeline

__all__ = ["RunStats", "StreamRun"]

log = logging.getLogger(__name__)

Result = Any  # what the head returns (Detections for boxes), or a Failure
_POLL_S = 0.1
#: How long close() waits for a source blocked in a read (a camera) to return.
_JOIN_S = 5.0


@dataclass
class RunStats:
    """Counters of one run (read them while iterating or after)."""

    read: int = 0
    done: int = 0
    failed: int = 0
    requests: int = 0
    skipped: dict[int, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    shapes: dict[str, int] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def images_per_s(self) -> float:
        """Successful images per second of wall time so far."""
        return (self.done - self.failed) / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(slots=True)
class _Prepared:
    index: int
    item: SourceItem
    frame: np.ndarray
    geo: Any
    lane: Engine
    prep_ms: float
    image: np.ndarray | None


@dataclass(slots=True)
class _Job:
    run: StreamRun
    lane: Engine
    members: list[_Prepared]
    batch: np.ndarray
    submitted: float = 0.0


class StreamRun:
    """An iterator over the results of one source; also a context manager.

    With ``with_images=True`` it yields ``(result, image)`` pairs (the
    decoded BGR image, ``None`` for a failure) for sinks that draw.
    """

    def __init__(self, pipeline: Pipeline, source: FrameSource, planner: ShapePlanner, *, ordered: bool,
                 max_pending: int, lookahead: int, with_images: bool = False,
                 callback: Callable[[Any], None] | None = None, detect: DetectConfig | None = None,
                 fresh: int | None = None) -> None:
        self._p = pipeline
        self._detect = detect or pipeline.detect
        self._source = source
        self._planner = planner
        self._ordered = ordered
        self._with_images = with_images
        self._callback = callback
        self._lookahead = lookahead
        self._timeout = pipeline.config.timeout_s
        self.stats = RunStats(skipped=source.skipped)
        self._cond = threading.Condition()
        self._ready: dict[int, Any] = {}
        self._completed: deque[Any] = deque()
        self._next_out = 0
        self._yielded = 0
        self._total: int | None = None
        self._error: BaseException | None = None
        self._inflight: dict[int, _Job] = {}
        self._stop = threading.Event()
        self._capacity = threading.Semaphore(max_pending)
        #: Newest-frame sources: frames taken but not yet inferred (None: no such bound).
        self._fresh = threading.Semaphore(fresh) if fresh else None
        workers = pipeline.config.workers
        self._pool = ThreadPoolExecutor(workers or MAX_AUTO_WORKERS, thread_name_prefix="yolo-ov-worker")
        #: Automatic workers: decodes run one at a time until a large image is met (see LARGE_IMAGE_PIXELS).
        self._decoders = threading.Semaphore(DEFAULT_WORKERS) if workers is None else None
        self._grown = workers is not None
        self._closed = False
        self._feeder = threading.Thread(target=self._feed, name="yolo-ov-feeder", daemon=True)
        self._feeder.start()

    # -- the caller's side ------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                result = self._next_result()
                if result is None:
                    return
                yield result
        finally:
            self.close()

    def _next_result(self) -> Any | None:
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                item = self._take()
                if item is not None:
                    break
                if self._total is not None and self._yielded >= self._total:
                    return None
                self._check_hang()
                self._cond.wait(_POLL_S)
            self._yielded += 1
        self._capacity.release()
        return item

    def _take(self) -> Any | None:
        if self._ordered:
            if self._next_out not in self._ready:
                return None
            self._next_out += 1
            return self._ready.pop(self._next_out - 1)
        return self._completed.popleft() if self._completed else None

    def wait(self) -> RunStats:
        """Callback form: block until every input was handed to the callback (or an error)."""
        try:
            with self._cond:
                while self._error is None and not (self._total is not None and self._yielded >= self._total):
                    self._check_hang()
                    self._cond.wait(_POLL_S)
                if self._error is not None:
                    raise self._error
        finally:
            self.close()
        return self.stats

    def _check_hang(self) -> None:
        if not self._inflight:
            return
        oldest = min(job.submitted for job in self._inflight.values())
        waited = time.perf_counter() - oldest
        if waited > self._timeout:
            self._p.mark_broken()
            raise InferenceError(
                f"an inference request did not complete within {self._timeout:g} s "
                f"({len(self._inflight)} in flight on {self._p.device}); the device may be hung or overloaded: "
                "raise timeout_s or reduce num_requests"
            )

    # -- delivery (any thread) ---------------------------------------------
    def _deliver(self, index: int, result: Result, image: np.ndarray | None) -> None:
        failed = isinstance(result, Failure)
        payload = (result, image) if self._with_images else result
        if self._callback is not None:
            if not self._stop.is_set():
                try:
                    self._callback(payload)
                except BaseException as exc:  # noqa: BLE001 - re-raised on the waiting side
                    self._fail(exc)
                    return
            with self._cond:
                self.stats.done += 1
                self.stats.failed += failed
                self._yielded += 1
                self._cond.notify_all()
            self._capacity.release()
            return
        with self._cond:
            self.stats.done += 1
            self.stats.failed += failed
            if self._ordered:
                self._ready[index] = payload
                if index == self._next_out:
                    self._cond.notify_all()
            else:
                self._completed.append(payload)
                self._cond.notify_all()

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = exc
            self._stop.set()
            self._cond.notify_all()

    # -- the feeder thread --------------------------------------------------
    def _feed(self) -> None:
        pending: deque[tuple[int, SourceItem, Future]] = deque()
        batches: dict[int, list[_Prepared]] = {}
        n = 0
        items = iter(self._source)
        try:
            while True:
                if not self._acquire(self._capacity, batches):
                    break
                # Newest-frame sources: wait until a frame taken now would go straight to a request.
                # Frames still being prepared hold slots too, and only their requests give them back.
                if self._fresh is not None and not self._acquire(self._fresh, batches, pending):
                    break
                item = next(items, None)
                if item is None:
                    break
                index = n
                n += 1
                self.stats.read = n
                if isinstance(item.data, InputError):
                    err = item.data
                    self._release_fresh(1)
                    self._deliver(index, Failure(err.source or item.source, str(err), item.stream, item.frame), None)
                    continue
                pending.append((index, item, self._pool.submit(self._prepare, index, item)))
                while pending and (len(pending) > self._lookahead or pending[0][2].done()):
                    self._dispatch(pending.popleft(), batches)
                if self._stop.is_set():
                    break
            while pending and not self._stop.is_set():
                self._dispatch(pending.popleft(), batches)
            for lane_id in list(batches):
                self._submit(batches, lane_id)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the waiting side
            if not self._stop.is_set():
                self._fail(exc)
        finally:
            for _, _, fut in pending:
                fut.cancel()
            with self._cond:
                self._total = n
                self._cond.notify_all()

    def _acquire(self, slots: threading.Semaphore, batches: dict[int, list[_Prepared]],
                 pending: deque[tuple[int, SourceItem, Future]] | None = None) -> bool:
        """Take one of ``slots``; ``False`` when the run stops first.

        When none is free, the frames in ``pending`` (if given) are dispatched and
        partly filled batches sent first: they may hold the slots, and the caller
        could otherwise wait forever for an item that sits in one.
        """
        if slots.acquire(blocking=False):
            return True
        while pending and not self._stop.is_set():
            self._dispatch(pending.popleft(), batches)
        for lane_id in list(batches):
            self._submit(batches, lane_id)
        while not self._stop.is_set():
            if slots.acquire(timeout=_POLL_S):
                return True
        return False

    def _release_fresh(self, count: int) -> None:
        if self._fresh is not None and count:
            self._fresh.release(count)

    def _prepare(self, index: int, item: SourceItem) -> _Prepared:
        t0 = time.perf_counter()
        if self._decoders is None:
            img, original = self._decode(item)
        else:
            with self._decoders:
                img, original = self._decode(item)
                if not self._grown and original[0] * original[1] >= LARGE_IMAGE_PIXELS:
                    self._grown = True  # decided under the semaphore: only one decode runs until then
                    self._decoders.release(MAX_AUTO_WORKERS - DEFAULT_WORKERS)
        lane = self._planner.lane_for(original)
        frame, geo = self._p.head.prepare(img, lane.input_hw, original)
        prep_ms = (time.perf_counter() - t0) * 1e3
        return _Prepared(index, item, frame, geo, lane, prep_ms, img if self._with_images else None)

    def _decode(self, item: SourceItem) -> tuple[np.ndarray, tuple[int, int]]:
        return load_image_for(item.data, self._p.base.input_hw, item.source,
                              reduce=self._detect.fast_decode and not self._with_images,
                              reduction=self._p.head.decode_reduction)

    def _dispatch(self, entry: tuple[int, SourceItem, Future], batches: dict[int, list[_Prepared]]) -> None:
        index, item, fut = entry
        try:
            prepared: _Prepared = fut.result()
        except InputError as exc:
            self._release_fresh(1)
            self._deliver(index, Failure(exc.source or item.source, str(exc), item.stream, item.frame), None)
            return
        key = id(prepared.lane)
        members = batches.setdefault(key, [])
        members.append(prepared)
        if len(members) >= prepared.lane.batch:
            self._submit(batches, key)

    def _submit(self, batches: dict[int, list[_Prepared]], key: int) -> None:
        members = batches.pop(key, None)
        if not members:
            return
        lane = members[0].lane
        if lane.batch == 1:
            batch = members[0].frame[None]
        else:
            batch = np.full((lane.batch, *lane.input_hw, 3), PAD_VALUE, np.uint8)
            for i, m in enumerate(members):
                batch[i] = m.frame
        while not self._p.acquire_request(_POLL_S):
            if self._stop.is_set():
                return
        job = _Job(self, lane, members, batch)
        with self._cond:
            job.submitted = time.perf_counter()
            self._inflight[id(job)] = job
        self.stats.requests += 1
        shape = f"{lane.input_hw[0]}x{lane.input_hw[1]}"
        self.stats.shapes[shape] = self.stats.shapes.get(shape, 0) + len(members)
        try:
            self._p.run_batch(lane, batch, lambda outputs, done: self._on_done(job, outputs, done))
        except BaseException:
            with self._cond:
                self._inflight.pop(id(job), None)
            self._p.release_request()
            raise

    # -- completion (the engine's callback thread, then a worker) -------------
    def _on_done(self, job: _Job, outputs: Any, done: float) -> None:
        if isinstance(outputs, BaseException):
            self.on_error(job, outputs)
        else:
            self.on_inferred(job, outputs, done)

    def on_inferred(self, job: _Job, outputs: list[np.ndarray], done: float) -> None:
        with self._cond:
            self._inflight.pop(id(job), None)
            self._cond.notify_all()
        self._p.release_request()
        self._release_fresh(len(job.members))
        if self._stop.is_set():
            return
        try:
            self._pool.submit(self._finish, job, outputs, done)
        except RuntimeError:  # pool already shut down: the run is closing
            return

    def on_error(self, job: _Job, exc: BaseException) -> None:
        with self._cond:
            self._inflight.pop(id(job), None)
        self._p.release_request()
        self._release_fresh(len(job.members))
        self._fail(exc if isinstance(exc, InferenceError) else InferenceError(f"inference callback failed: {exc}"))

    def _finish(self, job: _Job, outputs: list[np.ndarray], done: float) -> None:
        try:
            infer_ms = (done - job.submitted) * 1e3
            head = self._p.head
            for k, m in enumerate(job.members):
                t0 = time.perf_counter()
                result = head.decode([o[k] for o in outputs], m.geo, self._detect)
                result.source, result.stream, result.frame = m.item.source, m.item.stream, m.item.frame
                result.timing = Timings(m.prep_ms, infer_ms, (time.perf_counter() - t0) * 1e3)
                self._deliver(m.index, result, m.image)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the waiting side
            self._fail(exc)

    # -- shutdown -----------------------------------------------------------
    def close(self) -> None:
        """Stop reading, drain or cancel requests in flight, join the run's threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._source.close()
        self._feeder.join(timeout=_JOIN_S)
        if self._feeder.is_alive():
            log.warning("the source did not return within %.0f s; its reader thread is left behind", _JOIN_S)
        deadline = time.perf_counter() + self._timeout
        with self._cond:
            while self._inflight and time.perf_counter() < deadline:
                self._cond.wait(_POLL_S)
            hung = bool(self._inflight)
        if hung:
            self._p.mark_broken()
            self._p.cancel_busy()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.stats.finished = time.perf_counter()
        self._p.detach(self)

    def __enter__(self) -> StreamRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
