"""What a running server holds, whatever its transports: the settings, the models by name, the metrics.

:func:`load_models` opens every model of a :class:`~yolo_ov.serve.ServeConfig`
(through a :data:`DetectorFactory`: by default :func:`open_detector` compiles
the model file with the server's runtime settings; an embedding application
may bring Detectors on engines of its own) and warms it up, so the state a
transport receives is ready. The FastAPI app (and a gRPC transport beside it)
only route requests to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..detector import Detector
from ..pipeline import PipelineConfig
from .errors import ErrorCode, ServeError
from .metrics import ServeMetrics
from .models import ENGINE_TIMEOUT_S, ServedModel
from .settings import ModelSpec, ServeConfig

if TYPE_CHECKING:
    from .reloader import ModelRepository

__all__ = ["DetectorFactory", "ServeState", "load_models", "open_detector", "pipeline_config"]

log = logging.getLogger("yolo_ov.serve")

#: Opens the Detector of one served model (compiling it, or on an engine built elsewhere).
DetectorFactory = Callable[[ModelSpec, ServeConfig], Detector]


def pipeline_config(config: ServeConfig) -> PipelineConfig:
    """The throughput engine's settings for a served model: the server's queue bound and batch wait.

    The engine's own timeout detects a hung device and then retires the
    pipeline; a slow request is the request deadline's business (504), so the
    engine gets at least a minute whatever ``--timeout-s`` says.
    """
    return PipelineConfig(max_queue=config.max_queue, max_wait_ms=config.max_wait_ms,
                          timeout_s=max(config.timeout_s, ENGINE_TIMEOUT_S))


def open_detector(spec: ModelSpec, config: ServeConfig) -> Detector:
    """The default :data:`DetectorFactory`: read and compile ``spec.path`` with the server's runtime settings."""
    return Detector(spec.path, runtime=config.runtime, detect=config.detect, pipeline=pipeline_config(config))


class ServeState:
    """What the transports share: the settings, the models by name and version, the metrics.

    ``app.state.yolo`` holds it. :attr:`versions` routes ``(name, version)``
    to a :class:`ServedModel`; :attr:`models` is each name's default version
    (the highest serving). Both are replaced whole by :meth:`publish`, so a
    request sees the set before a model update or the set after, never half
    of one. When the app is mounted inside another application (whose
    lifespan does not reach a mounted app), call :meth:`close` at shutdown.
    """

    def __init__(self, config: ServeConfig, models: Mapping[str, ServedModel], metrics: ServeMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.accepting = True
        self.repository: ModelRepository | None = None
        self._lock = threading.Lock()
        # The routing table: (name -> version -> model, name -> default model), replaced whole by publish().
        self._table: tuple[dict[str, dict[str, ServedModel]], dict[str, ServedModel]] = (
            {n: {m.version: m} for n, m in models.items()}, dict(models))

    @property
    def versions(self) -> dict[str, dict[str, ServedModel]]:
        """Every model serving: name -> version -> model (a snapshot; do not modify)."""
        return self._table[0]

    @property
    def models(self) -> dict[str, ServedModel]:
        """Each name's default model, its highest version serving (a snapshot; do not modify)."""
        return self._table[1]

    def model(self, name: str | None, version: str | None = None) -> ServedModel:
        """The model named ``name`` (the first one for no name), at ``version`` (the highest serving for none).

        Raises:
            ServeError: ``NOT_FOUND`` for an unknown name or version.
        """
        versions, models = self._table  # one consistent routing table, whatever publish does meanwhile
        if name is None or name == "":
            if not models:
                raise ServeError(ErrorCode.NOT_FOUND, "no model is loaded on this server")
            name = next(iter(models))
        found = versions.get(name)
        if not found:
            raise ServeError(ErrorCode.NOT_FOUND, f"unknown model {name!r}; this server has {sorted(models)}")
        if version is None or version == "":
            return models[name]
        model = found.get(version)
        if model is None:
            have = sorted(found, key=int)
            raise ServeError(ErrorCode.NOT_FOUND, f"model {name!r} has no version {version!r}; it has "
                             + (f"version {have[0]!r}" if len(have) == 1 else f"versions {have}"))
        return model

    def metadata(self, name: str | None, version: str | None = None) -> dict[str, Any]:
        """KServe model metadata of ``name`` at ``version``; ``versions`` lists every version serving, as Triton's.

        Raises:
            ServeError: ``NOT_FOUND`` for an unknown name or version.
        """
        model = self.model(name, version)
        return {**model.metadata(), "versions": sorted(self.versions.get(model.name, {model.version: model}), key=int)}

    def acquire(self, name: str | None, version: str | None = None) -> ServedModel:
        """:meth:`model`, held for one request: a version being retired waits for it. Call ``release()`` after.

        Raises:
            ServeError: ``NOT_FOUND`` for an unknown name or version.
        """
        with self._lock:  # no publish between finding the model and holding it
            model = self.model(name, version)
            model.hold()
        return model

    def publish(self, name: str, versions: Mapping[str, ServedModel]) -> None:
        """Serve ``versions`` of ``name`` from now on (none: the name is gone); one swap of the routing table."""
        with self._lock:
            table = dict(self._table[0])
            if versions:
                table[name] = dict(versions)
            else:
                table.pop(name, None)
            self._table = (table, {n: vs[max(vs, key=int)] for n, vs in table.items()})  # one assignment

    def served(self) -> list[ServedModel]:
        """Every version serving: the models in the order they were given (or loaded), each by version."""
        table = self.versions
        return [m for vs in table.values() for _, m in sorted(vs.items(), key=lambda item: int(item[0]))]

    def index(self, *, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: the repository's versions, or the models given at start."""
        if self.repository is not None:
            return self.repository.index(ready_only=ready_only)
        return [{"name": m.name, "version": m.version, "state": "READY" if m.ready else "UNAVAILABLE", "reason": ""}
                for m in self.served() if m.ready or not ready_only]

    def load(self, name: str) -> None:
        """The repository API's load (explicit mode only).

        Raises:
            ServeError: ``UNAVAILABLE`` without a model repository in explicit mode, as Triton answers.
        """
        self._repository().load(name)

    def unload(self, name: str) -> None:
        """The repository API's unload (explicit mode only); see :meth:`load`."""
        self._repository().unload(name)

    def _repository(self) -> ModelRepository:
        if self.repository is None:
            raise ServeError(ErrorCode.UNAVAILABLE, "explicit model load / unload is not allowed if polling is "
                             "enabled (serve a --model-repository with --model-control explicit)")
        return self.repository

    @property
    def ready(self) -> bool:
        """Accepting requests, and every model ready."""
        return self.accepting and all(m.ready for m in self.models.values())

    def close(self) -> None:
        """Stop taking requests and close every model (accepted images finish first)."""
        self.accepting = False
        if self.repository is not None:
            self.repository.stop()
        for model in self.served():
            model.close()


def load_models(config: ServeConfig, *, open_detector: DetectorFactory = open_detector) -> ServeState:
    """Open and warm up every model of ``config`` (closing those opened if one fails).

    With a model repository, the versions its mode loads at start (a version
    that fails is reported and the others serve) and its poll thread.
    """
    metrics = ServeMetrics()
    if config.model_repository is not None:
        from .reloader import ModelRepository

        state = ServeState(config, {}, metrics)
        state.repository = ModelRepository(state, open_detector)
        try:
            state.repository.start()
        except BaseException:
            state.close()
            raise
        return state
    models: dict[str, ServedModel] = {}
    try:
        for spec in config.models:
            t0 = time.perf_counter()
            models[spec.name] = ServedModel(spec.name, spec.path, open_detector(spec, config), config, metrics)
            log.info("model %s ready in %.0f ms", spec.name, (time.perf_counter() - t0) * 1e3)
    except BaseException:
        for model in models.values():
            model.close()
        raise
    return ServeState(config, models, metrics)
