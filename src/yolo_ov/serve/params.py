"""Per-request detection settings: ``conf``, ``iou``, ``max_det``, ``classes``, ``agnostic``; and slicing.

Both endpoints take them, ``/predict`` as query parameters (strings) and the
KServe endpoint as the request's JSON ``parameters`` (typed values); one
parser turns either into a :class:`~yolo_ov.config.DetectConfig` built on the
server's defaults, and ``DetectConfig`` itself validates the values. The
slicing parameters (``slice``, ``overlap``, ``full_pass``, ``slice_merge``,
``slice_metric``, ``slice_threshold``, ``slice_agnostic``: the CLI's
``--slice ...`` options) make a :class:`~yolo_ov.config.SliceConfig` the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..config import DetectConfig, SliceConfig, parse_slice_size
from ..errors import ConfigError

__all__ = ["DETECT_PARAMETERS", "SLICE_PARAMETERS", "detect_config", "slice_config"]

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


#: The request parameters of sliced inference (``slice`` turns it on), and the SliceConfig field of each.
SLICE_PARAMETERS = {"slice": "size", "overlap": "overlap", "full_pass": "full_pass", "slice_merge": "merge",
                    "slice_metric": "metric", "slice_threshold": "threshold", "slice_agnostic": "class_agnostic"}


def slice_config(params: Mapping[str, Any]) -> SliceConfig | None:
    """The :class:`SliceConfig` of a request's slicing parameters; ``None`` without ``slice``.

    Raises:
        ConfigError: a bad value (one line naming the parameter), or a slicing parameter without ``slice``.

    Example:
        >>> slice_config({"slice": "512", "overlap": "0.25"}).overlap
        (0.25, 0.25)
    """
    given = {k: v for k, v in params.items() if k in SLICE_PARAMETERS and v is not None and v != ""}
    if "slice" not in given:
        if given:
            raise ConfigError(f"parameter {sorted(given)[0]} goes with slice (e.g. slice=640)")
        return None
    size = given["slice"]
    values: dict[str, Any] = {"size": parse_slice_size(size if isinstance(size, (str, list)) else _int("slice", size),
                                                       "parameter slice")}
    for key, value in given.items():
        if key in ("overlap", "slice_threshold"):
            values[SLICE_PARAMETERS[key]] = _float(key, value)
        elif key in ("full_pass", "slice_agnostic"):
            values[SLICE_PARAMETERS[key]] = _bool(key, value)
        elif key in ("slice_merge", "slice_metric"):
            values[SLICE_PARAMETERS[key]] = str(value)
    try:
        return SliceConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"slicing parameters: {exc}") from None


_PARSERS = {"conf": _float, "iou": _float, "max_det": _int, "classes": _classes, "agnostic": _bool}
