"""Serving on Ray Serve: the same FastAPI app as ``yolo-ov serve``, one compiled model set per replica.

:func:`deployment` wraps :func:`~yolo_ov.serve.create_app` in a Ray Serve
deployment (``@serve.ingress`` with the app built on the replica, after the
model files are there), so the KServe v2 routes, ``/predict``, ``/metrics``,
the web page and every limit are exactly those of ``yolo-ov serve``; Ray
Serve adds replicas, routing, autoscaling and replacing a dead or unhealthy
replica. Each replica's ``check_health`` is the app's readiness (every model
loaded and accepting): Ray Serve calls it every ``health_check_period_s`` and
replaces a replica that fails it.

``/metrics`` and ``/stats`` are per replica (the one that answered); scrape
every replica, or Ray's own ``ray_serve_*`` metrics, for cluster totals.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from typing import Any

from ray import serve

from ..errors import ConfigError
from ..serve.settings import ModelSpec, ServeConfig, model_spec
from .cluster import connect, require_extra
from .config import Scaling
from .shipping import ModelSource, pack

__all__ = ["APP_NAME", "YoloOvDeployment", "build_app", "deployment", "run", "shutdown"]

#: The Ray Serve application name ``yolo-ov serve --ray`` deploys under.
APP_NAME = "yolo-ov"


@serve.ingress()
class YoloOvDeployment:
    """One replica: the models unpacked (or read from a shared path) here, then ``create_app``.

    Args:
        config: the server settings as made on the driver.
        sources: model name -> where this replica gets its files.
    """

    def __init__(self, config: ServeConfig, sources: Mapping[str, ModelSource]) -> None:
        models = tuple(ModelSpec(name=name, path=src.resolve()) for name, src in sources.items())
        self._config = dataclasses.replace(config, models=models)
        self._app: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        from ..serve.app import create_app

        self._app = create_app(self._config)  # loads, compiles and warms every model first
        return self._app

    def check_health(self) -> None:
        """Ray Serve's health check: the app's readiness. Raising marks the replica for replacement."""
        if self._app is None:
            raise RuntimeError("the app is not built yet")
        state = self._app.state.yolo
        not_ready = [name for name, m in state.models.items() if not m.ready]
        if not state.accepting or not_ready:
            raise RuntimeError(f"not ready: models {not_ready or 'all'} not accepting requests")


def _sources(config: ServeConfig, ship: str) -> dict[str, ModelSource]:
    if ship == "path":
        return {m.name: ModelSource(path=m.path, name=m.name) for m in config.models}
    if ship != "object_store":
        raise ConfigError(f"ship={ship!r}: expected 'object_store' or 'path'")
    import ray

    return {m.name: ModelSource(package=ray.put(pack(m.path)), name=m.name) for m in config.models}


def deployment(config: ServeConfig, *, scaling: Scaling | None = None, ship: str = "object_store",
               name: str = "YoloOv") -> Any:
    """A Ray Serve application serving ``config.models`` (bind it with ``serve.run``).

    Args:
        config: the settings of ``yolo-ov serve`` (models, runtime, limits,
            API key, CORS); its host and port are not used here (Ray Serve's
            proxy listens where ``serve.start`` says; :func:`run` passes them).
        scaling: replicas or autoscaling, health-check periods, CPUs per replica.
        ship: ``"object_store"``: the models' files go through Ray's object
            store from this driver (it must stay connected while the app
            runs, so a replaced replica can fetch them again); ``"path"``:
            every node reads the model paths as given (an image or a volume:
            what ``serve deploy`` and KubeRay's RayService need).
        name: the deployment's name.

    Example:
        >>> from ray import serve  # doctest: +SKIP
        >>> from yolo_ov.ray import Scaling, deployment  # doctest: +SKIP
        >>> from yolo_ov.serve import ServeConfig, model_spec  # doctest: +SKIP
        >>> app = deployment(ServeConfig(models=(model_spec("yolov8n_openvino_model"),)),
        ...                  scaling=Scaling(replicas=2))  # doctest: +SKIP
        >>> serve.run(app, route_prefix="/")  # doctest: +SKIP
    """
    require_extra("Ray Serve", serve=True)
    scaling = scaling or Scaling()
    options = scaling.deployment_options(default_max_ongoing=config.max_queue)
    # Ray Serve's own graceful shutdown waits for requests in flight, bounded like the app's drain.
    options["graceful_shutdown_timeout_s"] = float(config.timeout_s) + 1.0
    return serve.deployment(YoloOvDeployment, name=name, **options).bind(config, _sources(config, ship))


def run(config: ServeConfig, *, address: str | None = None, scaling: Scaling | None = None,
        ship: str = "object_store", name: str = APP_NAME, route_prefix: str = "/") -> str:
    """Deploy on Ray Serve and return the URL it answers on (returns once every replica is ready).

    Connects (or starts a local cluster, see :func:`~yolo_ov.ray.connect`),
    starts Ray Serve's HTTP proxy on ``config.host:config.port`` (port 0:
    a free port chosen here), and deploys :func:`deployment`.
    """
    connect(address)
    port = config.port or _free_port(config.host)
    serve.start(http_options={"host": config.host, "port": port})
    serve.run(deployment(config, scaling=scaling, ship=ship), name=name, route_prefix=route_prefix)
    shown = f"[{config.host}]" if ":" in config.host else config.host
    return f"http://{shown}:{port}"


def shutdown(name: str = APP_NAME, *, stop_serve: bool = False) -> None:
    """Delete the application (its replicas finish their requests first).

    ``stop_serve``: also stop Ray Serve (its controller and proxies); only for
    a cluster this process started, never on a shared one.
    """
    try:
        serve.delete(name, _blocking=True)
    finally:
        if stop_serve:
            serve.shutdown()


def build_app(args: dict[str, Any]) -> Any:
    """Ray Serve application builder for config files (``serve deploy``, KubeRay's RayService).

    ``import_path: yolo_ov.ray.serving:build_app`` with ``args``: ``model``
    (a path or ``NAME=PATH``, or a list; readable on every node), and
    optionally ``replicas``, ``min_replicas``, ``max_replicas``,
    ``target_ongoing_requests``, ``num_cpus``, ``mode``, ``device``,
    ``max_queue``, ``timeout_s``, ``conf``, ``iou``, ``api_key_env``.
    """
    from ..config import DetectConfig, RuntimeConfig

    models = args.get("model") or args.get("models")
    if not models:
        raise ConfigError("build_app needs args.model: a model path (or NAME=PATH), or a list of them")
    models = [models] if isinstance(models, str) else list(models)
    api_key = os.environ.get(str(args["api_key_env"])) if args.get("api_key_env") else None
    config = ServeConfig(
        models=tuple(model_spec(m) for m in models),
        runtime=RuntimeConfig(mode=args.get("mode", "throughput"), device=args.get("device", "CPU")),
        detect=DetectConfig(conf=float(args.get("conf", 0.25)), iou=float(args.get("iou", 0.7))),
        max_queue=int(args.get("max_queue", 64)), timeout_s=float(args.get("timeout_s", 60.0)), api_key=api_key,
    )
    scaling = Scaling(**{k: args[k] for k in ("replicas", "min_replicas", "max_replicas", "target_ongoing_requests",
                                              "num_cpus") if k in args})
    return deployment(config, scaling=scaling, ship="path")


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])

