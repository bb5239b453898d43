"""``yolo-ov serve``: an inference server on the throughput engine.

KServe v2 REST (the protocol of OpenVINO Model Server, Triton and KServe, so
``tritonclient.http`` works unchanged), a simple ``POST /predict`` returning
the JSONL record of ``yolo-ov predict``, Prometheus metrics and a web page;
bounded queues, body and pixel limits, timeouts, graceful drain; a model
repository with versions, hot reload and Triton's repository API
(``repository`` reads the folder, ``reloader`` keeps the served versions in
step with it).

Split by transport, so a gRPC transport is a thin sibling of the HTTP one:
``errors`` (transport-neutral codes), ``kserve`` (the v2 protocol's tensors
as dataclasses), ``service`` (the v2 operations), ``models`` and ``state``
(the opened models) are shared; ``kserve_rest``, ``http_errors`` and ``app``
are the HTTP transport (REST encoding, statuses, FastAPI routes).

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client,
python-multipart): ``pip install 'yolo-ov[serve]'``. Importing this package
imports none of them; the names below load them on first use.

Example:
    >>> from yolo_ov.serve import ServeConfig, create_app, model_spec  # doctest: +SKIP
    >>> app = create_app(ServeConfig(models=(model_spec("yolov8n_openvino_model"),)))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MissingExtraError
from .settings import ModelSpec, ServeConfig, model_spec, models_from

if TYPE_CHECKING:
    from .app import ServeState, create_app

__all__ = ["ModelSpec", "ServeConfig", "ServeState", "create_app", "model_spec", "models_from", "require_extra"]

#: Distribution name -> the import names that provide it (python-multipart renamed its module).
_EXTRA = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",), "prometheus-client": ("prometheus_client",),
          "python-multipart": ("python_multipart", "multipart")}


def require_extra() -> None:
    """Raise :class:`MissingExtraError` naming the ``serve`` extra if one of its packages is missing."""
    import importlib.util

    for name, modules in _EXTRA.items():
        if not any(importlib.util.find_spec(m) is not None for m in modules):
            raise MissingExtraError(name, "serve", "yolo-ov serve")


def __getattr__(name: str) -> Any:
    if name in ("create_app", "ServeState"):
        require_extra()
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
