"""``Pipeline``: the throughput engine, built from an engine, a head and settings.

It owns the request slots (:class:`~yolo_ov.pipeline.slots.SlotKeeper`: a
bound on requests in flight shared by every caller, the hang check), the
compiled input shapes (:class:`~yolo_ov.pipeline.lanes.LaneSet`), any number
of concurrent :class:`~yolo_ov.pipeline.run.StreamRun` s and the ``submit()``
front (:class:`~yolo_ov.pipeline.submit.Submitter`). Those children are given
the slot keeper, the lanes, the head and the settings, never the pipeline, so
nothing imports back into this module. It knows nothing about tasks: the head
prepares each image and decodes each result.
:class:`~yolo_ov.Detector` builds one and owns it.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..config import DetectConfig
from ..errors import ConfigError
from ..heads import Head
from ..imaging.decode import ImageInput
from ..io.sources import FrameSource, open_source
from ..runtime.engine import Engine
from .config import MAX_AUTO_WORKERS, PipelineConfig, Specialize
from .lanes import LaneSet, ShapePlanner
from .payoff import video_shape_pays_off
from .run import RunStats, StreamRun
from .slots import SlotKeeper
from .steps import FanOut
from .submit import Submitter

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
    # Without this, a pipeline left open at exit can have its request queues
    # destroyed during interpreter teardown after OpenVINO's own objects, which
    # aborts the process ("terminate called without an active exception").
    # The owner hook also releases the base engine while the runtime is alive.
    for pipeline in list(_OPEN):
        pipeline.close()
        if pipeline.on_exit is not None:
            pipeline.on_exit()


def optimal_requests(engine: Engine) -> int:
    """OpenVINO's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` for ``engine`` (1 when it does not say)."""
    info = getattr(engine, "info", None)
    return max(int(getattr(info, "optimal_requests", 1) or 1), 1)


class Pipeline:
    """Many requests in flight on one compiled model, for streams and for ``submit()``.

    Args:
        engine: the base engine (the model's own input shape); the caller owns it.
        head: decodes each image's outputs (and prepares each image).
        detect: default detection settings (a run or a submit may override them).
        config: :class:`PipelineConfig`.
        make_engine: compiles the model for another ``(h, w)`` input shape
            (shape specialisation); ``None`` disables specialisation.
        stride: the model stride (specialised shapes are multiples of it).
        device: for messages.

    Example:
        >>> det = Detector("yolov8n_openvino_model", mode="throughput")  # doctest: +SKIP
        >>> for result in det.pipeline().stream("images/"):  # doctest: +SKIP
        ...     print(result.source, len(result))
    """

    def __init__(self, engine: Engine, head: Head, *, detect: DetectConfig | None = None,
                 config: PipelineConfig | None = None,
                 make_engine: Callable[[tuple[int, int]], Engine] | None = None,
                 stride: int = 32, device: str = "CPU") -> None:
        self.config = config or PipelineConfig()
        self.head = head
        self.detect = detect or DetectConfig()
        self.names = head.names
        self.stride = stride
        self.device = device
        self.num_requests = self.config.num_requests or REQUESTS_PER_OPTIMAL * optimal_requests(engine)
        self.lanes = LaneSet(engine, make_engine if head.specializable else None,
                             jobs=self.num_requests, max_shapes=self.config.max_shapes)
        #: The request slots, the hang check and the broken state, shared by every run and by submit().
        self.keeper = SlotKeeper(self.num_requests, timeout_s=self.config.timeout_s, device=device,
                                 cancel=self.cancel_busy)
        self._runs: set[StreamRun] = set()
        self._lock = threading.Lock()
        self._submitter: Submitter | None = None
        self._closed = False
        #: Called at interpreter exit after closing (the owner releases its engine there).
        self.on_exit: Callable[[], None] | None = None
        _track(self)

    # -- request slots, shared by every run and by submit() -----------------
    def mark_broken(self) -> None:
        """After a hung request the device state is unknown: refuse further work."""
        self.keeper.mark_broken()

    def cancel_busy(self) -> None:
        for lane in self.lanes.all():
            lane.cancel()

    @property
    def base(self) -> Engine:
        return self.lanes.base

    @property
    def compiled_shapes(self) -> list[tuple[int, int]]:
        """Input shapes compiled so far, the model's own first (never twice)."""
        return self.lanes.shapes

    def wait_compiled(self, timeout: float | None = None) -> list[tuple[int, int]]:
        """Block until the shapes being compiled in the background are ready; the compiled shapes.

        A live run never waits for a compiler (its frames go to a compiled
        shape meanwhile; a file's run waits); call this between runs when the
        next live run must use the specialised shapes from its first frame
        (benchmarks, tests).
        """
        self.lanes.wait_compiled(timeout)
        return self.compiled_shapes

    def check_usable(self) -> None:
        if self._closed:
            raise ConfigError("this pipeline is closed; make a new Detector to run more inputs")
        self.keeper.check_usable()

    # -- streams --------------------------------------------------------------
    def specialisation_mode(self, source: FrameSource, head: Head | None = None) -> str:
        """``off``, ``exact`` (videos/cameras) or ``bucket`` (image folders, opt-in) for this source.

        ``auto`` keeps a video file at the model's own shape when it is too
        short to repay compiling its shape (:mod:`~yolo_ov.pipeline.payoff`).
        """
        spec = self.config.specialize
        if spec is Specialize.OFF or not (head or self.head).specializable:
            return "off"
        if source.video:
            if spec is Specialize.AUTO and not video_shape_pays_off(
                    source.expected_frames, source.frame_hw, self.base.input_hw, self.stride, self.compiled_shapes):
                return "off"
            return "exact"
        return "bucket" if spec is Specialize.ON else "off"

    def stream(self, source: Any, *, ordered: bool | None = None, with_images: bool = False,
               drop: str | None = "auto", callback: Callable[[Any], None] | None = None,
               detect: DetectConfig | None = None, fanout: FanOut | None = None,
               head: Head | None = None) -> StreamRun:
        """Start a run over ``source`` (anything :func:`~yolo_ov.io.sources.open_source` takes).

        Several runs may be active at once on one pipeline: they share the
        request slots and the compiled shapes. Returns a :class:`StreamRun`:
        iterate it for results (or, with ``callback``, call its ``wait()``).
        ``fanout`` makes each input several frames merged into one result;
        ``head`` decodes this run's results instead of the pipeline's head
        (validation adds what it scores without touching anyone else's head).
        """
        self.check_usable()
        run_head = head or self.head
        src = open_source(source, drop=drop)
        planner = ShapePlanner(self.lanes, stride=self.stride, mode=self.specialisation_mode(src, run_head),
                               wait=not src.live)
        batch = self.base.batch
        per_request = self.num_requests * batch
        if self.config.max_pending is not None:
            max_pending = self.config.max_pending
        elif src.live:
            max_pending = per_request + batch
        else:
            max_pending = max(4 * per_request, 16)
        max_pending = max(max_pending, batch)
        lookahead = 1 if src.live else max((self.config.workers or MAX_AUTO_WORKERS) * 2, batch)
        # Newest-frame sources: as many frames in flight as the device runs at once (OpenVINO's optimal
        # number of requests), each taken from its camera only when a request is free. The extra
        # requests that keep a folder's device busy while the host decodes would only make a camera's
        # frame wait behind another one: its reader thread has already read it.
        fresh = (self.config.num_requests or optimal_requests(self.base)) * batch if src.latest else None
        run_ordered = self.config.ordered if ordered is None else ordered
        run = StreamRun(self.keeper, self.lanes, run_head, src, planner, settings=self.config, ordered=run_ordered,
                        max_pending=max_pending, lookahead=lookahead, with_images=with_images, callback=callback,
                        detect=detect or self.detect, fresh=fresh, fanout=fanout, on_close=self.detach)
        with self._lock:
            self._runs.add(run)
        return run

    def run_callback(self, source: Any, callback: Callable[[Any], None], *, drop: str | None = "auto",
                     detect: DetectConfig | None = None, fanout: FanOut | None = None) -> RunStats:
        """OpenVINO's callback style: ``callback(result)`` is called from a worker thread
        as each result completes (completion order); returns when all are done.

        An exception raised by ``callback`` stops the run and is re-raised here.
        """
        return self.stream(source, ordered=False, drop=drop, callback=callback, detect=detect, fanout=fanout).wait()

    def detach(self, run: StreamRun) -> None:
        """Called by a run when it closes."""
        with self._lock:
            self._runs.discard(run)

    # -- submit() ----------------------------------------------------------------
    def submit(self, image: ImageInput, *, detect: DetectConfig | None = None,
               source: str | None = None, fanout: FanOut | None = None) -> Future:
        """One image in, a :class:`~concurrent.futures.Future` of its result out (see :class:`Submitter`)."""
        self.check_usable()
        with self._lock:
            if self._submitter is None:
                self._submitter = Submitter(self.keeper, self.base, self.head, self.config)
            submitter = self._submitter
        return submitter.submit(image, detect=detect or self.detect, source=source, fanout=fanout)

    @property
    def submitter(self) -> Submitter | None:
        """The ``submit()`` front, once the first image was submitted (for its counters)."""
        return self._submitter

    # -- lifetime --------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close every run and the submitter, wait for requests in flight, release the extra shapes.

        Idempotent; also run at interpreter exit for pipelines still open, so
        OpenVINO's request queues are never torn down after the runtime.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runs = list(self._runs)
            submitter = self._submitter
        for run in runs:
            run.close()
        if submitter is not None:
            submitter.close()
        if not self.keeper.broken:
            for lane in self.lanes.all():
                lane.wait_all()
        self.lanes.close()
        _OPEN.discard(self)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
