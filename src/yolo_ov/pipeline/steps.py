"""One request cycle, written once: prepare -> frames, pack, start, finish -> result.

Every way of calling a model goes through these steps: a stream run
(:class:`~yolo_ov.pipeline.run.StreamRun`), the ``submit()`` front
(:class:`~yolo_ov.pipeline.submit.Submitter`) and the latency path
(``Detector.__call__``). They differ only in how inputs arrive and how
results leave (an ordered iterator, futures, a return value).

**Fan-out / fan-in.** One input may become several frames: a
:class:`FanOut` splits the decoded image into :class:`Part` s (views of the
image, no copy, each with its offset in the image), every part is letterboxed
and inferred as a frame of its own, and when the last part's result is in the
fan-out merges them into the input's one result (:class:`Group`). Without a
fan-out (``None``, the default) an input is one :class:`Frame`, exactly as
before, with no per-frame object added. Backpressure counts frames: a
stream's read-ahead bound and the request slots are taken per frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..config import DetectConfig
from ..errors import InferenceError, InputError
from ..heads import Head
from ..imaging.decode import ImageInput, load_image_for
from ..imaging.letterbox import PAD_VALUE
from ..results import Timings
from ..runtime.engine import Engine
from .slots import SlotKeeper

__all__ = [
    "FanOut",
    "Frame",
    "Group",
    "Part",
    "Request",
    "decode",
    "finish",
    "infer_frames",
    "iter_parts",
    "pack",
    "prepare",
    "prepare_parts",
    "start",
]

#: What a head returns for one frame (``Detections`` for boxes, ``Classification``...).
Result = Any


@dataclass(frozen=True, slots=True)
class Part:
    """One frame of a fanned-out input: a view of the decoded image and where it sits in it.

    Attributes:
        image: the pixels of this part (a numpy slice of the image: no copy).
        offset: ``(dx, dy)`` of the part's top-left corner in the image.
    """

    image: np.ndarray
    offset: tuple[int, int] = (0, 0)


@runtime_checkable
class FanOut(Protocol):
    """How one input becomes several frames and their results one result (tiles, crops).

    ``split`` sees the decoded BGR image and its ``(h, w)``; ``merge`` gets the
    parts' results in the order of ``split``'s parts (each in its part's own
    coordinates) and returns the input's result in the image's coordinates.
    """

    def split(self, image: np.ndarray, original_hw: tuple[int, int]) -> list[Part]: ...

    def merge(self, results: list[Result], parts: list[Part], original_hw: tuple[int, int]) -> Result: ...


class Group:
    """The frames of one fanned-out input: their results, gathered until the last one is in.

    Thread-safe (parts finish on different workers). :meth:`add` returns the
    merged result for the call that completes the group; :meth:`fail` is true
    only the first time, so a failing input is reported once.
    """

    __slots__ = ("_left", "_lock", "failed", "fanout", "image", "infer_ms", "original_hw", "parts", "post_ms",
                 "prep_ms", "results", "units")

    def __init__(self, fanout: FanOut, parts: list[Part], original_hw: tuple[int, int],
                 image: np.ndarray | None = None) -> None:
        self.fanout = fanout
        self.image = image  # the decoded input, kept for callers that draw (``with_images``)
        self.parts = parts
        self.original_hw = original_hw
        self.results: list[Result] = [None] * len(parts)
        self.units = 1  # read-ahead units the input holds (a stream takes one per frame)
        self.failed = False
        self.prep_ms = 0.0
        self.infer_ms = 0.0
        self.post_ms = 0.0
        self._left = len(parts)
        self._lock = threading.Lock()

    def add(self, part: int, result: Result) -> Result | None:
        """Record one part's result; the merged result once every part is in (else ``None``)."""
        with self._lock:
            if self.failed:
                return None
            self.results[part] = result
            timing = getattr(result, "timing", None)
            if timing is not None:
                self.prep_ms += timing.preprocess_ms
                self.infer_ms = max(self.infer_ms, timing.inference_ms)
                self.post_ms += timing.postprocess_ms
            self._left -= 1
            if self._left:
                return None
        t0 = time.perf_counter()
        merged = self.fanout.merge(self.results, self.parts, self.original_hw)
        if hasattr(merged, "timing"):
            merged.timing = Timings(self.prep_ms, self.infer_ms, self.post_ms + (time.perf_counter() - t0) * 1e3)
        self.results = []  # the parts' results are in the merged one now
        return merged

    def fail(self) -> bool:
        """Mark the input failed; ``True`` only for the first failing part."""
        with self._lock:
            first = not self.failed
            self.failed = True
            return first


@dataclass(slots=True)
class Frame:
    """One frame on its way through a request: a whole input, or one part of a fanned-out one.

    ``key`` and ``item`` belong to the caller (a stream's input index and
    source item; submit's future and source name); ``group`` is ``None`` when
    the frame is the whole input.
    """

    data: np.ndarray
    geo: Any
    lane: Engine
    prep_ms: float
    key: Any = None
    item: Any = None
    image: np.ndarray | None = None
    detect: DetectConfig | None = None
    group: Group | None = None
    part: int = 0
    queued: float = 0.0


@dataclass(slots=True)
class Request:
    """One inference request: the lane, its frames, the packed batch, when it started."""

    lane: Engine
    frames: list[Frame]
    batch: np.ndarray
    started: float = 0.0


# -- prepare --------------------------------------------------------------------------------
def decode(data: ImageInput, head: Head, base_hw: tuple[int, int], source: str, *, reduce: bool,
           fanout: FanOut | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an input for the model's own input shape: ``(pixels, original (h, w))``.

    A fanned-out input is decoded in full (its parts need every pixel), so
    the JPEG size reduction applies only to whole-image inputs.
    """
    return load_image_for(data, base_hw, source, reduce=reduce and fanout is None, reduction=head.decode_reduction)


def prepare(head: Head, image: np.ndarray, original_hw: tuple[int, int], lane: Engine, t0: float, *,
            key: Any = None, item: Any = None, keep_image: bool = False, detect: DetectConfig | None = None) -> Frame:
    """One input as one frame: the head's letterbox into ``lane``'s shape (``t0``: when decoding began)."""
    data, geo = head.prepare(image, lane.input_hw, original_hw)
    return Frame(data, geo, lane, (time.perf_counter() - t0) * 1e3, key, item, image if keep_image else None, detect)


def prepare_parts(head: Head, image: np.ndarray, original_hw: tuple[int, int], fanout: FanOut,
                  lane_for: Callable[[tuple[int, int]], Engine], t0: float, *, key: Any = None, item: Any = None,
                  keep_image: bool = False, detect: DetectConfig | None = None) -> list[Frame]:
    """One input as the frames of its parts (``fanout.split``), sharing one :class:`Group`.

    Raises:
        InputError: the fan-out gave no part, or an empty one (the whole input fails).
    """
    return list(iter_parts(head, image, original_hw, fanout, lane_for, t0, key=key, item=item,
                           keep_image=keep_image, detect=detect))


def iter_parts(head: Head, image: np.ndarray, original_hw: tuple[int, int], fanout: FanOut,
               lane_for: Callable[[tuple[int, int]], Engine], t0: float, *, key: Any = None, item: Any = None,
               keep_image: bool = False, detect: DetectConfig | None = None) -> Iterator[Frame]:
    """:func:`prepare_parts` one frame at a time, so a caller can start each part's request as soon as it is
    letterboxed (the latency path: the host prepares part k+1 while the device runs part k)."""
    parts = list(fanout.split(image, original_hw))
    source = getattr(item, "source", item) if item is not None else "image"
    if not parts:
        raise InputError(f"{source}: the fan-out split the image into no part", str(source))
    group = Group(fanout, parts, original_hw, image if keep_image else None)
    for k, part in enumerate(parts):
        hw = (int(part.image.shape[0]), int(part.image.shape[1]))
        if part.image.ndim != 3 or hw[0] == 0 or hw[1] == 0:
            raise InputError(f"{source}: part {k} of the fan-out is an empty image of shape {part.image.shape}",
                             str(source))
        lane = lane_for(hw)
        data, geo = head.prepare(part.image, lane.input_hw, hw)
        yield Frame(data, geo, lane, (time.perf_counter() - t0) * 1e3, key, item, None, detect, group, k)
        t0 = time.perf_counter()


# -- pack, start ---------------------------------------------------------------------------------
def pack(frames: Sequence[Frame], lane: Engine) -> np.ndarray:
    """The frames of one request as the lane's batch (a partly filled batch is padded)."""
    if lane.batch == 1:
        return frames[0].data[None]
    batch = np.full((lane.batch, *lane.input_hw, 3), PAD_VALUE, np.uint8)
    for i, frame in enumerate(frames):
        batch[i] = frame.data
    return batch


def start(keeper: SlotKeeper, request: Request, on_done: Callable[[Request, Any, float], None], *,
          stop: threading.Event | None = None, on_wait: Callable[[], None] | None = None,
          register: Callable[[Request], None] | None = None) -> bool:
    """Take a request slot, time-stamp ``request`` and start it; ``False`` if ``stop`` came first.

    ``register`` sees the request before the engine may call back (so the
    caller's in-flight table is never behind its callback). If the engine
    refuses to start, the slot is given back and the error raised.
    """
    if not keeper.acquire(stop, on_wait):
        return False
    request.started = time.perf_counter()
    if register is not None:
        register(request)
    try:
        request.lane.start(request.batch, lambda outputs, done: on_done(request, outputs, done))
    except BaseException:
        keeper.release()
        raise
    return True


# -- finish -------------------------------------------------------------------------------
def finish(head: Head, outputs: Sequence[np.ndarray], k: int, frame: Frame, cfg: DetectConfig,
           infer_ms: float) -> Result:
    """The ``k``-th frame of a request decoded by the head, with its timings."""
    t0 = time.perf_counter()
    result = head.decode([o[k] for o in outputs], frame.geo, cfg)
    result.timing = Timings(frame.prep_ms, infer_ms, (time.perf_counter() - t0) * 1e3)
    return result


def infer_frames(keeper: SlotKeeper, frames: Iterable[Frame], head: Head, cfg: DetectConfig) -> Result:
    """The latency path's fan-out: every frame of one input in flight at once, merged into one result.

    Each frame is its own request through ``keeper`` (so the parts share the
    request slots with streams and ``submit()``), started as soon as ``frames``
    yields it; while later parts are prepared and wait for a slot, the parts
    that came back are decoded, so host work hides behind the device's. The
    call waits for all of them, and a request older than the keeper's
    ``timeout_s`` is a hang. An error while preparing a part waits for the
    parts already in flight before it is raised.

    Raises:
        InferenceError: a request failed or hung.
    """
    done = threading.Condition()
    answers: list[tuple[Request, Any, float]] = []
    started: dict[int, float] = {}
    state = {"total": 0, "finished": 0, "merged": None, "error": None}

    def on_done(request: Request, outputs: Any, finished: float) -> None:
        keeper.release()
        with done:
            answers.append((request, outputs, finished))
            started.pop(id(request), None)
            done.notify_all()

    def register(request: Request) -> None:
        with done:
            started[id(request)] = request.started

    def collect(block: bool) -> None:
        with done:
            while block and not answers:
                keeper.check(started.values())
                done.wait(0.05)
            ready = answers[:]
            answers.clear()
        for request, outputs, finished in ready:
            state["finished"] += 1
            if isinstance(outputs, BaseException):
                if state["error"] is None:
                    state["error"] = outputs
                continue
            if state["error"] is None:
                frame = request.frames[0]
                assert frame.group is not None
                result = finish(head, outputs, 0, frame, cfg, (finished - request.started) * 1e3)
                merged = frame.group.add(frame.part, result)
                if merged is not None:  # an empty Detections is falsy: test for None, not truth
                    state["merged"] = merged

    def check() -> None:
        collect(block=False)
        with done:
            keeper.check(started.values())

    try:
        for frame in frames:
            request = Request(frame.lane, [frame], pack([frame], frame.lane))
            try:
                start(keeper, request, on_done, on_wait=check, register=register)
            except BaseException:
                with done:
                    started.pop(id(request), None)  # never started: nothing to wait for
                raise
            state["total"] += 1
            collect(block=False)
    finally:
        while state["finished"] < state["total"]:
            collect(block=True)
    error = state["error"]
    if error is not None:
        raise error if isinstance(error, InferenceError) else InferenceError(f"inference failed: {error}")
    return state["merged"]
