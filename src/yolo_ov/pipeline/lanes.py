"""Compiled input shapes ("lanes") and the choice of lane for each image.

A lane is one :class:`~yolo_ov.runtime.engine.Engine`: one compiled input shape with
its asynchronous requests, created once and shared by every run and by
``submit()``. The model's own shape is the base lane and is never compiled a
second time.

Shape specialisation: YOLO is fully convolutional, so a 16:9 frame
letterboxed into 384x640 instead of 640x640 gives nearly the same detections
for 60% of the compute. :class:`ShapePlanner` picks each image's lane: the
exact minimal rectangle for video streams, a few coarse buckets for image
folders (opt-in), and never more than ``max_shapes`` extra compiled shapes.
A shape not compiled yet is compiled **in the background**: for a live
source, until it is ready, images go to the smallest compiled lane that holds
them (at worst the model's own shape), so a camera's frames never wait for a
compiler. A file waits for the compile instead (``wait=True``): which frames
run at which shape must not depend on how fast the compiler was, or the same
video would give slightly different results from one run to the next.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from ..imaging.letterbox import min_rect_shape
from ..runtime.engine import Engine

__all__ = ["BUCKETS", "LaneSet", "ShapePlanner", "bucket_shape"]

log = logging.getLogger(__name__)

#: Folder buckets: the short side of a specialised shape is rounded up to one
#: of these fractions of the model's side (at 640: 384 for 16:9, 480 for 4:3,
#: 640 otherwise), so at most five shapes are compiled for any folder.
BUCKETS = (9 / 16, 3 / 4, 1.0)


def bucket_shape(shape: tuple[int, int], imgsz: tuple[int, int], stride: int) -> tuple[int, int]:
    """Round a minimal rectangle's short side up to the next bucket (see ``BUCKETS``)."""
    h, w = shape
    H, W = imgsz
    if h <= w:  # landscape: the height is the short side
        for f in BUCKETS:
            b = min(H, math.ceil(H * f / stride) * stride)
            if h <= b:
                return (b, w)
        return (H, w)
    for f in BUCKETS:
        b = min(W, math.ceil(W * f / stride) * stride)
        if w <= b:
            return (h, b)
    return (h, W)


class LaneSet:
    """The compiled shapes of one pipeline: the base engine plus extra shapes, compiled in the background.

    Args:
        base: the engine of the model's own input shape (owned by the caller).
        make_engine: compiles an engine for an ``(h, w)`` shape (blocking).
        jobs: asynchronous requests every lane reserves (the pipeline's request slots).
        max_shapes: most extra shapes compiled.
    """

    def __init__(self, base: Engine, make_engine: Callable[[tuple[int, int]], Engine] | None, *, jobs: int,
                 max_shapes: int) -> None:
        self.base = base
        self._make = make_engine
        self.jobs = jobs
        self.max_shapes = max_shapes if make_engine is not None else 0
        self.extra: dict[tuple[int, int], Engine] = {}
        self._compiling: dict[tuple[int, int], threading.Thread] = {}
        self._failed: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self._closed = False
        base.reserve(jobs)

    def all(self) -> list[Engine]:
        with self._lock:
            return [self.base, *self.extra.values()]

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Input shapes compiled so far, the model's own first."""
        with self._lock:
            return [self.base.input_hw, *self.extra]

    def get(self, shape: tuple[int, int]) -> Engine | None:
        """The lane of exactly ``shape``, starting its compilation in the background when
        it is not compiled yet and there is room (then ``None`` until it is ready)."""
        if shape == self.base.input_hw:
            return self.base
        with self._lock:
            lane = self.extra.get(shape)
            if lane is not None or self._closed:
                return lane
            room = len(self.extra) + len(self._compiling) < self.max_shapes
            if room and shape not in self._compiling and shape not in self._failed:
                thread = threading.Thread(target=self._compile, args=(shape,), name=f"yolo-ov-compile-{shape}",
                                          daemon=True)
                self._compiling[shape] = thread
                thread.start()
        return None

    def compiled(self, shape: tuple[int, int]) -> Engine | None:
        """The lane of exactly ``shape`` once its compilation (started by :meth:`get`) has ended; ``None``
        when it failed, was not started (no room) or the set is closed."""
        with self._lock:
            thread = self._compiling.get(shape)
        if thread is not None:
            thread.join()
        with self._lock:
            return self.extra.get(shape)

    def holding(self, shape: tuple[int, int]) -> Engine:
        """The smallest compiled lane whose input holds a ``shape`` letterbox (the base at worst)."""
        with self._lock:
            fits = [e for s, e in self.extra.items() if s[0] >= shape[0] and s[1] >= shape[1]]
        if not fits:
            return self.base
        return min(fits, key=lambda e: e.input_hw[0] * e.input_hw[1])

    def _compile(self, shape: tuple[int, int]) -> None:
        assert self._make is not None
        try:
            engine = self._make(shape)
            engine.reserve(self.jobs)
        except Exception as exc:  # noqa: BLE001 - a shape that fails to compile is skipped, not fatal
            log.warning("could not compile input shape %s (%s); using the compiled shapes instead", shape, exc)
            with self._lock:
                self._compiling.pop(shape, None)
                self._failed.add(shape)
            return
        with self._lock:
            self._compiling.pop(shape, None)
            if self._closed:
                engine.close()
                return
            self.extra[shape] = engine

    def wait_compiled(self, timeout: float | None = None) -> None:
        """Block until every background compilation has finished (tests, benchmarks)."""
        with self._lock:
            threads = list(self._compiling.values())
        for thread in threads:
            thread.join(timeout)

    def close(self) -> None:
        """Wait for background compilations, then close the extra lanes (the base belongs to the caller)."""
        with self._lock:
            self._closed = True
            threads = list(self._compiling.values())
        for thread in threads:
            thread.join()
        with self._lock:
            extra, self.extra = self.extra, {}
        for engine in extra.values():
            engine.close()


class ShapePlanner:
    """Chooses the lane for each image of one run (thread-safe).

    Args:
        lanes: the pipeline's :class:`LaneSet` (shared by every run).
        stride: the model stride (shapes are multiples of it).
        mode: ``"off"`` (always the model's own shape), ``"exact"`` (the
            minimal rectangle of each image: videos) or ``"bucket"`` (image
            folders, opt-in).
        wait: wait for a shape being compiled instead of using a compiled
            one meanwhile (files: the same input, the same shapes, the same
            results on every run); live sources do not wait.
    """

    def __init__(self, lanes: LaneSet, *, stride: int, mode: str, wait: bool = False) -> None:
        self.lanes = lanes
        self.stride = stride
        self.mode = mode
        self.wait = wait

    def target_shape(self, original_hw: tuple[int, int]) -> tuple[int, int]:
        """The input shape this image would ideally be letterboxed into."""
        imgsz = self.lanes.base.input_hw
        if self.mode == "off":
            return imgsz
        shape = min_rect_shape(original_hw, imgsz, self.stride)
        if self.mode == "bucket":
            shape = bucket_shape(shape, imgsz, self.stride)
        return shape

    def lane_for(self, original_hw: tuple[int, int]) -> Engine:
        """The lane to use: the ideal shape if compiled (with ``wait``, once its compile ends), else the
        smallest compiled one that holds it."""
        if self.mode == "off":
            return self.lanes.base
        shape = self.target_shape(original_hw)
        lane = self.lanes.get(shape)
        if lane is None and self.wait:
            lane = self.lanes.compiled(shape)
        return lane if lane is not None else self.lanes.holding(shape)
