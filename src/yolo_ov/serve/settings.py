"""Settings of ``yolo-ov serve``: one frozen, keyword-only object, validated on construction.

Every limit the server enforces is defined here once, with what it protects:
the command line, :func:`~yolo_ov.serve.create_app` and the docs all read it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DetectConfig, Mode, RuntimeConfig
from ..errors import ConfigError, ModelLoadError

__all__ = ["HTTP_PARSERS", "MODEL_CONTROL_MODES", "ModelSpec", "ServeConfig", "model_spec", "models_from",
           "valid_name"]

#: The HTTP/1.1 parsers ``yolo-ov serve`` can run uvicorn with (``--http``).
HTTP_PARSERS = ("auto", "httptools", "h11")

#: How a model repository is managed (Triton's ``--model-control-mode`` names): ``none`` loads it at start only,
#: ``poll`` also picks up changes every ``repository_poll_s``, ``explicit`` loads and unloads only through the
#: repository API (and ``load_models`` at start).
MODEL_CONTROL_MODES = ("none", "poll", "explicit")

#: Model files the server loads. A ``.pt``/``.pth`` checkpoint is a pickle that
#: runs code when read, so the server never loads one (export it first).
_ALLOWED_SUFFIXES = (".xml", ".onnx", ".tflite")
_PICKLES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".torchscript")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def valid_name(name: str) -> bool:
    """Whether ``name`` is a model name clients can use in a URL (letters, digits, ``_ - .``; at most 64)."""
    return bool(_NAME.match(name))


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One served model: the name clients use and the file or folder it is read from."""

    name: str
    path: Path

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"model name {self.name!r}: use letters, digits, '_', '-' or '.' (at most 64, not starting with . - _)"
            )
        path = Path(self.path).expanduser()
        object.__setattr__(self, "path", path)
        suffix = path.suffix.lower()
        # A model the server cannot load is exit 3 (ModelLoadError), as for ``predict``: the same file, the same code.
        if suffix in _PICKLES:
            raise ModelLoadError(
                f"{path}: the server never loads {suffix} checkpoints (unpickling runs code); "
                f"export it first: yolo-ov export {path}"
            )
        if not path.exists():
            raise ModelLoadError(f"{path}: no such model file or folder")
        if path.is_file() and suffix not in _ALLOWED_SUFFIXES:
            raise ModelLoadError(f"{path}: not a model the server loads (an OpenVINO folder, .xml, .onnx or .tflite)")


def model_spec(text: str | Path) -> ModelSpec:
    """``--model`` value to a :class:`ModelSpec`: ``NAME=PATH``, or ``PATH`` named after its file.

    The name of ``yolov8n_openvino_model/`` is ``yolov8n``; of ``m.onnx``, ``m``.

    Example:
        >>> model_spec("det=models/yolov8n_openvino_model").name  # doctest: +SKIP
        'det'
    """
    raw = str(text)
    name, sep, path = raw.partition("=")
    if sep and _NAME.match(name) and not Path(raw).exists():
        return ModelSpec(name=name, path=Path(path))
    p = Path(raw)
    stem = p.name.removesuffix("_openvino_model") if p.suffix == "" else p.stem
    return ModelSpec(name=stem or "model", path=p)


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """How ``yolo-ov serve`` runs.

    Attributes:
        models: the models served, each compiled once at start-up.
        host, port: where to listen; ``127.0.0.1`` unless told otherwise.
        runtime: how each model is compiled (``throughput`` by default: several
            streams kept busy by concurrent clients).
        detect: default detection settings; a request may override them.
        max_queue: most images waiting per model; beyond it a request gets 503
            with ``Retry-After`` at once (memory never grows without bound).
        max_wait_ms: with a batch > 1 model, how long a partial batch waits for
            images from other requests.
        timeout_s: a request not answered within this gets 504; also bounds the
            graceful drain at shutdown.
        max_body_mb: a body larger than this gets 413, before it is read whole.
        max_pixels: an image whose header declares more pixels gets 413, before
            it is decoded (decompression bombs).
        api_key: when set, every endpoint but health and the page needs
            ``Authorization: Bearer <key>`` (compared in constant time).
        cors_origins: origins allowed to call the API from a browser (none by default).
        retry_after_s: the ``Retry-After`` a 503 suggests.
        header_timeout_s: a connection that has not sent a whole request head
            within this is closed (clients dribbling headers cannot hold sockets).
        keep_alive_s: an idle kept-alive connection is closed after this.
        max_connections: open connections at most; one beyond gets 503 and is
            closed at once (idle sockets cannot exhaust the file descriptors).
        http_parser: ``"auto"`` (httptools when installed, as uvicorn picks),
            ``"httptools"`` (the C parser: the faster) or ``"h11"`` (pure Python).
        model_repository: serve the models of this folder (``NAME/VERSION/``,
            :mod:`yolo_ov.serve.repository`) instead of ``models``; the two
            exclude each other.
        repository_poll_s: with ``model_control="poll"``, how often the
            repository is read for new, changed and removed versions (0: never).
        model_control: ``none``, ``poll`` (default) or ``explicit`` (only the
            repository API loads and unloads; no poll), as Triton's
            ``--model-control-mode``.
        load_models: in explicit mode, the models loaded at start (``"*"``: all).

    Example:
        >>> cfg = ServeConfig(models=(model_spec("yolov8n_openvino_model"),), max_queue=32)  # doctest: +SKIP
    """

    models: tuple[ModelSpec, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(mode=Mode.THROUGHPUT))
    detect: DetectConfig = field(default_factory=DetectConfig)
    max_queue: int = 64
    max_wait_ms: float = 2.0
    timeout_s: float = 60.0
    max_body_mb: float = 20.0
    max_pixels: int = 100_000_000
    api_key: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    retry_after_s: int = 1
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 1000
    http_parser: str = "auto"
    model_repository: Path | None = None
    repository_poll_s: float = 2.0
    model_control: str = "poll"
    load_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        models = tuple(self.models)
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "load_models", tuple(self.load_models))
        self._check_repository()
        if not models and self.model_repository is None:
            raise ConfigError("serve needs at least one model (--model) or a model repository (--model-repository)")
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"two models are named {', '.join(dupes)}; name them: --model NAME=PATH")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port!r}")
        _positive_int("max_queue", self.max_queue)
        _positive_int("max_pixels", self.max_pixels)
        _positive_int("retry_after_s", self.retry_after_s)
        _positive_int("max_connections", self.max_connections)
        for name in ("timeout_s", "max_body_mb", "header_timeout_s", "keep_alive_s"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not float(self.max_wait_ms) >= 0:
            raise ConfigError(f"max_wait_ms must be zero or more, got {self.max_wait_ms!r}")
        if self.http_parser not in HTTP_PARSERS:
            raise ConfigError(f"http_parser must be one of {', '.join(HTTP_PARSERS)}, got {self.http_parser!r}")
        if self.api_key is not None and len(self.api_key) < 16:
            raise ConfigError("the API key must be at least 16 characters")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    def _check_repository(self) -> None:
        if self.model_control not in MODEL_CONTROL_MODES:
            raise ConfigError(f"model_control {self.model_control!r}: use one of {', '.join(MODEL_CONTROL_MODES)}")
        if not float(self.repository_poll_s) >= 0:
            raise ConfigError(f"repository_poll_s must be zero or more, got {self.repository_poll_s!r}")
        if self.model_repository is None:
            if self.load_models or self.model_control != "poll":
                raise ConfigError("--model-control and --load-model go with --model-repository")
            return
        root = Path(self.model_repository).expanduser()
        object.__setattr__(self, "model_repository", root)
        if self.models:
            raise ConfigError("--model and --model-repository exclude each other: put the model in the repository "
                              "as DIR/NAME/1/")
        if not root.is_dir():
            raise ModelLoadError(f"--model-repository {root}: no such folder")
        if self.load_models and self.model_control != "explicit":
            raise ConfigError("--load-model goes with --model-control explicit (the other modes load every model)")

    @property
    def polls(self) -> bool:
        """Whether the repository is read again while serving."""
        return self.model_repository is not None and self.model_control == "poll" and self.repository_poll_s > 0

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def binds_all_interfaces(self) -> bool:
        return self.host in ("0.0.0.0", "::", "")  # noqa: S104 - this is the check that warns about it

    def limits(self) -> dict[str, Any]:
        """The limits as the API reports them (``GET /models``)."""
        return {
            "max_queue": self.max_queue, "max_wait_ms": self.max_wait_ms, "timeout_s": self.timeout_s,
            "max_body_mb": self.max_body_mb, "max_pixels": self.max_pixels,
            "header_timeout_s": self.header_timeout_s, "keep_alive_s": self.keep_alive_s,
            "max_connections": self.max_connections,
        }


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def models_from(values: Mapping[str, str | Path] | list[str | Path]) -> tuple[ModelSpec, ...]:
    """Model specs from ``{name: path}`` or ``["name=path" | "path", ...]``."""
    if isinstance(values, Mapping):
        return tuple(ModelSpec(name=n, path=Path(p)) for n, p in values.items())
    return tuple(model_spec(v) for v in values)
