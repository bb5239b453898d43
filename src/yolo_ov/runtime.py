"""Everything that talks to OpenVINO: devices, graph preparation, compilation.

The host hands the compiled model ``uint8`` BGR ``NHWC`` letterboxed frames;
``PrePostProcessor`` puts the layout change, BGR->RGB, the conversion to
float and the /255 into the graph, where the plugin fuses them with the first
convolution. Compilation happens once, explicitly, in :func:`load`; the
returned :class:`Engine` owns the compiled model and one synchronous request
for the latency path. The throughput pipeline builds its ``AsyncInferQueue``
from the same compiled model.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from .config import RuntimeConfig
from .errors import ConfigError, DeviceError, InferenceError
from .model import ModelInfo, inspect_model, read_model, resolve_model_path
from .prepared import PreparedStore
from .reshape import reshape_model

__all__ = ["CompiledInfo", "Engine", "LoadTimings", "available_devices", "get_core", "load", "validate_device"]

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
    model: str | Path | None, config: RuntimeConfig, *, extra_properties: dict[str, Any] | None = None
) -> tuple[Engine, ModelInfo]:
    """Read, prepare and compile ``model`` for ``config``; the one place that compiles.

    Raises:
        ModelLoadError, DeviceError, ConfigError: with one-line messages.
    """
    path = resolve_model_path(model)
    core = get_core()
    validate_device(config.device)
    core.set_property({"ENABLE_MMAP": bool(config.enable_mmap)})
    t0 = time.perf_counter()
    cache = config.resolved_cache_dir
    prepared: ov.Model | str
    if cache is None:
        ov_model = read_model(core, path)
        info = inspect_model(ov_model, path)
        prepared = prepare(ov_model, info, config)
    else:
        prepared, info = _prepared_in_cache(core, path, config, cache)
    t1 = time.perf_counter()
    props = config.ov_properties()
    if extra_properties:  # e.g. the throughput pipeline's extra shapes turn CPU pinning off
        props.update(extra_properties)
    try:
        compiled = core.compile_model(prepared, config.device, props)
    except Exception as exc:  # OpenVINO raises RuntimeError with a C++ trace
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise DeviceError(f"{path}: cannot compile for {config.device} with {props} ({first})") from exc
    t2 = time.perf_counter()
    engine = Engine(compiled, config, LoadTimings(read_ms=(t1 - t0) * 1e3, compile_ms=(t2 - t1) * 1e3))
    return engine, info


def _prepared_in_cache(core: ov.Core, path: Path, config: RuntimeConfig, cache: Path) -> tuple[str, ModelInfo]:
    """The prepared IR for ``config`` from the store (made and saved on a miss)."""
    cache.mkdir(parents=True, exist_ok=True)
    store = PreparedStore(cache)
    key = store.key(path, config.batch, config.imgsz)
    hit = store.lookup(key)
    if hit is not None:
        xml, info = hit
        return str(xml), info
    ov_model = read_model(core, path)
    info = inspect_model(ov_model, path)
    xml = store.save(key, prepare(ov_model, info, config), info)
    return str(xml), info


def prepare(model: ov.Model, info: ModelInfo, config: RuntimeConfig) -> ov.Model:
    """Reshape to the requested batch/size and embed pre-processing in the graph."""
    h, w = config.imgsz or info.imgsz
    if h % info.stride or w % info.stride:
        raise ConfigError(f"imgsz {(h, w)} must be a multiple of the model stride {info.stride}")
    if model.inputs[0].get_partial_shape() != ov.PartialShape([config.batch, 3, h, w]):
        reshape_model(model, info.imgsz, (h, w), config.batch)
    ppp = ov.preprocess.PrePostProcessor(model)
    inp = ppp.input()
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ov.preprocess.ColorFormat.BGR
    )
    inp.model().set_layout(ov.Layout("NCHW"))
    # The /255 is a Multiply by float32(1/255), not PPP's scale() (a Divide): on
    # CPUs that run bf16, the CPU plugin lowers a Divide on a u8 NHWC input
    # differently and the detections drift from Ultralytics' (host-normalised)
    # ones; the Multiply is bit-identical to normalising on the host.
    inp.preprocess().convert_element_type(ov.Type.f32).convert_color(ov.preprocess.ColorFormat.RGB).custom(_scale_1_255)
    ppp.output().tensor().set_element_type(ov.Type.f32)
    return ppp.build()


def _scale_1_255(node: ov.Output) -> ov.Output:
    return ov.opset13.multiply(node, ov.opset13.constant(np.float32(1.0 / 255.0))).output(0)


class Engine:
    """One compiled model and its synchronous request (the latency path).

    Thread-safety: :meth:`infer` serialises callers on a lock; use the
    throughput pipeline for concurrency.
    """

    def __init__(self, compiled: ov.CompiledModel, config: RuntimeConfig, load_timings: LoadTimings) -> None:
        self.compiled = compiled
        self.config = config
        self.load_timings = load_timings
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()
        self.input_shape: tuple[int, ...] = tuple(compiled.inputs[0].get_shape())
        self.info = self._describe()

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    @property
    def input_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the network input (NHWC)."""
        return self.input_shape[1], self.input_shape[2]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one synchronous request on a ``uint8`` ``NHWC`` batch.

        The returned array is a view of the request's output buffer, valid
        until the next call: post-process (or copy) before calling again.
        """
        with self._lock:
            try:
                self._request.infer({0: batch}, share_inputs=True, share_outputs=True)
            except Exception as exc:  # OpenVINO RuntimeError
                raise InferenceError(f"inference failed: {str(exc).strip().splitlines()[0][:300]}") from exc
            return self._request.get_output_tensor(0).data

    def close(self) -> None:
        """Release the request and the compiled model."""
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


def _type_name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, ov.Type):
        return value.get_type_name()
    return str(value)
