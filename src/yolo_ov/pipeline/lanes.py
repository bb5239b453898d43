"""Compiled input shapes ("lanes") and the choice of lane for each image.

A lane is one compiled model (one input shape) with its one
``AsyncInferQueue``, created once and reused by every run. The callback
copies the output out of the request's buffer (the request is reused as soon
as the callback returns), timestamps completion, and hands the copy to the
run that submitted the job.

Shape specialisation: YOLO is fully convolutional, so a 16:9 frame
letterboxed into 384x640 instead of 640x640 gives the same detections for
60% of the compute. :class:`ShapePlanner` picks each image's lane: the exact
minimal rectangle for video streams, a few coarse buckets for image folders
(so a folder compiles a handful of shapes, not one per aspect ratio), and
never more than ``max_shapes`` extra compiled shapes.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import openvino as ov

from ..errors import InferenceError
from ..preprocess import min_rect_shape
from ..runtime import Engine

__all__ = ["Lane", "ShapePlanner"]

#: Folder buckets: the short side of a specialised shape is rounded up to one
#: of these fractions of the model's side (at 640: 384 for 16:9, 480 for 4:3,
#: 640 otherwise), so at most five shapes are compiled for any folder.
BUCKETS = (9 / 16, 3 / 4, 1.0)


class Lane:
    """One compiled input shape and its ``AsyncInferQueue``.

    ``on_done(job, output_copy, done_time)`` and ``on_error(job, exc)`` are
    called from OpenVINO's callback thread; they must not block. The queue
    only ever holds an integer key as userdata (jobs live in ``registry``
    while in flight), so no reference cycle runs through OpenVINO's objects
    and everything is freed by reference counting, in order.
    """

    def __init__(self, engine: Engine, jobs: int, registry: dict[int, Any],
                 on_done: Callable[[Any, np.ndarray, float], None],
                 on_error: Callable[[Any, BaseException], None]) -> None:
        self.engine = engine
        self.hw: tuple[int, int] = engine.input_hw
        self.batch: int = engine.batch
        self.jobs = jobs
        self._registry = registry
        self.queue = ov.AsyncInferQueue(engine.compiled, jobs)
        self.queue.set_callback(_make_callback(registry, on_done, on_error))

    def submit(self, batch: np.ndarray, job: Any) -> None:
        """Start one request; ``batch`` must stay alive until the callback (zero copy)."""
        key = next(_KEYS)
        self._registry[key] = job
        try:
            self.queue.start_async({0: batch}, userdata=key, share_inputs=True)
        except Exception as exc:  # OpenVINO RuntimeError
            self._registry.pop(key, None)
            raise InferenceError(f"could not start inference: {str(exc).strip().splitlines()[0][:300]}") from exc

    def cancel_busy(self) -> None:
        """Ask OpenVINO to cancel every request still running (used on close after a hang)."""
        for i in range(len(self.queue)):
            try:
                self.queue[i].cancel()
            except Exception:  # noqa: BLE001, S112 - best effort while shutting down
                continue

    def wait_all(self) -> None:
        self.queue.wait_all()


_KEYS = itertools.count()


def _make_callback(registry: dict[int, Any], on_done: Callable[[Any, np.ndarray, float], None],
                   on_error: Callable[[Any, BaseException], None]) -> Callable[[ov.InferRequest, int], None]:
    """The queue's callback: copy the output out of the request, timestamp, hand over."""

    def callback(request: ov.InferRequest, key: int) -> None:
        done = time.perf_counter()
        job = registry.pop(key, None)
        if job is None:  # the run was abandoned after a hang
            return
        try:
            output = np.array(request.get_output_tensor(0).data, copy=True)
        except BaseException as exc:  # noqa: BLE001 - must never propagate into OpenVINO's thread
            on_error(job, InferenceError(f"could not read the inference output ({exc})"))
            return
        try:
            on_done(job, output, done)
        except BaseException as exc:  # noqa: BLE001 - reported to the waiting side instead
            on_error(job, exc)

    return callback


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


class ShapePlanner:
    """Chooses the lane for each image and compiles new shapes on demand (thread-safe).

    Args:
        base: the lane of the model's own input shape (always available).
        make_lane: compiles a lane for an ``(h, w)`` shape.
        stride: the model stride (shapes are multiples of it).
        mode: ``"off"`` (always ``base``), ``"exact"`` (the minimal rectangle
            of each image: videos) or ``"bucket"`` (image folders).
        max_shapes: most shapes compiled besides ``base``; past it an image
            goes to the smallest compiled shape that holds its letterbox, else
            the model's own shape. When specialising, even the model's own
            shape gets a lane of its own (compiled like the others, unpinned),
            so ``base`` only serves ``mode="off"``.
    """

    def __init__(self, base: Lane, make_lane: Callable[[tuple[int, int]], Lane], *, stride: int,
                 mode: str, max_shapes: int, lanes: dict[tuple[int, int], Lane] | None = None) -> None:
        self.base = base
        self._make = make_lane
        self.stride = stride
        self.mode = mode
        self.max_shapes = max_shapes
        self.lanes: dict[tuple[int, int], Lane] = lanes if lanes is not None else {}
        self._lock = threading.Lock()

    def target_shape(self, original_hw: tuple[int, int]) -> tuple[int, int]:
        """The input shape this image would ideally be letterboxed into."""
        imgsz = self.base.hw
        if self.mode == "off":
            return imgsz
        shape = min_rect_shape(original_hw, imgsz, self.stride)
        if self.mode == "bucket":
            shape = bucket_shape(shape, imgsz, self.stride)
        return shape

    def lane_for(self, original_hw: tuple[int, int]) -> Lane:
        shape = self.target_shape(original_hw)
        if self.mode == "off":
            return self.base
        with self._lock:
            lane = self.lanes.get(shape)
            if lane is not None:
                return lane
            if len(self.lanes) < self.max_shapes:
                lane = self._make(shape)
                self.lanes[shape] = lane
                return lane
            holding = [ln for s, ln in self.lanes.items() if s[0] >= shape[0] and s[1] >= shape[1]]
            if holding:
                return min(holding, key=lambda ln: ln.hw[0] * ln.hw[1])
            square = self.lanes.get(self.base.hw)
            if square is None:  # the model's own shape, compiled like the others (unpinned)
                square = self.lanes[self.base.hw] = self._make(self.base.hw)
            return square
