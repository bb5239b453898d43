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
:class:`~yolo_ov.results.Failure`, also when a fan-out
(:class:`~yolo_ov.pipeline.steps.FanOut`) makes it several frames: their
results are merged before delivery, in input order, and a part that cannot be
prepared fails the whole input once. The read-ahead bound counts frames.
The request cycle itself (prepare, pack, start, finish) is
:mod:`~yolo_ov.pipeline.steps`; the request slots and the hang check are the
:class:`~yolo_ov.pipeline.slots.SlotKeeper` shared with ``submit()``. Closing (normally, on an exception, on
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
from typing import Any

from ..config import DetectConfig
from ..errors import InferenceError, InputError
from ..heads import Head
from ..io.sources import FrameSource, SourceItem
from ..results import Failure
from .config import DEFAULT_WORKERS, LARGE_IMAGE_PIXELS, MAX_AUTO_WORKERS, PipelineConfig
from .lanes import LaneSet, ShapePlanner
from .slots import SlotKeeper
from .steps import FanOut, Frame, Request, decode, finish, pack, prepare, prepare_parts, start

__all__ = ["RunStats", "StreamRun"]

log = logging.getLogger(__name__)

Result = Any  # what the head returns (Detections for boxes), or a Failure
_POLL_S = 0.1
#: How long close() waits for a source blocked in a read (a camera) to return.
_JOIN_S = 5.0
_Pending = tuple[int, SourceItem, Future]


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


class StreamRun:
    """An iterator over the results of one source; also a context manager.

    With ``with_images=True`` it yields ``(result, image)`` pairs (the
    decoded BGR image, ``None`` for a failure) for sinks that draw. A run gets
    the parts of the pipeline it uses (the request slots, the lanes, the head,
    the settings), not the pipeline: ``on_close`` tells the owner it ended.
    """

    def __init__(self, keeper: SlotKeeper, lanes: LaneSet, head: Head, source: FrameSource,
                 planner: ShapePlanner, *, settings: PipelineConfig, ordered: bool, max_pending: int, lookahead: int,
                 with_images: bool = False, callback: Callable[[Any], None] | None = None,
                 detect: DetectConfig | None = None, fresh: int | None = None, fanout: FanOut | None = None,
                 on_close: Callable[[StreamRun], None] | None = None) -> None:
        self._keeper = keeper
        self._lanes = lanes
        self._head = head
        self._detect = detect or DetectConfig()
        self._source = source
        self._planner = planner
        self._fanout = fanout
        self._ordered = ordered
        self._with_images = with_images
        self._callback = callback
        self._lookahead = lookahead
        self._max_pending = max_pending
        self._timeout = settings.timeout_s
        self._on_close = on_close
        self.stats = RunStats(skipped=source.skipped)
        self._cond = threading.Condition()
        self._ready: dict[int, Any] = {}
        self._completed: deque[Any] = deque()
        self._next_out = 0
        self._yielded = 0
        self._total: int | None = None
        self._error: BaseException | None = None
        self._inflight: dict[int, Request] = {}
        self._stop = threading.Event()
        #: Read-ahead, in frames: one unit per input when it is read, the rest of a fanned-out
        #: input's frames before they are dispatched (see _dispatch).
        self._capacity = threading.Semaphore(max_pending)
        #: Newest-frame sources: inputs taken but not yet inferred (None: no such bound).
        self._fresh = threading.Semaphore(fresh) if fresh else None
        workers = settings.workers
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
        """Called with the lock held: a request older than ``timeout_s`` is an error (the keeper turns broken)."""
        if self._inflight:
            self._keeper.check([r.started for r in self._inflight.values()])

    # -- delivery (any thread) ---------------------------------------------
    def _deliver(self, index: int, result: Result, image: Any) -> None:
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

    def _deliver_failure(self, index: int, item: SourceItem, exc: InputError) -> None:
        self._deliver(index, Failure(exc.source or item.source, str(exc), item.stream, item.frame), None)

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = exc
            self._stop.set()
            self._cond.notify_all()

    # -- the feeder thread --------------------------------------------------
    def _feed(self) -> None:
        pending: deque[_Pending] = deque()
        batches: dict[int, list[Frame]] = {}
        n = 0
        items = iter(self._source)
        try:
            while True:
                if not self._acquire(self._capacity, batches, pending):
                    break
                # Newest-frame sources: wait until a frame taken now would go straight to a request.
                # Frames still being prepared hold slots too, and only their requests give them back.
                if self._fresh is not None and not self._acquire(self._fresh, batches, pending):
                    break
                item = next(items, None)
                if item is None:  # the units taken for a next input are not needed (a fan-out may want them)
                    self._capacity.release()
                    self._release_fresh(1)
                    break
                index = n
                n += 1
                self.stats.read = n
                if isinstance(item.data, InputError):
                    self._release_fresh(1)
                    self._deliver_failure(index, item, item.data)
                    continue
                pending.append((index, item, self._pool.submit(self._prepare, index, item)))
                while pending and (len(pending) > self._lookahead or pending[0][2].done()):
                    self._dispatch(pending, batches)
                if self._stop.is_set():
                    break
            while pending and not self._stop.is_set():
                self._dispatch(pending, batches)
            self._flush(batches)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the waiting side
            if not self._stop.is_set():
                self._fail(exc)
        finally:
            for _, _, fut in pending:
                fut.cancel()
            with self._cond:
                self._total = n
                self._cond.notify_all()

    def _acquire(self, slots: threading.Semaphore, batches: dict[int, list[Frame]],
                 pending: deque[_Pending] | None = None) -> bool:
        """Take one of ``slots``; ``False`` when the run stops first.

        When none is free, the frames in ``pending`` (if given) are dispatched and
        partly filled batches sent first: they may hold the slots, and the caller
        could otherwise wait forever for an item that sits in one.
        """
        if slots.acquire(blocking=False):
            return True
        while pending and not self._stop.is_set():
            self._dispatch(pending, batches)
        self._flush(batches)
        while not self._stop.is_set():
            if slots.acquire(timeout=_POLL_S):
                return True
        return False

    def _take_more(self, units: int, batches: dict[int, list[Frame]]) -> bool:
        """Take ``units`` more read-ahead units for a fanned-out input's frames (``False``: the run stopped).

        Partly filled batches are sent first when the units are not free: the
        inputs that hold them may sit in one.
        """
        for k in range(units):
            if self._capacity.acquire(blocking=False):
                continue
            self._flush(batches)
            while not self._capacity.acquire(timeout=_POLL_S):
                if self._stop.is_set():
                    if k:
                        self._capacity.release(k)
                    return False
        return True

    def _release_fresh(self, count: int) -> None:
        if self._fresh is not None and count:
            self._fresh.release(count)

    def _prepare(self, index: int, item: SourceItem) -> Frame | list[Frame]:
        t0 = time.perf_counter()
        if self._decoders is None:
            img, original = self._decode(item)
        else:
            with self._decoders:
                img, original = self._decode(item)
                if not self._grown and original[0] * original[1] >= LARGE_IMAGE_PIXELS:
                    self._grown = True  # decided under the semaphore: only one decode runs until then
                    self._decoders.release(MAX_AUTO_WORKERS - DEFAULT_WORKERS)
        if self._fanout is not None:
            return prepare_parts(self._head, img, original, self._fanout, self._planner.lane_for, t0, key=index,
                                 item=item, keep_image=self._with_images)
        return prepare(self._head, img, original, self._planner.lane_for(original), t0, key=index, item=item,
                       keep_image=self._with_images)

    def _decode(self, item: SourceItem) -> tuple[Any, tuple[int, int]]:
        return decode(item.data, self._head, self._lanes.base.input_hw, item.source,
                      reduce=self._detect.fast_decode and not self._with_images, fanout=self._fanout)

    def _dispatch(self, pending: deque[_Pending], batches: dict[int, list[Frame]]) -> None:
        """Hand the oldest prepared input's frames to their lanes' batches (sent when full)."""
        index, item, fut = pending.popleft()
        try:
            prepared = fut.result()
        except InputError as exc:
            self._release_fresh(1)
            self._deliver_failure(index, item, exc)
            return
        if isinstance(prepared, Frame):
            self._add(prepared, batches)
            return
        group = prepared[0].group
        assert group is not None
        # Capacity for all of the input's frames before any is dispatched (an input counts one unit from
        # when it is read, its other frames from here: at most `lookahead` inputs are being prepared).
        # The inputs still pending hold a unit each and cannot give it back before this one goes, so an
        # input with more frames than the rest of the bound waits for everything else and goes alone.
        want = max(1, min(len(prepared), self._max_pending - len(pending)))
        if want > 1 and not self._take_more(want - 1, batches):
            return
        group.units = want
        for frame in prepared:
            self._add(frame, batches)

    def _add(self, frame: Frame, batches: dict[int, list[Frame]]) -> None:
        key = id(frame.lane)
        members = batches.setdefault(key, [])
        members.append(frame)
        if len(members) >= frame.lane.batch:
            self._submit(batches, key)

    def _flush(self, batches: dict[int, list[Frame]]) -> None:
        for key in list(batches):
            self._submit(batches, key)

    def _submit(self, batches: dict[int, list[Frame]], key: int) -> None:
        frames = batches.pop(key, None)
        if not frames:
            return
        lane = frames[0].lane
        request = Request(lane, frames, pack(frames, lane))
        try:
            if not start(self._keeper, request, self._on_done, stop=self._stop, register=self._register):
                return
        except BaseException:
            with self._cond:
                self._inflight.pop(id(request), None)
            raise

    def _register(self, request: Request) -> None:
        with self._cond:
            self._inflight[id(request)] = request
        self.stats.requests += 1
        shape = f"{request.lane.input_hw[0]}x{request.lane.input_hw[1]}"
        self.stats.shapes[shape] = self.stats.shapes.get(shape, 0) + len(request.frames)

    # -- completion (the engine's callback thread, then a worker) -------------
    def _on_done(self, request: Request, outputs: Any, done: float) -> None:
        with self._cond:
            self._inflight.pop(id(request), None)
            self._cond.notify_all()
        self._keeper.release()
        if self._fresh is not None:
            self._release_fresh(sum(1 for f in request.frames if f.part == 0))
        if isinstance(outputs, BaseException):
            exc = outputs
            self._fail(exc if isinstance(exc, InferenceError) else InferenceError(f"inference callback failed: {exc}"))
            return
        if self._stop.is_set():
            return
        try:
            self._pool.submit(self._finish, request, outputs, done)
        except RuntimeError:  # pool already shut down: the run is closing
            return

    def _finish(self, request: Request, outputs: list[Any], done: float) -> None:
        try:
            infer_ms = (done - request.started) * 1e3
            for k, frame in enumerate(request.frames):
                result = finish(self._head, outputs, k, frame, self._detect, infer_ms)
                group = frame.group
                image = frame.image
                if group is not None:
                    result = group.add(frame.part, result)
                    if result is None:
                        continue
                    image = group.image
                    if group.units > 1:  # the frames are done: one result holds one unit until it is taken
                        self._capacity.release(group.units - 1)
                item = frame.item
                result.source, result.stream, result.frame = item.source, item.stream, item.frame
                self._deliver(frame.key, result, image)
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
            self._keeper.mark_broken()
            self._keeper.cancel_busy()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.stats.finished = time.perf_counter()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> StreamRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
