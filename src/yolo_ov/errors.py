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
    │   └── OverloadedError  more images waiting than the configured queue allows (HTTP 503)
    ├── ExportError          export from .pt/.onnx/IR failed
    │   └── CalibrationError quantization calibration failed
    ├── DatasetError         a dataset folder that is missing or malformed
    ├── OutputError          an output file or folder that cannot be written
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
    "OutputError",
    "OverloadedError",
    "YoloOvError",
    "openvino_message",
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


class OverloadedError(InferenceError):
    """``submit()`` refused an image at once because ``max_queue`` images are already waiting.

    Nothing was queued: the caller may retry later (a server answers 503 with
    ``Retry-After``). Raised instead of letting the queue, and memory, grow.
    """


class ExportError(YoloOvError):
    """Exporting or converting a model failed."""


class CalibrationError(ExportError):
    """INT8 calibration could not run (e.g. no usable calibration images)."""


class DatasetError(YoloOvError):
    """A dataset folder that is missing, empty or malformed."""


class OutputError(YoloOvError):
    """An output that cannot be written: permission, a full disk, a folder where a file goes.

    The message names the file and the operating system's reason. Sinks that
    raise it leave no half-written record behind.
    """


class MissingExtraError(YoloOvError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed: "
            f"pip install 'yolo-ov[{extra}]'"
        )
        self.package = package
        self.extra = extra


_BOILERPLATE = (
    "Exception from src/", "Check '", "Traceback", "[ GENERAL_ERROR ]", "[GENERAL_ERROR]", "FrontEnd API failed",
)


def openvino_message(exc: BaseException, limit: int = 300) -> str:
    """The informative line(s) of an OpenVINO exception, without its C++ location boilerplate.

    OpenVINO's messages start with lines such as ``Exception from
    src/inference/src/cpp/core.cpp:84:`` and ``Check '...' failed at ...``; the
    line that says what is wrong (``Incorrect weights in bin file!``) comes
    later. Keep the lines that are not boilerplate, joined, shortened to ``limit``.
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(_BOILERPLATE) and not ln.endswith(".cpp:")]
    message = "; ".join(useful or lines[:1])
    return message if len(message) <= limit else message[: limit - 3] + "..."
