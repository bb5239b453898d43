"""The model used when none is given: ``$YOLO_OV_MODEL``, the user cache, then a download.

Only the layers that offer a default (``Detector`` and the CLI) call this;
:mod:`yolo_ov.runtime.model` reads models and never exports, so it does not depend on
:mod:`yolo_ov.export.convert` (which depends on it).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .config import default_cache_dir
from .errors import ModelLoadError
from .runtime.model import resolve_model_path

__all__ = ["DEFAULT_WEIGHTS", "DEFAULT_WEIGHTS_URL", "MODEL_ENV", "default_model_path", "resolve_or_default"]

log = logging.getLogger(__name__)

#: Environment variable naming the model used when none is given.
MODEL_ENV = "YOLO_OV_MODEL"
DEFAULT_WEIGHTS = "yolov8n.pt"
DEFAULT_WEIGHTS_URL = "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolov8n.pt"


def resolve_or_default(model: str | os.PathLike[str] | None) -> Path:
    """:func:`~yolo_ov.runtime.model.resolve_model_path` for ``model``, or the default model for ``None``."""
    return default_model_path() if model is None else resolve_model_path(model)


def default_model_path() -> Path:
    """``$YOLO_OV_MODEL``, then the per-user model cache, then the official
    ``yolov8n.pt`` downloaded and exported (needs the ``export`` extra).

    Raises:
        ModelLoadError: nothing usable was found and the download failed
            (e.g. offline); the message says what to pass instead.
    """
    env = os.environ.get(MODEL_ENV)
    if env:
        return resolve_model_path(env)
    models = default_cache_dir() / "models"
    cached = models / "yolov8n_openvino_model"
    if (cached / "yolov8n.xml").exists():
        return resolve_model_path(cached / "yolov8n.xml")
    weights = models / DEFAULT_WEIGHTS
    try:
        _download(DEFAULT_WEIGHTS_URL, weights)
    except OSError as exc:
        raise ModelLoadError(
            f"no model given and none cached; downloading {DEFAULT_WEIGHTS} failed ({exc}). "
            f"Pass --model PATH (an OpenVINO export folder, .xml, .onnx or .tflite) or set {MODEL_ENV}"
        ) from exc
    from .export.convert import ExportConfig, export_model  # lazy: needs the export extra

    out = export_model(weights, ExportConfig(output=cached))
    return resolve_model_path(out)


def _download(url: str, dest: Path, timeout: float = 15.0) -> None:
    """Download ``url`` to ``dest`` atomically (a partial file never remains)."""
    import urllib.request

    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    log.info("downloading %s to %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, tmp.open("wb") as fh:  # noqa: S310 (fixed https URL)
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
