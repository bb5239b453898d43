"""Everything that talks to OpenVINO: devices, graph preparation, compilation.

The host hands the compiled model ``uint8`` BGR ``NHWC`` letterboxed frames;
``PrePostProcessor`` puts the layout change, BGR->RGB, the conversion to
float and the /255 into the graph, where the plugin fuses them with the first
convolution (all but the BGR->RGB of a float first layer under bf16/f16: see
:func:`prepare`). Compilation happens once, explicitly, in :func:`load`; the
returned :class:`OpenVINOEngine` (an :class:`~yolo_ov.runtime.engine.Engine`)
owns the compiled model and one synchronous request for the latency path.
The throughput pipeline builds its ``AsyncInferQueue`` from the same compiled model.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ..config import Precision, RuntimeConfig
from ..errors import ConfigError, DeviceError, InferenceError, openvino_message
from .model import ModelInfo, inspect_model, read_model, resolve_model_path
from .prepared import PreparedStore
from .reshape import reshape_model

__all__ = [
    "CompiledInfo",
    "LoadTimings",
    "OpenVINOEngine",
    "available_devices",
    "get_core",
    "load",
    "validate_device",
]

log = logging.getLogger(__name__)

_core: ov.Core | None = None
_core_lock = threading.Lock()
_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")


def get_core() -> ov.Core:
    """The process-wide OpenVINO ``Core`` (created on first use, not on import)."""
    global _core
    with _core_lock:
        if _core is None:
            _core = ov.Core()
        return _core


def available_devices() -> list[str]:
    """Physical devices OpenVINO sees here, e.g. ``['CPU', 'GPU.0', 'NPU']``."""
    return list(get_core().available_devices)


def validate_device(device: str, available: list[str] | None = None) -> None:
    """Check that every physical device named in ``device`` exists here.

    Accepts ``CPU``, ``GPU``, ``GPU.1``, ``AUTO``, ``AUTO:GPU,CPU``,
    ``AUTO:-CPU``, ``MULTI:GPU,CPU``, ``HETERO:GPU,CPU``, ``BATCH:GPU(4)``.

    Raises:
        DeviceError: a named device is not available; the message lists what is.
    """
    available = available_devices() if available is None else available
    families = {d.split(".")[0] for d in available}
    head, _, rest = device.partition(":")
    if head in _VIRTUAL:
        if not rest:
            if head in ("AUTO",):
                return
            raise DeviceError(f"device {device!r}: {head} needs a device list, e.g. {head}:GPU,CPU")
        names = [re.sub(r"\(.*\)$", "", n.strip()).lstrip("-") for n in rest.split(",") if n.strip()]
    elif rest:
        raise DeviceError(f"device {device!r} is not a valid device string; e.g. CPU, GPU, AUTO:GPU,CPU")
    else:
        names = [device]
    for name in names:
        if name not in available and name not in families:
            listed = ", ".join(available) or "none"
            raise DeviceError(
                f"device {name!r} is not available on this machine (available: {listed}; "
                "AUTO, MULTI and HETERO combine them)"
            )


@dataclass(frozen=True)
class LoadTimings:
    """Milliseconds spent making the model ready, as ``benchmark_app`` reports them."""

    read_ms: float
    compile_ms: float
    first_inference_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.read_ms + self.compile_ms + self.first_inference_ms


@dataclass(frozen=True)
class CompiledInfo:
    """What OpenVINO actually chose when it compiled the model.

    Values the device does not report are ``None``.
    """

    device: str
    mode: str
    num_streams: int | None
    optimal_requests: int
    inference_precision: str | None
    inference_threads: int | None
    execution_devices: list[str]
    input_shape: tuple[int, ...]
    cache_dir: str | None
    enable_mmap: bool
    openvino_version: str = field(default_factory=lambda: ov.get_version())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


def load(
    model: str | Path, config: RuntimeConfig, *, extra_properties: dict[str, Any] | None = None
) -> tuple[OpenVINOEngine, ModelInfo]:
    """Read, prepare and compile ``model`` for ``config``; the one place that compiles.

    Every OpenVINO property goes to this model's ``read_model``/``compile_model``
    call, never to the process-wide ``Core``, so two models loaded at once with
    different settings (``enable_mmap``, hints) cannot race.

    Raises:
        ModelLoadError, DeviceError, ConfigError: with one-line messages.
    """
    path = resolve_model_path(model)
    core = get_core()
    validate_device(config.device)
    t0 = time.perf_counter()
    cache = config.resolved_cache_dir
    prepared: ov.Model | str
    if cache is None:
        ov_model = read_model(core, path, enable_mmap=config.enable_mmap)
        info = inspect_model(ov_model, path)
        prepared = prepare(ov_model, info, config)
    else:
        prepared, info = _prepared_in_cache(core, path, config, cache)
    t1 = time.perf_counter()
    props = config.ov_properties()
    props["ENABLE_MMAP"] = bool(config.enable_mmap)
    if path.suffix.lower() == ".tflite" and config.num_streams is None and config.device.split(".")[0] == "CPU":
        # Measured with OpenVINO 2026.4 on CPU: Ultralytics' INT8 TFLite graphs compiled with two
        # streams return garbage from one of them (8 of 16 requests for the OBB model, also seen for
        # the classifier); with one stream every request is exact (36 of 36). One stream, then.
        props["NUM_STREAMS"] = "1"
    if extra_properties:  # e.g. the throughput pipeline's extra shapes turn CPU pinning off
        props.update(extra_properties)
    try:
        compiled = core.compile_model(prepared, config.device, props)
    except Exception as exc:  # OpenVINO raises RuntimeError with a C++ trace
        raise DeviceError(
            f"{path}: cannot compile for {config.device} with {props} ({openvino_message(exc)})"
        ) from exc
    t2 = time.perf_counter()
    engine = OpenVINOEngine(compiled, config, LoadTimings(read_ms=(t1 - t0) * 1e3, compile_ms=(t2 - t1) * 1e3))
    return engine, info


def _prepared_in_cache(core: ov.Core, path: Path, config: RuntimeConfig, cache: Path) -> tuple[str, ModelInfo]:
    """The prepared IR for ``config`` from the store (made and saved on a miss)."""
    cache.mkdir(parents=True, exist_ok=True)
    store = PreparedStore(cache)
    key = store.key(path, config.batch, config.imgsz, below_f32=_below_f32(core, config))
    hit = store.lookup(key)
    if hit is not None:
        xml, info = hit
        return str(xml), info
    ov_model = read_model(core, path, enable_mmap=config.enable_mmap)
    info = inspect_model(ov_model, path)
    xml = store.save(key, prepare(ov_model, info, config), info)
    return str(xml), info


def prepare(model: ov.Model, info: ModelInfo, config: RuntimeConfig) -> ov.Model:
    """Reshape to the requested batch/size and embed pre-processing in the graph.

    The graph computes what Ultralytics feeds its network, ``RGB / 255`` as
    float32 NCHW, from the host's ``uint8`` BGR NHWC frame, and gives the first
    layer bit-identical values at every inference precision (issue 24):

    * the /255 is a ``Multiply`` by ``float32(1/255)``, not PPP's ``scale()``:
      the CPU plugin lowers that ``Divide`` in bf16 (``x * bf16(1/255)``, 0.4 %
      off), while the ``Multiply`` runs in f32 inside the ``Convert`` subgraph
      and is rounded once, as the host's float32 tensor is;
    * BGR->RGB: OpenVINO's ``ReverseInputChannelsFusion`` folds PPP's channel
      ``Gather`` into the first convolution's weights, so that convolution sums
      its B, G, R products in the reverse order. An INT8 first layer sums in
      int32, exact in any order, so the fold is kept there (free); in f32 it
      moves the first layer's sums in the last bit only, and is kept too. A
      float first convolution run in bf16 (the default on CPUs with
      AVX512-BF16 or AMX; f16 on GPUs) rounds 0.6-2.4 % of its outputs to the
      other neighbouring bf16 value, which the network amplifies (measured on
      AMD EPYC Zen 4: the shared YOLO26n-cls IR's top-5 confidences 0.020
      from Ultralytics', a YOLOv10n FP32 IR 0.994 of detections matched).
      There the swap is done on the data instead (:func:`_bgr_to_rgb`) and
      the outputs are bit-identical to Ultralytics' host-normalised feed.
    """
    h, w = config.imgsz or info.imgsz
    if h % info.stride or w % info.stride:
        raise ConfigError(f"imgsz {(h, w)} must be a multiple of the model stride {info.stride}")
    nhwc = info.layout == "NHWC"
    if nhwc:
        _fix_nhwc_shape(model, info, config.batch, (h, w))
    elif model.inputs[0].get_partial_shape() != ov.PartialShape([config.batch, 3, h, w]):
        # also makes a dynamic-shape IR static at the requested size (and batch: an old
        # export's metadata may say batch 8, but one image is one request here)
        reshape_model(model, info.imgsz, (h, w), config.batch)
    swap_as_data = _below_f32(get_core(), config) and not _quantized_input(model)
    ppp = ov.preprocess.PrePostProcessor(model)
    inp = ppp.input()
    tensor = inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    inp.model().set_layout(ov.Layout("NHWC" if nhwc else "NCHW"))
    steps = inp.preprocess()
    if swap_as_data:
        steps.convert_element_type(ov.Type.f32).custom(_scale_1_255).custom(_bgr_to_rgb)
    else:
        tensor.set_color_format(ov.preprocess.ColorFormat.BGR)
        steps.convert_element_type(ov.Type.f32).convert_color(ov.preprocess.ColorFormat.RGB).custom(_scale_1_255)
    for i in range(len(model.outputs)):  # every output (a segmentation model has two)
        ppp.output(i).tensor().set_element_type(ov.Type.f32)
    return ppp.build()


def _below_f32(core: ov.Core, config: RuntimeConfig) -> bool:
    """Whether float layers will run below f32 (bf16, f16): forced, or the device's default."""
    if config.inference_precision is not None:
        return config.inference_precision is not Precision.F32
    try:
        default = core.get_property(config.device, "INFERENCE_PRECISION_HINT")
    except Exception:  # noqa: BLE001 - AUTO/MULTI/HETERO have no single answer: assume the lower one
        return True
    return _type_name(default) != "f32"


def _quantized_input(model: ov.Model) -> bool:
    """The input goes only into FakeQuantize nodes: an INT8 first layer (integer sums, exact in any order)."""
    consumers = [target.get_node() for target in model.inputs[0].get_target_inputs()]
    return bool(consumers) and all(node.get_type_name() == "FakeQuantize" for node in consumers)


def _fix_nhwc_shape(model: ov.Model, info: ModelInfo, batch: int, hw: tuple[int, int]) -> None:
    """NHWC (TFLite) graphs run at their own input size only; the batch may change.

    Ultralytics' TFLite exports bake the input size into the graph (coordinates
    are divided by it), so another size would give wrong boxes, not an error.
    """
    if hw != info.imgsz:
        raise ConfigError(
            f"{info.path}: this NHWC (TFLite) model runs only at its own input size "
            f"{info.imgsz[0]}x{info.imgsz[1]}, not {hw[0]}x{hw[1]}; leave imgsz unset"
        )
    want = ov.PartialShape([batch, *hw, 3])
    if model.inputs[0].get_partial_shape() != want:
        try:
            model.reshape({model.inputs[0]: want})
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0][:200]
            raise ConfigError(f"{info.path}: the model cannot take batch {batch} ({first})") from exc


def _scale_1_255(node: ov.Output) -> ov.Output:
    return ov.opset13.multiply(node, ov.opset13.constant(np.float32(1.0 / 255.0))).output(0)


def _bgr_to_rgb(node: ov.Output) -> ov.Output:
    """Reverse the channels of the scaled NHWC input with a 1x1 convolution (weights 0 and 1).

    Unlike PPP's channel ``Gather``, no pass folds this into the next
    convolution's weights, so that convolution keeps the weights and the
    summation order it has when fed a float RGB tensor. Each output is one
    input times 1 plus zeros: exact in bf16 and f16. Of the data movements
    that do this (a ``Gather`` with axis -1, which the fusion skips, a
    ``MatMul``, this), it cost least in the CPU plugin's per-node times on AMD
    EPYC Zen 4: 1.0 % of the summed node time for yolov8n at 640, 2.7 % for
    YOLO26n-cls at 224 (``MatMul`` 1.9 % and 4.3 %, ``Gather`` 2.8 % and
    5.7 %). The transposes around it cancel with the layout change after it.
    ``tests/test_bf16_parity.py`` checks the outputs stay bit-identical.
    """
    weights = np.zeros((3, 3, 1, 1), np.float32)
    weights[[0, 1, 2], [2, 1, 0]] = 1.0  # out R = in channel 2, G = 1, B = 0
    ops = ov.opset13
    nchw = ops.transpose(node, ops.constant(np.array([0, 3, 1, 2], np.int64)))
    rgb = ops.convolution(nchw, ops.constant(weights), [1, 1], [0, 0], [0, 0], [1, 1])
    return ops.transpose(rgb, ops.constant(np.array([0, 2, 3, 1], np.int64))).output(0)


class OpenVINOEngine:
    """One compiled model: a synchronous request for the latency path and an
    ``AsyncInferQueue`` for everything asynchronous (see :class:`yolo_ov.runtime.engine.Engine`).

    Thread-safety: :meth:`infer` may be called from any number of threads; it
    serialises them on the one synchronous request (one request per device is
    what the LATENCY hint is for) and copies every output out of the request
    *before* releasing it, so a result never depends on what another thread
    does next. :meth:`start` may also be called from any thread; the caller
    bounds the requests in flight to what it :meth:`reserve` d.
    """

    def __init__(self, compiled: ov.CompiledModel, config: RuntimeConfig, load_timings: LoadTimings) -> None:
        self.compiled = compiled
        self.config = config
        self.load_timings = load_timings
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()
        self._queue: ov.AsyncInferQueue | None = None
        self._queue_lock = threading.Lock()
        # AsyncInferQueue.start_async is not safe from several threads at once: two callers
        # can be handed the same idle request ("Infer Request is busy"). Stream runs and the
        # submit() dispatcher start requests from their own threads, so starts take turns.
        self._start_lock = threading.Lock()
        self._callbacks: dict[int, Any] = {}
        self._closed = False
        self.input_shape: tuple[int, ...] = tuple(compiled.inputs[0].get_shape())
        self.output_names: tuple[str, ...] = tuple(
            out.get_any_name() if out.get_names() else f"output{i}" for i, out in enumerate(compiled.outputs)
        )
        self.info = self._describe()

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    @property
    def input_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the network input (NHWC)."""
        return self.input_shape[1], self.input_shape[2]

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise InferenceError("this model was closed; create a new Detector to run it again")

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one synchronous request on a ``uint8`` ``NHWC`` batch; copies of every output."""
        with self._lock:
            self._check_open()
            try:
                self._request.infer({0: batch}, share_inputs=True, share_outputs=True)
                return [np.array(self._request.get_output_tensor(i).data, copy=True)
                        for i in range(len(self.output_names))]
            except Exception as exc:  # OpenVINO RuntimeError
                raise InferenceError(f"inference failed: {openvino_message(exc)}") from exc

    def reserve(self, jobs: int) -> None:
        """Create (or grow) the ``AsyncInferQueue`` to ``jobs`` requests."""
        with self._queue_lock:
            self._check_open()
            if self._queue is not None and len(self._queue) >= jobs:
                return
            if self._queue is not None:
                self._queue.wait_all()
            queue = ov.AsyncInferQueue(self.compiled, jobs)
            queue.set_callback(_make_callback(self._callbacks, len(self.output_names)))
            self._queue = queue

    def start(self, batch: np.ndarray, callback: Any) -> None:
        """Start one asynchronous request; ``callback(outputs | exc, done_time)`` runs on OpenVINO's thread."""
        queue = self._queue
        if queue is None:
            self._check_open()
            raise InferenceError("reserve() the asynchronous requests before start()")
        key = next(_KEYS)
        self._callbacks[key] = callback
        try:
            with self._start_lock:
                queue.start_async({0: batch}, userdata=key, share_inputs=True)
        except Exception as exc:  # OpenVINO RuntimeError
            self._callbacks.pop(key, None)
            raise InferenceError(f"could not start inference: {openvino_message(exc)}") from exc

    def wait_all(self) -> None:
        queue = self._queue
        if queue is not None:
            queue.wait_all()

    def cancel(self) -> None:
        """Ask OpenVINO to cancel every asynchronous request still running (after a hang)."""
        queue = self._queue
        if queue is None:
            return
        for i in range(len(queue)):
            try:
                queue[i].cancel()
            except Exception:  # noqa: BLE001, S112 - best effort while shutting down
                continue

    def close(self) -> None:
        """Release the requests and the compiled model (idempotent)."""
        with self._lock, self._queue_lock:
            if self._closed:
                return
            self._closed = True
            if self._queue is not None:
                try:
                    self._queue.wait_all()
                except Exception:  # requests cancelled after a hang report it here; closing anyway
                    log.debug("cancelled requests while closing", exc_info=True)
            self._queue = None
            self._callbacks.clear()
            self._request = None  # type: ignore[assignment]
            self.compiled = None  # type: ignore[assignment]

    def _describe(self) -> CompiledInfo:
        def prop(name: str) -> Any:
            try:
                return self.compiled.get_property(name)
            except Exception:  # noqa: BLE001 - not every device reports every property
                return None

        precision = prop("INFERENCE_PRECISION_HINT")
        streams = prop("NUM_STREAMS")
        threads = prop("INFERENCE_NUM_THREADS")
        cache = self.config.resolved_cache_dir
        return CompiledInfo(
            device=self.config.device,
            mode=self.config.mode.value,
            num_streams=int(streams) if streams is not None else None,
            optimal_requests=int(prop("OPTIMAL_NUMBER_OF_INFER_REQUESTS") or 1),
            inference_precision=_type_name(precision),
            inference_threads=int(threads) if threads is not None else None,
            execution_devices=list(prop("EXECUTION_DEVICES") or [self.config.device]),
            input_shape=self.input_shape,
            cache_dir=str(cache) if cache else None,
            enable_mmap=self.config.enable_mmap,
        )


_KEYS = itertools.count()


def _make_callback(callbacks: dict[int, Any], n_outputs: int) -> Any:
    """The queue's callback: copy every output out of the request, timestamp, hand over.

    The queue holds only an integer key as userdata, so no reference cycle runs
    through OpenVINO's objects; the request is reused as soon as this returns.
    """

    def callback(request: ov.InferRequest, key: int) -> None:
        done = time.perf_counter()
        fn = callbacks.pop(key, None)
        if fn is None:  # abandoned after a hang
            return
        try:
            outputs: Any = [np.array(request.get_output_tensor(i).data, copy=True) for i in range(n_outputs)]
        except BaseException as exc:  # noqa: BLE001 - must never propagate into OpenVINO's thread
            outputs = InferenceError(f"could not read the inference output ({exc})")
        try:
            fn(outputs, done)
        except BaseException:
            log.exception("an inference callback raised")

    return callback


def _type_name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, ov.Type):
        return value.get_type_name()
    return str(value)
