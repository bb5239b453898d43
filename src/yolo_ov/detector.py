"""``Detector``: the front door, and the latency path.

A ``Detector`` loads and compiles a model once and answers one image at a
time with one synchronous request: the right shape for a camera in an app or
an interactive request. Its ``mode`` is the OpenVINO performance hint the
model is compiled with; the throughput pipeline (:meth:`Detector.stream`)
reuses the same compiled model with many requests in flight.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .config import DetectConfig, Mode, RuntimeConfig
from .errors import ConfigError, InputError
from .images import ImageInput, describe_source, load_image
from .pipeline import Pipeline, PipelineConfig, RunStats, StreamRun
from .postprocess import postprocess
from .preprocess import letterbox
from .results import Detections, Failure, Timings
from .runtime import CompiledInfo, Engine, LoadTimings, load

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
        conf, iou, max_det, classes, agnostic: detection settings, or pass a
            :class:`DetectConfig` as ``detect``.
        imgsz: network input size; default the model's own.
        warmup: run one inference at load so the first real call is not slow.

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
    ) -> None:
        self.runtime_config = _runtime_config(runtime, mode=mode, device=device, imgsz=imgsz)
        self.detect_config = _detect_config(
            detect, conf=conf, iou=iou, max_det=max_det, classes=classes, agnostic=agnostic
        )
        self._engine, self.model_info = load(model, self.runtime_config)
        if warmup:
            t0 = time.perf_counter()
            self._engine.infer(np.full((self._engine.batch, *self._engine.input_hw, 3), 114, np.uint8))
            first = (time.perf_counter() - t0) * 1e3
            lt = self._engine.load_timings
            self._engine.load_timings = LoadTimings(lt.read_ms, lt.compile_ms, first)

    # -- what was loaded -------------------------------------------------
    @property
    def names(self) -> dict[int, str]:
        """Class id -> name."""
        return self.model_info.names

    @property
    def compiled_info(self) -> CompiledInfo:
        """What OpenVINO chose: streams, optimal requests, precision, devices."""
        return self._engine.info

    @property
    def load_timings(self) -> LoadTimings:
        """Read, compile and first-inference milliseconds of this load."""
        return self._engine.load_timings

    @property
    def engine(self) -> Engine:
        """The compiled model and its synchronous request (for the pipeline and bench)."""
        return self._engine

    @property
    def input_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the compiled network input."""
        return self._engine.input_hw

    # -- the latency path ------------------------------------------------
    def __call__(
        self, image: ImageInput, *, source: str | None = None, detect: DetectConfig | None = None
    ) -> Detections:
        """Detect objects in one image (path, encoded bytes or BGR array).

        ``detect`` overrides the Detector's detection settings for this call
        (validation uses it for its own conf/iou/multi-label settings).

        Raises:
            InputError: the image cannot be read; the message names it.
        """
        if self._engine.batch != 1:
            raise ConfigError(
                f"this Detector was compiled with batch={self._engine.batch}; "
                "single-image calls need batch=1 (use stream() for batched runs)"
            )
        name = source or describe_source(image)
        t0 = time.perf_counter()
        img = load_image(image, name)
        frame, geo = letterbox(img, self._engine.input_hw)
        t1 = time.perf_counter()
        output = self._engine.infer(frame[None])
        t2 = time.perf_counter()
        xyxy, conf, cls = postprocess(output[0], geo, self.model_info.head, detect or self.detect_config)
        t3 = time.perf_counter()
        timing = Timings((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return Detections(xyxy, conf, cls, self.names, img.shape[:2], name, timing=timing)

    def predict(self, images: Iterable[ImageInput]) -> list[Detections]:
        """Detect objects in several images, one synchronous request each, in order.

        Raises on the first bad image; use :meth:`iter_predict` to carry on.
        """
        return [self(image) for image in images]

    def iter_predict(self, images: Iterable[ImageInput]) -> Iterator[Detections | Failure]:
        """Like :meth:`predict`, but yields a :class:`~yolo_ov.results.Failure` for a bad item and goes on."""
        for image in images:
            try:
                yield self(image)
            except InputError as exc:
                yield Failure(exc.source or describe_source(image), str(exc))

    # -- the throughput path (see yolo_ov.pipeline) -----------------------
    def pipeline(self, config: PipelineConfig | None = None) -> Pipeline:
        """The throughput pipeline on this compiled model, created once and reused.

        Passing a different ``config`` replaces it (new request queues, same
        compiled model).
        """
        current: Pipeline | None = getattr(self, "_pipeline", None)
        if current is not None and not current.closed and (config is None or config == current.config):
            return current
        if current is not None:
            current.close()
        self._pipeline = Pipeline(self, config)
        return self._pipeline

    def stream(
        self,
        source: Any,
        *,
        ordered: bool = True,
        with_images: bool = False,
        drop: str | None = "auto",
        config: PipelineConfig | None = None,
    ) -> StreamRun:
        """Detect objects in a source with many requests in flight; yields results.

        ``source``: image files, folders, globs, video files, camera indices,
        RTSP/HTTP URLs, arrays, or any iterable of frames (see
        :func:`yolo_ov.sources.open_source`). Results come in input order
        (``ordered=False``: as completed); every input yields one
        :class:`Detections` or one :class:`Failure`. Use a ``throughput``
        mode Detector for speed; a latency-mode one works but has one stream.

        Example:
            >>> det = Detector("yolov8n_openvino_model", mode="throughput")  # doctest: +SKIP
            >>> for r in det.stream("video.mp4"):  # doctest: +SKIP
            ...     print(r.stream, r.frame, len(r))
        """
        return self.pipeline(config).stream(source, ordered=ordered, with_images=with_images, drop=drop)

    def stream_callback(
        self, source: Any, callback: Any, *, drop: str | None = "auto", config: PipelineConfig | None = None
    ) -> RunStats:
        """OpenVINO's callback style: ``callback(result)`` runs on a worker thread as each
        result completes (completion order); returns the run's counters when all are done."""
        return self.pipeline(config).run_callback(source, callback, drop=drop)

    # -- lifetime --------------------------------------------------------
    def close(self) -> None:
        """Release the compiled model (and the throughput pipeline, if one was started)."""
        pipeline: Pipeline | None = getattr(self, "_pipeline", None)
        if pipeline is not None:
            pipeline.close()
            self._pipeline = None
        self._engine.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.compiled_info
        return f"Detector({str(self.model_info.path)!r}, mode={c.mode!r}, device={c.device!r}, input={self.input_hw})"


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
