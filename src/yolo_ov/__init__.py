"""yolo-ov: Ultralytics YOLO detectors on Intel OpenVINO, with latency and
throughput as explicit, measurable choices.

Nothing happens on import: no network, no files written, and no torch or
ultralytics import (those are only needed by ``yolo-ov export``).

Example:
    >>> from yolo_ov import Detector  # doctest: +SKIP
    >>> det = Detector("yolov8n_openvino_model", mode="latency")  # doctest: +SKIP
    >>> det("bus.jpg").class_names  # doctest: +SKIP
"""

from __future__ import annotations

from ._version import __version__
from .config import DetectConfig, Mode, Precision, RuntimeConfig, SliceConfig, load_runtime_config
from .detector import Detector
from .errors import (
    CalibrationError,
    ConfigError,
    DatasetError,
    DeviceError,
    ExportError,
    InferenceError,
    InputError,
    MissingExtraError,
    ModelLoadError,
    OutputError,
    OverloadedError,
    YoloOvError,
)
from .pipeline import PipelineConfig, Specialize
from .results import Classification, Detections, Failure, Timings
from .runtime.core import CompiledInfo, LoadTimings, available_devices
from .runtime.engine import Engine, FakeEngine
from .runtime.model import HeadType, ModelInfo, TensorSpec

__all__ = [
    "CalibrationError",
    "Classification",
    "CompiledInfo",
    "ConfigError",
    "DatasetError",
    "DetectConfig",
    "Detections",
    "Detector",
    "DeviceError",
    "Engine",
    "ExportError",
    "Failure",
    "FakeEngine",
    "HeadType",
    "InferenceError",
    "InputError",
    "LoadTimings",
    "MissingExtraError",
    "Mode",
    "ModelInfo",
    "ModelLoadError",
    "OutputError",
    "OverloadedError",
    "PipelineConfig",
    "Precision",
    "RuntimeConfig",
    "SliceConfig",
    "Specialize",
    "TensorSpec",
    "Timings",
    "YoloOvError",
    "__version__",
    "available_devices",
    "load_runtime_config",
]
