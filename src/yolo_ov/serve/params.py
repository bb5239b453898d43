"""Per-request detection settings: ``conf``, ``iou``, ``max_det``, ``classes``, ``agnostic``.

Both endpoints take them, ``/predict`` as query parameters (strings) and the
KServe endpoint as the request's JSON ``parameters`` (typed values); one
parser turns either into a :class:`~yolo_ov.config.DetectConfig` built on the
server's defaults, and ``DetectConfig`` itself validates the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..config import DetectConfig
from ..errors import ConfigError

__all__ = ["DETECT_PARAMETERS", "detect_config"]

#: The request parameters that change detection settings.
DETECT_PARAMETERS = ("conf", "iou", "max_det", "classes", "agnostic")


def detect_config(base: DetectConfig, params: Mapping[str, Any]) -> DetectConfig:
    """``base`` with the detection parameters found in ``params`` applied.

    Other keys are ignored (KServe requests carry their own, such as
    ``binary_data_output``). ``None`` or an empty string leaves a setting as is.

    Raises:
        ConfigError: a value of the wrong type or out of range, naming the parameter.

    Example:
        >>> detect_config(DetectConfig(), {"conf": "0.5", "classes": "0,2"}).classes
        (0, 2)
    """
    changes: dict[str, Any] = {}
    for key in DETECT_PARAMETERS:
        value = params.get(key)
        if value is None or value == "":
            continue
        changes[key] = _PARSERS[key](key, value)
    if not changes:
        return base
    return replace(base, **changes)


def _float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"parameter {key}={value!r}: expected a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {key}={value!r}: expected a number") from None


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"parameter {key}={value!r}: expected an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {key}={value!r}: expected an integer") from None


def _classes(key: str, value: Any) -> tuple[int, ...]:
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    try:
        return tuple(_int(key, v.strip() if isinstance(v, str) else v) for v in items if str(v).strip())
    except ConfigError:
        raise ConfigError(f"parameter {key}={value!r}: expected class ids like 0,2,5") from None


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"parameter {key}={value!r}: expected true or false")


_PARSERS = {"conf": _float, "iou": _float, "max_det": _int, "classes": _classes, "agnostic": _bool}
