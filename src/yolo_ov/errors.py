"""The exception tree of yolo-ov.

Every error a user can cause derives from :class:`YoloOvError`, so a caller can
catch one type, and the CLI can turn any of them into a one-line message with a
meaningful exit code instead of a traceback. OpenVINO, NNCF and OpenCV
exceptions are translated at the boundary with ``raise ... from exc`` so the
original cause stays available for debugging.

    YoloOvError
    ├── ConfigError          invalid or conflicting settings
    ├── ModelLoadError       a model file/folder that cannot be read or is not a YOLO detector
    ├── DeviceError          a device that does not exist or cannot compile the model
    ├── InputError           an image/video/source that cannot be read or decoded
    ├── InferenceError       a request that failed or timed out
    ├── ExportError          export from .pt/.onnx/IR failed
    │   └── CalibrationError quantization calibration failed
    ├── DatasetError         a dataset folder that is missing or malformed
    └── MissingExtraError    an optional dependency is not installed
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "ConfigError",
    "DatasetError",
    "DeviceError",
    "ExportError",
    "InferenceError",
    "InputError",
    "MissingExtraError",
    "ModelLoadError",
    "YoloOvError",
]


class YoloOvError(Exception):
    """Base class of every error yolo-ov raises on purpose."""


class ConfigError(YoloOvError, ValueError):
    """Settings that are invalid on their own or conflict with each other."""


class ModelLoadError(YoloOvError):
    """A model that cannot be found, read, or understood as a YOLO detector."""


class DeviceError(YoloOvError):
    """An OpenVINO device that is not available or cannot run the model."""


class InputError(YoloOvError):
    """An input (image, bytes, array, video, stream) that cannot be used.

    ``source`` names the offending input so multi-item runs can report it.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class InferenceError(YoloOvError):
    """An inference request that failed or did not complete in time."""


class ExportError(YoloOvError):
    """Exporting or converting a model failed."""


class CalibrationError(ExportError):
    """INT8 calibration could not run (e.g. no usable calibration images)."""


class DatasetError(YoloOvError):
    """A dataset folder that is missing, empty or malformed."""


class MissingExtraError(YoloOvError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed: "
            f"pip install 'yolo-ov[{extra}]'"
        )
        self.package = package
        self.extra = extra
