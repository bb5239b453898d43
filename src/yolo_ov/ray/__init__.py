"""Scale out on Ray: batch inference with Ray Data, replicated serving with Ray Serve.

* :func:`predict_dataset` (``yolo-ov predict SOURCE --ray [ADDRESS]``): a pool
  of Ray Data actors, each owning one throughput ``Detector``, over folders,
  globs, URIs or a Ray Dataset; the same JSONL records as ``yolo-ov
  predict``, every input exactly once (checked), Parquet through Ray Data.
* :func:`deployment` / :func:`run` (``yolo-ov serve --ray [ADDRESS]
  --replicas N``): the FastAPI app of ``yolo-ov serve`` on Ray Serve, one
  compiled model set per replica, autoscaling and health checks passed through.

With no address a local cluster is started on this machine. Needs the ``ray``
extra (``pip install 'yolo-ov[ray]'``: ``ray[data,serve]``). Importing this
package imports no Ray; the names below load it on first use, and a missing
extra is a :class:`~yolo_ov.errors.MissingExtraError` naming it.

Example:
    >>> from yolo_ov.ray import predict_dataset  # doctest: +SKIP
    >>> predict_dataset("images/", "yolov8n_openvino_model", save_json="out.jsonl").records  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import BatchConfig, Scaling
from .shipping import driver_model

if TYPE_CHECKING:
    from .batch import BatchResult, map_detections, predict_dataset, ship_model
    from .cluster import connect
    from .serving import build_app, deployment, run, shutdown

__all__ = ["BatchConfig", "BatchResult", "Scaling", "build_app", "connect", "deployment", "driver_model",
           "map_detections", "predict_dataset", "require_extra", "run", "ship_model", "shutdown"]

_LAZY = {
    "BatchResult": "batch", "map_detections": "batch", "predict_dataset": "batch", "ship_model": "batch",
    "connect": "cluster",
    "build_app": "serving", "deployment": "serving", "run": "serving", "shutdown": "serving",
}


def require_extra(purpose: str = "running on Ray", *, serve: bool = False) -> None:
    """Raise :class:`~yolo_ov.errors.MissingExtraError` naming the ``ray`` extra if it is not installed."""
    from .cluster import require_extra as check

    check(purpose, serve=serve)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_extra(f"yolo_ov.ray.{name}", serve=module == "serving")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
