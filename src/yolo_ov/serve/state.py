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
import time
from collections.abc import Callable, Mapping

from ..detector import Detector
from ..pipeline import PipelineConfig
from .errors import ErrorCode, ServeError
from .metrics import ServeMetrics
from .models import ENGINE_TIMEOUT_S, ServedModel
from .settings import ModelSpec, ServeConfig

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
    """What the transports share: the settings, the models by name, the metrics.

    ``app.state.yolo`` holds it. When the app is mounted inside another
    application (whose lifespan does not reach a mounted app), call
    :meth:`close` at shutdown.
    """

    def __init__(self, config: ServeConfig, models: Mapping[str, ServedModel], metrics: ServeMetrics) -> None:
        self.config = config
        self.models = dict(models)
        self.metrics = metrics
        self.accepting = True

    def model(self, name: str | None, version: str | None = None) -> ServedModel:
        """The model named ``name`` (the first one for no name), at ``version`` (only ``"1"`` exists).

        Raises:
            ServeError: ``NOT_FOUND`` for an unknown name or version.
        """
        if version not in (None, "", "1"):
            raise ServeError(ErrorCode.NOT_FOUND, f"model {name!r} has no version {version!r}; it has version '1'")
        if name is None or name == "":
            return next(iter(self.models.values()))
        found = self.models.get(name)
        if found is None:
            raise ServeError(ErrorCode.NOT_FOUND, f"unknown model {name!r}; this server has {sorted(self.models)}")
        return found

    @property
    def ready(self) -> bool:
        """Accepting requests, and every model ready."""
        return self.accepting and all(m.ready for m in self.models.values())

    def close(self) -> None:
        """Stop taking requests and close every model (accepted images finish first)."""
        self.accepting = False
        for model in self.models.values():
            model.close()


def load_models(config: ServeConfig, *, open_detector: DetectorFactory = open_detector) -> ServeState:
    """Open and warm up every model of ``config`` (closing those opened if one fails)."""
    metrics = ServeMetrics()
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
