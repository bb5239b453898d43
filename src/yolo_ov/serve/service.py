"""The KServe v2 operations on a :class:`~yolo_ov.serve.state.ServeState`, for every transport.

Each function takes and returns the protocol's dataclasses or plain dicts
(:mod:`yolo_ov.serve.kserve`) and raises
:class:`~yolo_ov.serve.errors.ServeError`; the REST routes and a gRPC
servicer only convert their wire form and map the error codes. Inference here
is: read the request's parameters (detection settings, ``timeout``), check
the outputs asked for, check the images against the limits, run them on the
model within the deadline, and build the response of the outputs asked for.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .._version import __version__
from ..config import DetectConfig, SliceConfig
from ..errors import ConfigError
from ..pipeline.slicing import NO_BOXES
from .errors import ErrorCode, ServeError
from .kserve import InferRequest, InferResponse, build_response, request_images, result_tensors
from .models import ServedModel
from .params import detect_config, slice_config

__all__ = ["EXTENSIONS", "infer", "request_settings", "request_timeout", "server_metadata"]

#: The protocol extensions this server supports (Triton's names).
EXTENSIONS = ("binary_tensor_data", "model_configuration", "statistics", "model_repository")


def server_metadata() -> dict[str, Any]:
    """KServe server metadata: name, version, extensions."""
    return {"name": "yolo-ov", "version": __version__, "extensions": list(EXTENSIONS)}


def request_timeout(parameters: Mapping[str, Any]) -> float:
    """A request's own ``timeout`` parameter (microseconds, as Triton's clients send it), in seconds.

    Raises:
        ServeError: ``INVALID_ARGUMENT`` for anything but a positive number.
    """
    value = parameters.get("timeout")
    if value is None:
        return float("inf")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ServeError(ErrorCode.INVALID_ARGUMENT,
                         f"parameter timeout={value!r}: expected a positive number of microseconds")
    return float(value) / 1e6


def request_settings(model: ServedModel, parameters: Mapping[str, Any]) -> DetectConfig:
    """The detection settings of a request: the server's defaults with the request's parameters applied.

    Raises:
        ServeError: ``INVALID_ARGUMENT`` naming a bad parameter, or class ids the model does not have.
    """
    try:
        detect = detect_config(model.config.detect, parameters)
    except ConfigError as exc:
        raise ServeError(ErrorCode.INVALID_ARGUMENT, str(exc)) from None
    _check_classes(detect, model.detector.names)
    return detect


def _check_classes(detect: DetectConfig, names: Mapping[int, str]) -> None:
    """A class id the model does not have is a 400 naming it and the valid range, not a silent empty answer."""
    if detect.classes is None:
        return
    bad = sorted(c for c in detect.classes if c not in names)
    if bad:
        ids = sorted(names)
        valid = f"this model's class ids are {ids[0]}-{ids[-1]} ({len(ids)} classes)" if ids else "it has no classes"
        raise ServeError(ErrorCode.INVALID_ARGUMENT, f"parameter classes={bad}: no such class id; {valid}")


def request_slicing(model: ServedModel, parameters: Mapping[str, Any]) -> SliceConfig | None:
    """A request's sliced-inference settings (``slice=...`` and the rest), ``None`` when it asks for none.

    Raises:
        ServeError: ``INVALID_ARGUMENT`` naming a bad parameter, or slicing asked of a classification model.
    """
    try:
        slicing = slice_config(parameters)
    except ConfigError as exc:
        raise ServeError(ErrorCode.INVALID_ARGUMENT, str(exc)) from None
    if slicing is not None and model.detector.model_info.task == "classify":
        raise ServeError(ErrorCode.INVALID_ARGUMENT, f"model {model.name!r}: {NO_BOXES}")
    return slicing


async def infer(model: ServedModel, request: InferRequest, *, started: float | None = None) -> InferResponse:
    """Run ``request`` on ``model`` and answer with the outputs it asked for.

    Args:
        model: the served model (found with ``ServeState.model(name, version)``).
        request: the parsed request.
        started: when the request arrived (``time.monotonic()``); the
            deadline is ``--timeout-s`` from then, or the request's own
            ``timeout`` from now, whichever comes first.

    Raises:
        ServeError: ``INVALID_ARGUMENT`` (protocol, parameters, images,
            unknown outputs), ``PAYLOAD_TOO_LARGE``, ``OVERLOADED``,
            ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``INTERNAL``.
    """
    deadline = (time.monotonic() if started is None else started) + model.config.timeout_s
    images = request_images(request)
    detect = request_settings(model, request.parameters)
    slicing = request_slicing(model, request.parameters)
    deadline = min(deadline, time.monotonic() + request_timeout(request.parameters))
    known = {o.name for o in model.outputs}
    unknown = [o.name for o in request.outputs or () if o.name not in known]
    if unknown:
        raise ServeError(ErrorCode.INVALID_ARGUMENT,
                         f"unknown outputs {unknown}; model {model.name!r} gives {sorted(known)}")
    checked = model.check(images, [f"image[{i}]" for i in range(len(images))])
    results = await model.infer(checked, detect, deadline, slicing=slicing)
    return build_response(request, result_tensors(results), model_name=model.name, model_version=model.version)
