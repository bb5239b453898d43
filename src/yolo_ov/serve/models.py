"""The served models: one :class:`~yolo_ov.Detector` per name, reached only through ``submit()``.

:class:`ServedModel` is where a request meets the engine, whatever the
transport. It checks an image's header against the pixel limit, submits every
image of a request to the Detector's throughput engine (so images of one
request and of concurrent requests share the request slots, and are batched
together on a batch > 1 model), waits for them within the request's deadline,
and maps the engine's answers to transport-neutral :class:`ServeError` codes:
``OverloadedError`` -> ``OVERLOADED`` (HTTP 503 with ``Retry-After``),
``InputError`` -> ``INVALID_ARGUMENT`` naming the image, a deadline passed ->
``DEADLINE_EXCEEDED``. The Detector is opened elsewhere
(:mod:`yolo_ov.serve.state`), so a server runs on any engine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DetectConfig, SliceConfig
from ..detector import Detector
from ..errors import InferenceError, InputError, OverloadedError
from ..results import Classification, Detections
from .errors import ErrorCode, ServeError
from .kserve import INPUT_NAME, TensorSpec, output_specs
from .limits import check_encoded, check_frame
from .metrics import ServeMetrics
from .settings import ServeConfig

__all__ = ["ENGINE_TIMEOUT_S", "PLATFORM", "Image", "Result", "ServedModel"]

#: What a served model answers for one image.
Result = Detections | Classification

#: The KServe "platform" this server reports for every model.
PLATFORM = "yolo_ov_openvino"
#: The least time the engine waits for the device before declaring it hung.
ENGINE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Image:
    """One image of a request, checked against the limits: its bytes or frame, its name, its pixel count."""

    data: bytes | np.ndarray
    source: str
    pixels: int


class ServedModel:
    """One model behind the server: opened once (elsewhere), warmed up here, then served.

    Args:
        name: the name clients use.
        path: where the model was read from (reported by ``GET /models``).
        detector: the opened model; this object owns it from here on (closed
            by :meth:`close`, or at once if the warm-up fails).
        config: the server's settings (detection defaults, limits).
        metrics: where per-model figures are recorded.
        version: the version clients name (``"1"`` unless served from a model repository).
    """

    def __init__(self, name: str, path: Path, detector: Detector, config: ServeConfig, metrics: ServeMetrics,
                 *, version: str = "1") -> None:
        self.name = name
        self.version = version
        self.path = path
        self._holds = 0  # requests routed here and not answered yet (a retiring version waits for them)
        self._holds_lock = threading.Lock()
        self.config = config
        self.metrics = metrics
        self.detector = detector
        try:
            self._warm_up()
        except BaseException:
            self.detector.close()
            raise
        info = self.detector.compiled_info
        metrics.add_model(self.name, streams=info.num_streams or 1, requests=self.requests,
                          max_queue=config.max_queue, infer_requests=self._infer_requests, version=version)
        self.task = str(getattr(self.detector.model_info, "task", "detect") or "detect")
        kpt = getattr(self.detector.model_info, "kpt_shape", None)
        self.outputs: tuple[TensorSpec, ...] = output_specs(self.task, kpt_shape=tuple(kpt) if kpt else None)
        self.ready = True

    def _warm_up(self) -> None:
        """One image through ``submit()`` so the first client does not pay for starting the engine."""
        h, w = self.detector.input_hw
        self.detector.submit(np.full((h, w, 3), 114, np.uint8), source="warm-up").result(ENGINE_TIMEOUT_S)

    def _infer_requests(self) -> int:
        if not getattr(self, "ready", True):
            return 0  # closed: no pipeline to ask
        submitter = getattr(self.detector.pipeline(), "submitter", None)
        return int(submitter.stats.requests) if submitter is not None else 0

    # -- requests routed here ------------------------------------------------------
    def hold(self) -> None:
        """A request was routed to this version: it is not closed until :meth:`release`."""
        with self._holds_lock:
            self._holds += 1

    def release(self) -> None:
        with self._holds_lock:
            self._holds -= 1

    @property
    def holds(self) -> int:
        """Requests routed to this version and not answered yet."""
        with self._holds_lock:
            return self._holds

    @property
    def requests(self) -> int:
        """Inference requests the engine keeps in flight for this model."""
        pipeline = self.detector.pipeline()
        return int(getattr(pipeline, "num_requests", 0) or self.detector.compiled_info.optimal_requests)

    # -- what clients see ------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """``GET /models``: the model and what OpenVINO chose for it."""
        info = self.detector.compiled_info
        model = self.detector.model_info
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "task": self.task,
            "ready": self.ready,
            "classes": len(self.detector.names),
            "input_shape": list(self.detector.input_hw),
            "device": info.device,
            "mode": info.mode,
            "streams": info.num_streams,
            "optimal_requests": info.optimal_requests,
            "requests_in_flight": self.requests,
            "inference_precision": info.inference_precision,
            "execution_devices": list(info.execution_devices),
            "batch": int(getattr(self.detector.engine, "batch", 1)),
            "imgsz": list(model.imgsz),
            "limits": self.config.limits(),
        }

    def metadata(self) -> dict[str, Any]:
        """KServe model metadata: inputs and outputs with datatypes and shapes."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": PLATFORM,
            "inputs": [TensorSpec(INPUT_NAME, "BYTES", (-1,)).to_dict()],
            "outputs": [o.to_dict() for o in self.outputs],
        }

    def model_config(self) -> dict[str, Any]:
        """Triton-style model configuration (``GET .../config``), for clients that ask for it."""
        return {
            "name": self.name,
            "platform": PLATFORM,
            "max_batch_size": 0,
            "input": [{"name": INPUT_NAME, "data_type": "TYPE_STRING", "dims": [-1],
                       "alternatives": [{"data_type": "TYPE_UINT8", "dims": [-1, -1, -1, 3], "format": "NHWC BGR"}]}],
            "output": [{"name": o.name, "data_type": "TYPE_STRING" if o.datatype == "BYTES" else f"TYPE_{o.datatype}",
                        "dims": list(o.shape)} for o in self.outputs],
            "parameters": {"names": {str(k): v for k, v in self.detector.names.items()},
                           "detect": {k: getattr(self.config.detect, k) for k in ("conf", "iou", "max_det")}},
        }

    def statistics(self) -> dict[str, Any]:
        """Triton's statistics of this model (``GET .../stats``, gRPC ``ModelStatistics``)."""
        return self.metrics.stats_of(self.name, self.version).snapshot()

    # -- inference -------------------------------------------------------------
    def check(self, images: Sequence[bytes | np.ndarray], sources: Sequence[str]) -> list[Image]:
        """Check each image against the limits before anything is decoded.

        Raises:
            ServeError: ``PAYLOAD_TOO_LARGE`` (too many images, too many
                pixels) or ``INVALID_ARGUMENT`` (an unreadable header).
        """
        if len(images) > self.config.max_queue:
            raise ServeError(
                ErrorCode.PAYLOAD_TOO_LARGE, f"the request holds {len(images)} images; at most {self.config.max_queue} "
                     "(--max-queue) can be queued at once: split it"
            )
        checked = []
        for data, source in zip(images, sources, strict=True):
            if isinstance(data, np.ndarray):
                check_frame(data, self.config.max_pixels, source)
                checked.append(Image(data, source, data.shape[0] * data.shape[1]))
            else:
                w, h = check_encoded(data, self.config.max_pixels, source)
                checked.append(Image(data, source, w * h))
        return checked

    async def infer(self, images: Sequence[Image], detect: DetectConfig, deadline: float, *,
                    slicing: SliceConfig | None = None) -> list[Result]:
        """Submit every image, wait for all of them until ``deadline`` (``time.monotonic()``).

        ``slicing`` cuts each image into tiles run as concurrent requests and merged
        (sliced inference; its tiles count against ``--max-queue`` as images do).

        Raises:
            ServeError: ``OVERLOADED`` when the queue is full, ``UNAVAILABLE``
                when closing, ``INVALID_ARGUMENT`` for an unreadable image,
                ``DEADLINE_EXCEEDED`` when the deadline passes, ``INTERNAL``
                when inference failed.
        """
        if not self.ready:  # closed (shutting down): the Detector would refuse with a ConfigError
            raise ServeError(ErrorCode.UNAVAILABLE, f"model {self.name!r} is not accepting work: it is closed",
                             retry_after_s=self.config.retry_after_s)
        futures: list[Future] = []
        waits: list[float] = []  # each image's wait for a request slot, ms (filled by the engine's callbacks)
        try:
            for image in images:
                futures.append(self._submit(image, detect, slicing, waits))
        except OverloadedError:
            for f in futures:
                f.cancel()
            raise ServeError(
                ErrorCode.OVERLOADED,
                f"model {self.name!r} is at capacity ({self.config.max_queue} images waiting, --max-queue); "
                "retry later", retry_after_s=self.config.retry_after_s,
            ) from None
        except InferenceError as exc:  # closed or closing: the server is shutting down
            for f in futures:
                f.cancel()
            raise ServeError(ErrorCode.UNAVAILABLE, f"model {self.name!r} is not accepting work: {exc}",
                             retry_after_s=self.config.retry_after_s) from None
        gathered = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        # A gather abandoned at the deadline may still end in an error later: retrieve it, or asyncio logs
        # "exception was never retrieved" once per expired request.
        gathered.add_done_callback(_retrieve)
        try:
            results = await asyncio.wait_for(gathered, max(deadline - time.monotonic(), 0.0))
        except asyncio.TimeoutError:
            for f in futures:
                f.cancel()
            raise ServeError(ErrorCode.DEADLINE_EXCEEDED,
                             f"model {self.name!r} did not answer within the request's deadline "
                             f"(--timeout-s {self.config.timeout_s:g} or the request's own timeout)") from None
        except InputError as exc:
            raise ServeError(ErrorCode.INVALID_ARGUMENT, str(exc)) from None
        except InferenceError as exc:
            raise ServeError(ErrorCode.INTERNAL, f"inference failed: {exc}") from None
        for image, result in zip(images, results, strict=True):
            if not isinstance(result, (Detections, Classification)):
                raise ServeError(ErrorCode.INTERNAL, f"inference gave a {type(result).__name__}, not a result")
            shape = result.image_shape
            if shape is not None and shape[0] * shape[1] != image.pixels:
                # The header parser and the decoder disagreed: refuse rather than trust either.
                raise ServeError(ErrorCode.INVALID_ARGUMENT,
                                 f"{image.source}: decoded to {shape[1]}x{shape[0]} pixels, "
                                 "not the size its header declares; the file is malformed")
        self._count_statistics(results, waits)
        return list(results)

    def _count_statistics(self, results: Sequence[Result], waits: Sequence[float]) -> None:
        """Triton's per-request phases: each the longest of the request's images (they run side by side)."""
        timings = [r.timing for r in results if r.timing is not None]
        if not timings:
            return
        self.metrics.stats_of(self.name, self.version).inferred(
            images=len(results), queue_ms=max(waits, default=0.0),
            input_ms=max(t.preprocess_ms for t in timings), infer_ms=max(t.inference_ms for t in timings),
            output_ms=max(t.postprocess_ms for t in timings))

    def _submit(self, image: Image, detect: DetectConfig, slicing: SliceConfig | None = None,
                waits: list[float] | None = None) -> Future:
        submitted = time.perf_counter()
        future = self.detector.submit(image.data, detect=detect, source=image.source, slicing=slicing)
        self.metrics.image_submitted(self.name, self.version)

        def done(f: Future) -> None:
            inference_ms = wait_ms = None
            if not f.cancelled() and f.exception() is None:
                timing = f.result().timing
                if timing is not None:
                    inference_ms = timing.inference_ms
                    wait_ms = (time.perf_counter() - submitted) * 1e3 - timing.total_ms
                    if waits is not None:
                        waits.append(max(wait_ms, 0.0))
            self.metrics.image_done(self.name, inference_ms=inference_ms, wait_ms=wait_ms, version=self.version)

        future.add_done_callback(done)
        return future

    def close(self) -> None:
        """Stop taking work; images already accepted finish first (the Detector drains its engine)."""
        if not self.ready:
            return  # closed already (the app's lifespan and the CLI both close)
        self.ready = False
        self.detector.close()


def _retrieve(future: asyncio.Future) -> None:
    """Mark a finished future's exception as seen (it was answered as a deadline already)."""
    if not future.cancelled():
        future.exception()
