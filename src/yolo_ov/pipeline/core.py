"""``Pipeline``: the throughput engine built on one compiled ``Detector``.

It owns one ``AsyncInferQueue`` per compiled input shape, created once and
reused by every run, and a process-wide bound on requests in flight. Each
call to :meth:`Pipeline.stream` starts a :class:`~yolo_ov.pipeline.run.StreamRun`
(one at a time per pipeline).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Mode
from ..errors import ConfigError, InferenceError
from ..runtime import Engine, load
from ..sources import FrameSource, open_source
from .config import PipelineConfig, Specialize
from .lanes import Lane, ShapePlanner
from .run import RunStats, StreamRun

if TYPE_CHECKING:
    from ..detector import Detector

__all__ = ["REQUESTS_PER_OPTIMAL", "Pipeline"]

#: Requests in flight per ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``. Measured on a
#: 2-core CPU (benchmarks/results/throughput.md): twice the optimal number
#: keeps the streams busy while the host decodes and post-processes
#: (JPEG folder 59 -> 75 img/s, in-memory frames +2%); more adds nothing.
REQUESTS_PER_OPTIMAL = 2


_OPEN: weakref.WeakSet[Pipeline] = weakref.WeakSet()
_ATEXIT = False


def _track(pipeline: Pipeline) -> None:
    """Remember an open pipeline; the first one registers the exit hook (nothing on import)."""
    global _ATEXIT
    _OPEN.add(pipeline)
    if not _ATEXIT:
        _ATEXIT = True
        atexit.register(_close_open_pipelines)


def _close_open_pipelines() -> None:
    # Without this, a Detector left open at exit can have its request queues
    # destroyed during interpreter teardown after OpenVINO's own objects,
    # which aborts the process ("terminate called without an active exception").
    # Closing the owning Detector too releases its compiled model while the
    # runtime is still fully alive (measured: closing only the queues still
    # aborted about one exit in six).
    for pipeline in list(_OPEN):
        owner = pipeline._owner()
        if owner is not None:
            owner.close()
        pipeline.close()


class Pipeline:
    """Many requests in flight on one compiled model, results in order.

    Args:
        detector: a loaded :class:`~yolo_ov.Detector` (its compiled model is
            the base lane; its detection settings and class names are used).
        config: :class:`PipelineConfig`.

    Example:
        >>> det = Detector("yolov8n_openvino_model", mode="throughput")  # doctest: +SKIP
        >>> with Pipeline(det) as pipe:  # doctest: +SKIP
        ...     for result in pipe.stream("images/"):
        ...         print(result.source, len(result))
    """

    def __init__(self, detector: Detector, config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        # What is needed from the detector, not the detector itself: no
        # reference cycle Detector <-> Pipeline, so both are freed in order.
        engine = detector.engine
        self._owner = weakref.ref(detector)
        self._model_path = detector.model_info.path
        self._runtime = detector.runtime_config
        self.stride = detector.model_info.stride
        self.device = engine.config.device
        self.head = detector.model_info.head
        self.detect = detector.detect_config
        self.names = detector.names
        self.num_requests = (
            self.config.num_requests
            or engine.config.num_requests
            or REQUESTS_PER_OPTIMAL * max(engine.info.optimal_requests, 1)
        )
        self._slots = threading.Semaphore(self.num_requests)
        self._run: StreamRun | None = None
        self._run_lock = threading.Lock()
        self._broken = False
        self._closed = False
        self._jobs: dict[int, Any] = {}
        self.base = self._lane(engine)
        self.lanes: dict[tuple[int, int], Lane] = {}
        _track(self)

    # -- lanes and request slots -------------------------------------------
    def _lane(self, engine: Engine) -> Lane:
        return Lane(engine, self.num_requests, self._jobs, self._on_done, self._on_error)

    def _make_lane(self, shape: tuple[int, int]) -> Lane:
        # Each compiled model pins its CPU streams to the same cores: two shapes
        # in flight at once would then share one core while the other idles
        # (measured: specialised folder 69 img/s pinned vs 81 unpinned on 2
        # cores). Extra shapes are therefore compiled unpinned.
        extra = {"ENABLE_CPU_PINNING": False} if self._runtime.device.split(":")[0].split(".")[0] == "CPU" else None
        engine, _ = load(self._model_path, self._runtime.with_(imgsz=shape), extra_properties=extra)
        return self._lane(engine)

    @staticmethod
    def _on_done(job: Any, output: np.ndarray, done: float) -> None:
        job.run.on_inferred(job, output, done)

    @staticmethod
    def _on_error(job: Any, exc: BaseException) -> None:
        job.run.on_error(job, exc)

    def acquire_request(self, timeout: float) -> bool:
        return self._slots.acquire(timeout=timeout)

    def release_request(self) -> None:
        self._slots.release()

    def mark_broken(self) -> None:
        """After a hung request the device state is unknown: refuse further runs."""
        self._broken = True

    def cancel_busy(self) -> None:
        for lane in (self.base, *self.lanes.values()):
            lane.cancel_busy()

    @property
    def compiled_shapes(self) -> list[tuple[int, int]]:
        """Input shapes compiled so far, the model's own first."""
        return [self.base.hw, *self.lanes]

    # -- runs -----------------------------------------------------------------
    def specialisation_mode(self, source: FrameSource) -> str:
        """``off``, ``exact`` (videos/cameras) or ``bucket`` (image folders) for this source."""
        spec = self.config.specialize
        if spec is Specialize.OFF:
            return "off"
        if spec is Specialize.AUTO and self._runtime.imgsz is not None:
            return "off"  # the user asked for an input size: keep it
        if source.video:
            return "exact"
        if spec is Specialize.AUTO and self._runtime.mode is Mode.LATENCY:
            return "off"  # latency mode on images keeps the model's own shape unless asked
        return "bucket"

    def stream(self, source: Any, *, ordered: bool | None = None, with_images: bool = False,
               drop: str | None = "auto", callback: Callable[[Any], None] | None = None) -> StreamRun:
        """Start a run over ``source`` (anything :func:`~yolo_ov.sources.open_source` takes).

        Returns a :class:`StreamRun`: iterate it for results (or, with
        ``callback``, call its ``wait()``).
        """
        if self._closed:
            raise ConfigError("this pipeline is closed; call Detector.stream() (or make a new Pipeline)")
        if self._broken:
            raise InferenceError("this pipeline had a hung request; create a new Detector to continue")
        with self._run_lock:
            if self._run is not None and not self._run._closed:
                raise ConfigError("this pipeline is already running a stream; finish or close it first")
            src = open_source(source, drop=drop)
            planner = ShapePlanner(self.base, self._make_lane, stride=self.stride,
                                   mode=self.specialisation_mode(src), max_shapes=self.config.max_shapes,
                                   lanes=self.lanes)
            batch = self.base.batch
            per_request = self.num_requests * batch
            if self.config.max_pending is not None:
                max_pending = self.config.max_pending
            elif src.live:
                max_pending = per_request + batch
            else:
                max_pending = max(4 * per_request, 16)
            max_pending = max(max_pending, batch)
            lookahead = 1 if src.live else max(self.config.workers * 2, batch)
            run_ordered = self.config.ordered if ordered is None else ordered
            self._run = StreamRun(self, src, planner, ordered=run_ordered, max_pending=max_pending,
                                  lookahead=lookahead, with_images=with_images, callback=callback)
            return self._run

    def run_callback(self, source: Any, callback: Callable[[Any], None], *, drop: str | None = "auto") -> RunStats:
        """OpenVINO's callback style: ``callback(result)`` is called from a worker thread
        as each result completes (completion order); returns when all are done.

        An exception raised by ``callback`` stops the run and is re-raised here.
        """
        return self.stream(source, ordered=False, drop=drop, callback=callback).wait()

    def detach(self, run: StreamRun) -> None:
        """Called by a run when it closes (drops the pipeline's reference to it)."""
        if self._run is run:
            self._run = None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the running stream (if any), wait for the queues to be idle and release them.

        Idempotent; also run at interpreter exit for pipelines still open, so
        OpenVINO's request queues are never torn down after the runtime.
        """
        if self._closed:
            return
        self._closed = True
        if self._run is not None:
            self._run.close()
        for lane in (self.base, *self.lanes.values()):
            if not self._broken:
                lane.wait_all()
        self.lanes.clear()
        self.base = None  # type: ignore[assignment]
        _OPEN.discard(self)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
