"""``Detector``: the front door. One compiled model, every way to call it.

A ``Detector`` loads and compiles a model once, picks the head for its task,
and answers:

* ``det(image)``: the latency path, one synchronous request (safe from any
  number of threads: they take turns on the one request, outputs copied
  before the next);
* ``det.submit(image)`` / ``await det.submit_async(image)``: many
  independent callers (a web server) on the throughput engine;
* ``det.stream(source)``: folders, videos, cameras with many requests in flight.

Its ``mode`` is the OpenVINO performance hint the model is compiled with. The
throughput :class:`~yolo_ov.pipeline.Pipeline` is built from the engine, the
head and the settings, and is owned (made lazily, closed) by the Detector.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import DetectConfig, Mode, RuntimeConfig, SliceConfig
from .default_model import resolve_or_default
from .errors import ConfigError, InputError
from .heads import Head, select_head
from .imaging.decode import ImageInput, describe_source, load_image
from .io.sources import SourceItem
from .pipeline import FanOut, Pipeline, PipelineConfig, RunStats, StreamRun
from .pipeline.slicing import NO_BOXES, SliceFanOut
from .pipeline.steps import decode, finish, infer_frames, iter_parts, pack, prepare
from .results import Detections, Failure
from .runtime.core import CompiledInfo, LoadTimings, load
from .runtime.engine import Engine
from .runtime.model import ModelInfo

if TYPE_CHECKING:
    from .track import TrackerConfig, TrackRun

__all__ = ["Detector"]


class Detector:
    """A YOLO detector compiled for one device and one performance hint.

    Args:
        model: an OpenVINO export folder, ``.xml`` or ``.onnx``; ``None``
            resolves ``$YOLO_OV_MODEL``, the per-user cache, then a download.
        mode: ``latency`` (default), ``throughput`` or ``cumulative_throughput``.
        device: ``CPU``, ``GPU``, ``NPU``, ``AUTO``, ``AUTO:GPU,CPU``, ...
        runtime: a full :class:`RuntimeConfig` instead of ``mode``/``device``
            (giving both is an error).
        detect: detection settings as one :class:`DetectConfig` (or use the
            shortcuts below; giving both is an error).
        conf: minimum confidence (a :class:`DetectConfig` shortcut).
        iou: NMS IoU threshold.
        max_det: most detections per image.
        classes: keep only these class ids.
        agnostic: NMS across classes.
        imgsz: network input size; default the model's own.
        warmup: run one inference at load so the first real call is not slow.
        pipeline: settings of the throughput engine used by :meth:`stream`
            and :meth:`submit` (:class:`~yolo_ov.pipeline.PipelineConfig`:
            requests in flight, ``max_queue``, ``max_wait_ms``, timeouts...).
        slicing: sliced inference for small objects in large images
            (:class:`~yolo_ov.config.SliceConfig`, SAHI's settings): every call,
            stream and submit cuts each image into tiles run as concurrent
            requests and merges them; each call may override it (``slicing=``,
            ``False`` for none). Classification models refuse it.

    Example:
        >>> det = Detector("yolov8n_openvino_model", mode="latency")  # doctest: +SKIP
        >>> result = det("bus.jpg")  # doctest: +SKIP
        >>> result.class_names[:2], result.timing.total_ms  # doctest: +SKIP
        (['bus', 'person'], 21.4)
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        mode: str | Mode | None = None,
        device: str | None = None,
        runtime: RuntimeConfig | None = None,
        detect: DetectConfig | None = None,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        classes: Iterable[int] | None = None,
        agnostic: bool | None = None,
        imgsz: int | tuple[int, int] | None = None,
        warmup: bool = True,
        pipeline: PipelineConfig | None = None,
        slicing: SliceConfig | None = None,
    ) -> None:
        self.slicing_config = slicing
        self.runtime_config = _runtime_config(runtime, mode=mode, device=device, imgsz=imgsz)
        self.detect_config = _detect_config(
            detect, conf=conf, iou=iou, max_det=max_det, classes=classes, agnostic=agnostic
        )
        self.pipeline_config = pipeline
        self._model_path = resolve_or_default(model)
        engine, info = load(self._model_path, self.runtime_config)
        self._attach(engine, info, self._compile_shape, warmup=warmup)

    @classmethod
    def from_engine(
        cls,
        engine: Engine,
        model_info: ModelInfo,
        *,
        runtime: RuntimeConfig | None = None,
        detect: DetectConfig | None = None,
        pipeline: PipelineConfig | None = None,
        make_engine: Callable[[tuple[int, int]], Engine] | None = None,
        warmup: bool = False,
        slicing: SliceConfig | None = None,
    ) -> Detector:
        """A Detector on an engine built elsewhere: the same front door, no model compiled.

        This is how everything above the engine is tested without OpenVINO
        (``FakeEngine`` and a hand-made :class:`ModelInfo`), as httpx's
        clients are tested on a mock transport; it also lets an embedding
        application bring its own :class:`~yolo_ov.runtime.engine.Engine`.
        The Detector owns ``engine`` from here on (``close()`` closes it).
        ``make_engine`` compiles another input shape (shape specialisation);
        without it every image uses the engine's own shape.

        Example:
            >>> from yolo_ov.runtime import FakeEngine
            >>> det = Detector.from_engine(FakeEngine(input_hw=(64, 64)), info)  # doctest: +SKIP
        """
        det = cls.__new__(cls)
        det.runtime_config = runtime or RuntimeConfig()
        det.detect_config = detect or DetectConfig()
        det.pipeline_config = pipeline
        det.slicing_config = slicing
        det._model_path = model_info.path
        det._attach(engine, model_info, make_engine, warmup=warmup)
        return det

    def _attach(self, engine: Engine, info: ModelInfo,
                make_engine: Callable[[tuple[int, int]], Engine] | None, *, warmup: bool) -> None:
        """Take ``engine`` (closed again if the model cannot be served), pick the head, warm up."""
        self._pipeline: Pipeline | None = None
        self._pipeline_lock = threading.Lock()
        self._closed = False
        self._engine = engine
        self.model_info = info
        self._make_engine = make_engine
        self._fanouts: dict[SliceConfig, SliceFanOut] = {}
        try:
            self.head: Head = select_head(self.model_info)
            _check_classes(self.detect_config, self.model_info.num_classes)
            self._checked: set[tuple[int, ...]] = set()  # class filters of per-call overrides already checked
            self._slice_fanout(None, None)  # a bad slicing= or a classifier: refused at load, in one line
        except BaseException:
            self._engine.close()
            raise
        if warmup:
            t0 = time.perf_counter()
            self._engine.infer(np.full((self._engine.batch, *self._engine.input_hw, 3), 114, np.uint8))
            first = (time.perf_counter() - t0) * 1e3
            lt = self.load_timings
            if hasattr(self._engine, "load_timings"):
                self._engine.load_timings = LoadTimings(lt.read_ms, lt.compile_ms, first)

    # -- what was loaded -------------------------------------------------
    @property
    def names(self) -> dict[int, str]:
        """Class id -> name."""
        return self.model_info.names

    @property
    def compiled_info(self) -> CompiledInfo:
        """What OpenVINO chose: streams, optimal requests, precision, devices.

        An engine that is not OpenVINO's (``from_engine``) reports its device as
        ``"engine"``, one optimal request and nothing else.
        """
        info = getattr(self._engine, "info", None)
        if info is not None:
            return info
        h, w = self._engine.input_hw
        return CompiledInfo(device="engine", mode=self.runtime_config.mode.value, num_streams=None,
                            optimal_requests=1, inference_precision=None, inference_threads=None,
                            execution_devices=[], input_shape=(self._engine.batch, 3, h, w), cache_dir=None,
                            enable_mmap=False)

    @property
    def load_timings(self) -> LoadTimings:
        """Read, compile and first-inference milliseconds of this load."""
        return getattr(self._engine, "load_timings", None) or LoadTimings(0.0, 0.0)

    @property
    def engine(self) -> Engine:
        """The compiled model (the :class:`~yolo_ov.runtime.engine.Engine` contract; for bench and tests)."""
        return self._engine

    @property
    def input_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the compiled network input."""
        return self._engine.input_hw

    # -- the latency path ------------------------------------------------
    def __call__(
        self, image: ImageInput, *, source: str | None = None, detect: DetectConfig | None = None,
        fanout: FanOut | None = None, head: Head | None = None, slicing: SliceConfig | bool | None = None,
    ) -> Detections:
        """Detect objects in one image (path, encoded bytes or BGR array).

        ``detect`` overrides the Detector's detection settings for this call
        (validation uses it for its own conf/iou/multi-label settings);
        ``head`` decodes this call's outputs instead of the Detector's head
        (validation adds what it scores; the Detector is never changed).
        ``fanout`` (:class:`~yolo_ov.pipeline.FanOut`) splits the image into
        parts (tiles, crops) whose results are merged into one: the parts go
        out as concurrent requests through the throughput pipeline's request
        slots (made on first use), so one image's tiles are in flight at once.
        ``slicing`` overrides the Detector's ``slicing=`` for this call (a
        :class:`~yolo_ov.config.SliceConfig`, or ``False`` for none): the
        slicing becomes the fan-out.

        Raises:
            InputError: the image cannot be read; the message names it.
            InferenceError: (with ``fanout``) a part's request failed or hung.
        """
        if self._engine.batch != 1:
            raise ConfigError(
                f"this Detector was compiled with batch={self._engine.batch}; "
                "single-image calls need batch=1 (use stream() for batched runs)"
            )
        fanout = self._slice_fanout(fanout, slicing)
        name = source or describe_source(image)
        t0 = time.perf_counter()
        cfg = self._checked_detect(detect) or self.detect_config
        head = head or self.head
        engine = self._engine
        img, original = decode(image, head, engine.input_hw, name, reduce=cfg.fast_decode, fanout=fanout)
        if fanout is not None:
            frames = iter_parts(head, img, original, fanout, lambda hw: engine, t0, item=name)
            result = infer_frames(self.pipeline().keeper, frames, head, cfg)
        else:
            frame = prepare(head, img, original, engine, t0)
            t1 = time.perf_counter()
            outputs = engine.infer(pack([frame], engine))
            result = finish(head, outputs, 0, frame, cfg, (time.perf_counter() - t1) * 1e3)
        result.source = name
        return result

    def predict(self, images: Iterable[ImageInput]) -> list[Detections]:
        """Detect objects in several images, one synchronous request each, in order.

        Raises on the first bad image; use :meth:`iter_predict` to carry on.
        """
        return [self(image) for image in images]

    def iter_predict(self, images: Iterable[ImageInput | SourceItem], *, detect: DetectConfig | None = None,
                     with_images: bool = False, slicing: SliceConfig | bool | None = None) -> Iterator[Any]:
        """Like :meth:`predict`, but yields a :class:`~yolo_ov.results.Failure` for a bad item and goes on.

        Items may be images or the :class:`~yolo_ov.io.sources.SourceItem` of a
        source (``open_source(...)``): results then carry the item's source
        name, stream and frame, and an item that stands for an unreadable
        input yields its failure. ``detect`` overrides the detection settings
        for this run. ``with_images=True`` yields ``(record, image)`` pairs
        (the decoded BGR image, ``None`` for a failure) for outputs that draw,
        as ``stream(with_images=True)`` does; the image is then decoded in
        full (no ``fast_decode`` reduction). ``slicing`` as for :meth:`__call__`.
        """
        fanout = self._slice_fanout(None, slicing)
        for item in images:
            record, image = self._predict_one(item, detect, with_images, fanout)
            yield (record, image) if with_images else record

    def _predict_one(self, item: ImageInput | SourceItem, detect: DetectConfig | None, with_image: bool,
                     fanout: FanOut | None = None) -> tuple[Detections | Failure, np.ndarray | None]:
        if isinstance(item, SourceItem):
            data, name, stream, frame = item.data, item.source, item.stream, item.frame
        else:
            data, name, stream, frame = item, describe_source(item), None, None
        if isinstance(data, InputError):
            return Failure(data.source or name, str(data), stream, frame), None
        try:
            image = load_image(data, name) if with_image else None
            result = self(image if image is not None else data, source=name, detect=detect,
                          fanout=fanout, slicing=None if fanout is not None else False)
        except InputError as exc:
            return Failure(name, str(exc), stream, frame), None
        if stream is not None or frame is not None:
            result.stream, result.frame = stream, frame
        return result, image

    # -- many callers: submit() ----------------------------------------------
    def submit(self, image: ImageInput, *, detect: DetectConfig | None = None,
               source: str | None = None, fanout: FanOut | None = None,
               slicing: SliceConfig | bool | None = None) -> Future:
        """Queue one image on the throughput engine; returns a :class:`~concurrent.futures.Future`.

        Safe from any number of threads at once; shares the request slots
        with :meth:`stream`; per-call detection settings with ``detect``. The
        image is letterboxed to the model's own input shape, so the result is
        the one the latency path gives. With a compiled batch > 1, images of
        different callers are grouped into one request (``max_wait_ms``).

        ``fanout`` splits the image into parts merged into one result (as for
        :meth:`__call__`); the image is accepted or refused whole, and its
        parts count as frames against ``max_queue`` once it is split.
        ``slicing`` as for :meth:`__call__`.

        Raises:
            OverloadedError: ``max_queue`` frames are already waiting (nothing
                was queued; retry later).

        The future's result is the image's :class:`Detections` (or the task's
        result); an unreadable image sets :class:`~yolo_ov.errors.InputError`
        on the future.

        Example:
            >>> det = Detector("yolov8n_openvino_model", mode="throughput")  # doctest: +SKIP
            >>> futures = [det.submit(p) for p in ["a.jpg", "b.jpg"]]  # doctest: +SKIP
            >>> [len(f.result()) for f in futures]  # doctest: +SKIP
        """
        fanout = self._slice_fanout(fanout, slicing)
        return self.pipeline().submit(image, detect=self._checked_detect(detect), source=source, fanout=fanout)

    async def submit_async(self, image: ImageInput, *, detect: DetectConfig | None = None,
                           source: str | None = None, fanout: FanOut | None = None,
                           slicing: SliceConfig | bool | None = None) -> Any:
        """:meth:`submit` for asyncio callers: ``await det.submit_async(image)`` gives the result."""
        return await asyncio.wrap_future(self.submit(image, detect=detect, source=source, fanout=fanout,
                                                     slicing=slicing))

    # -- the throughput path (see yolo_ov.pipeline) -----------------------
    def pipeline(self, config: PipelineConfig | None = None) -> Pipeline:
        """The throughput pipeline on this compiled model, created once and reused.

        ``config=None`` means the Detector's own ``pipeline=`` settings (or the
        defaults). A different ``config`` replaces the current pipeline (new
        request queues, same compiled model): do that between runs, not while
        streams or submits are in flight on it; for settings every run shares,
        pass ``Detector(..., pipeline=PipelineConfig(...))``.
        """
        wanted = config or self.pipeline_config or PipelineConfig()
        with self._pipeline_lock:
            if self._closed:
                raise ConfigError("this Detector is closed; create a new one to run more inputs")
            current = self._pipeline
            if current is not None and not current.closed and wanted == current.config:
                return current
            if current is not None:
                current.close()
            self._pipeline = self._make_pipeline(wanted)
            return self._pipeline

    def _make_pipeline(self, config: PipelineConfig) -> Pipeline:
        if config.num_requests is None and self.runtime_config.num_requests:
            config = dataclasses.replace(config, num_requests=self.runtime_config.num_requests)
        pipeline = Pipeline(self._engine, self.head, detect=self.detect_config, config=config,
                            make_engine=self._make_engine, stride=self.model_info.stride,
                            device=self.runtime_config.device)
        pipeline.on_exit = self._engine.close
        return pipeline

    def _compile_shape(self, shape: tuple[int, int]) -> Engine:
        """The model compiled for another input shape (shape specialisation)."""
        # Each compiled model pins its CPU streams to the same cores: two shapes
        # in flight at once would then share one core while the other idles
        # (measured: specialised folder 69 img/s pinned vs 81 unpinned on 2
        # cores). Extra shapes are therefore compiled unpinned.
        cpu = self.runtime_config.device.split(":")[0].split(".")[0] == "CPU"
        extra = {"ENABLE_CPU_PINNING": False} if cpu else None
        engine, _ = load(self._model_path, self.runtime_config.with_(imgsz=shape), extra_properties=extra)
        return engine

    def stream(
        self,
        source: Any,
        *,
        ordered: bool = True,
        with_images: bool = False,
        drop: str | None = "auto",
        config: PipelineConfig | None = None,
        detect: DetectConfig | None = None,
        fanout: FanOut | None = None,
        head: Head | None = None,
        slicing: SliceConfig | bool | None = None,
    ) -> StreamRun:
        """Detect objects in a source with many requests in flight; yields results.

        ``source``: image files, folders, globs, video files, camera indices,
        RTSP/HTTP URLs, arrays, or any iterable of frames (see
        :func:`yolo_ov.io.sources.open_source`). Results come in input order
        (``ordered=False``: as completed); every input yields one
        :class:`Detections` or one :class:`Failure`. Use a ``throughput``
        mode Detector for speed; a latency-mode one works but has one stream.
        Several streams may run at once on one Detector (and beside
        :meth:`submit`): they share its request slots. ``detect`` overrides
        the detection settings for this run, ``head`` the head that decodes
        its results. ``fanout`` splits every input into parts (tiles, crops)
        merged into one result per input, still in input order; the
        read-ahead bound counts the parts. ``slicing`` as for :meth:`__call__`
        (the tiles of many images interleave, backpressure counted in tiles).

        Example:
            >>> det = Detector("yolov8n_openvino_model", mode="throughput")  # doctest: +SKIP
            >>> for r in det.stream("video.mp4"):  # doctest: +SKIP
            ...     print(r.stream, r.frame, len(r))
        """
        fanout = self._slice_fanout(fanout, slicing)
        return self.pipeline(config).stream(source, ordered=ordered, with_images=with_images, drop=drop,
                                            detect=self._checked_detect(detect), fanout=fanout, head=head)

    def stream_callback(
        self, source: Any, callback: Any, *, drop: str | None = "auto", config: PipelineConfig | None = None,
        detect: DetectConfig | None = None, fanout: FanOut | None = None,
        slicing: SliceConfig | bool | None = None,
    ) -> RunStats:
        """OpenVINO's callback style: ``callback(result)`` runs on a worker thread as each
        result completes (completion order); returns the run's counters when all are done."""
        fanout = self._slice_fanout(fanout, slicing)
        return self.pipeline(config).run_callback(source, callback, drop=drop, detect=self._checked_detect(detect),
                                                  fanout=fanout)

    def _checked_detect(self, detect: DetectConfig | None) -> DetectConfig | None:
        """A per-call ``detect`` override checked against the model's classes (once per class filter; the
        cache is bounded: a server's clients choose the filters)."""
        if detect is not None and detect.classes is not None and detect.classes not in self._checked:
            _check_classes(detect, self.model_info.num_classes)
            if len(self._checked) >= 256:
                self._checked.clear()
            self._checked.add(detect.classes)
        return detect

    # -- sliced inference ------------------------------------------------
    def _slice_fanout(self, fanout: FanOut | None, slicing: SliceConfig | bool | None) -> FanOut | None:
        """The fan-out of a call: ``fanout``, else the slicing asked for (per call, else the Detector's).

        One :class:`~yolo_ov.pipeline.slicing.SliceFanOut` per setting, kept, so
        a tile larger than the image is said once per Detector, not per call.

        Raises:
            ConfigError: both ``fanout`` and ``slicing`` given, a ``slicing`` that
                is not a :class:`SliceConfig`, or slicing a classification model.
        """
        if fanout is not None:
            if slicing not in (None, False):
                raise ConfigError("pass either fanout= or slicing=, not both (slicing= makes its own fan-out)")
            return fanout
        cfg = self.slicing_config if slicing is None or slicing is True else slicing or None
        if cfg is None:
            return None
        if not isinstance(cfg, SliceConfig):
            raise ConfigError(f"slicing must be a SliceConfig (e.g. SliceConfig(size=640)) or False, got {cfg!r}")
        if self.model_info.task == "classify":
            raise ConfigError(NO_BOXES)
        made = self._fanouts.get(cfg)
        if made is None:
            made = self._fanouts.setdefault(cfg, SliceFanOut(cfg))
        return made

    # -- lifetime --------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the compiled model (and the throughput pipeline, if one was started). Idempotent."""
        with self._pipeline_lock:
            if self._closed:
                return
            self._closed = True
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()
        self._engine.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.compiled_info
        return f"Detector({str(self.model_info.path)!r}, mode={c.mode!r}, device={c.device!r}, input={self.input_hw})"

    # -- tracking (see yolo_ov.track) ----------------------------------------
    def track(self, source: Any, tracker: str | Path | TrackerConfig = "bytetrack", **kwargs: Any) -> TrackRun:
        """Track objects through videos or live streams: each result carries ``data["track_id"]``.

        ``tracker``: ``"bytetrack"``, ``"botsort"``, a YAML file in Ultralytics'
        format or a :class:`~yolo_ov.track.TrackerConfig`; ``kwargs`` as for
        :func:`yolo_ov.track.track` (``detect_every``, ``detect``, ``with_images``,
        ``drop``, ``config``). One tracker per stream; ids unique within the run.

        Example:
            >>> for r in det.track("walking.mp4", detect_every=2):  # doctest: +SKIP
            ...     print(r.frame, r.data["track_id"].tolist())
        """
        from .track import track

        return track(self, source, tracker=tracker, **kwargs)


def _check_classes(detect: DetectConfig, num_classes: int) -> None:
    """Class ids the model does not have are a usage error, not a silent empty result."""
    if detect.classes is None:
        return
    bad = sorted(c for c in detect.classes if c >= num_classes)
    if bad:
        raise ConfigError(
            f"classes {bad} do not exist in this model: its class ids are 0-{num_classes - 1} ({num_classes} classes)"
        )


def _runtime_config(
    runtime: RuntimeConfig | None, *, mode: Any, device: Any, imgsz: Any
) -> RuntimeConfig:
    shortcuts = {k: v for k, v in {"mode": mode, "device": device, "imgsz": imgsz}.items() if v is not None}
    if runtime is None:
        return RuntimeConfig(**shortcuts)
    if shortcuts:
        raise ConfigError(
            f"pass either runtime=RuntimeConfig(...) or {', '.join(shortcuts)}=..., not both"
        )
    return runtime


def _detect_config(detect: DetectConfig | None, **values: Any) -> DetectConfig:
    given = {k: v for k, v in values.items() if v is not None}
    if "classes" in given:
        given["classes"] = tuple(given["classes"])
    if detect is None:
        return DetectConfig(**given)
    if given:
        raise ConfigError(f"pass either detect=DetectConfig(...) or {', '.join(given)}=..., not both")
    return detect
