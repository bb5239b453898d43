"""Getting a model to every Ray worker: its files as bytes, or a path every node can read.

A cluster's nodes do not share the driver's disk. :func:`pack` reads the few
files a model is made of (an OpenVINO folder's ``.xml``, ``.bin`` and
``metadata.yaml``; an ``.onnx``/``.tflite`` file) into a :class:`ModelPackage`
that the driver puts in Ray's object store once; each worker :func:`unpack`\\ s
it into its node's cache, in a folder named by the content's SHA-256, so a
node keeps one copy however many actors or replicas it runs, and OpenVINO's
model cache beside it (``RuntimeConfig(cache_dir="auto")``) compiles the
model once per node and imports the blob afterwards. Nothing here imports Ray.

:class:`ModelSource` is what an actor or replica is given: the package (or an
object reference to it), or a path that every node can read (a shared volume,
a path baked into the container image).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import default_cache_dir
from ..errors import ConfigError, ModelLoadError
from ..runtime.model import resolve_model_path

__all__ = ["MAX_PACKAGE_BYTES", "ModelPackage", "ModelSource", "driver_model", "pack", "unpack"]

#: The largest model shipped through the object store (beyond it, put it on a shared path).
MAX_PACKAGE_BYTES = 2 * 1024**3

_SIDE_FILES = ("metadata.yaml",)


@dataclass(frozen=True, kw_only=True)
class ModelPackage:
    """A model's files in memory, ready to be put in Ray's object store.

    Attributes:
        folder: the name of the folder the files came from (kept, so the
            unpacked model reads like the original, e.g. ``yolov8n_openvino_model``).
        entry: the file the model loads from (``yolov8n.xml``, ``m.onnx``).
        files: file name -> contents.
        digest: SHA-256 over names and contents: the unpacked folder's name.
    """

    folder: str
    entry: str
    files: dict[str, bytes]
    digest: str

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


@dataclass(frozen=True, kw_only=True)
class ModelSource:
    """Where a worker gets the model: ``package`` (bytes or an object ref to them) or ``path``."""

    package: Any = None
    path: Path | None = None
    name: str = "model"

    def __post_init__(self) -> None:
        if (self.package is None) == (self.path is None):
            raise ConfigError("ModelSource needs exactly one of package= or path=")

    def resolve(self, root: Path | None = None) -> Path:
        """The local path to load from: the shared path as is, or the package unpacked on this node."""
        if self.path is not None:
            return self.path
        package = self.package
        if not isinstance(package, ModelPackage):  # an ObjectRef that Ray did not resolve for us
            import ray

            package = ray.get(package)
        return unpack(package, root)


def _model_files(path: Path) -> tuple[Path, list[Path]]:
    """The entry file and every file the model needs, for a folder, ``.xml``, ``.onnx`` or ``.tflite``."""
    entry = resolve_model_path(path)
    files = [entry]
    if entry.suffix.lower() == ".xml":
        weights = entry.with_suffix(".bin")
        if not weights.is_file():
            raise ModelLoadError(f"{entry}: its weights {weights.name} are missing")
        files.append(weights)
    files += [entry.parent / name for name in _SIDE_FILES if (entry.parent / name).is_file()]
    return entry, files


def pack(path: str | os.PathLike[str]) -> ModelPackage:
    """Read the model at ``path`` into a :class:`ModelPackage` (checked: it must be loadable here first).

    Raises:
        ModelLoadError: the model or one of its files is missing.
        ConfigError: the model is larger than :data:`MAX_PACKAGE_BYTES` (use a shared path).
    """
    entry, paths = _model_files(Path(path).expanduser())
    size = sum(p.stat().st_size for p in paths)
    if size > MAX_PACKAGE_BYTES:
        raise ConfigError(f"{entry}: {size / 1e9:.1f} GB is too large to ship through Ray's object store; "
                          "put it on a path every node can read and pass ship='path'")
    files = {p.name: p.read_bytes() for p in paths}
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    folder = entry.parent.name if entry.suffix.lower() == ".xml" else entry.stem
    return ModelPackage(folder=folder or "model", entry=entry.name, files=files, digest=h.hexdigest()[:32])


def unpack(package: ModelPackage, root: Path | None = None) -> Path:
    """Write ``package`` under ``root`` (default: the per-user yolo-ov cache) once; return its entry file.

    The folder appears atomically (written beside it, then renamed), so
    several actors of one node unpacking at once never see half a model; a
    folder that is already there (same digest, same contents) is reused.
    """
    base = (root or default_cache_dir() / "ray-models") / package.digest
    target = base / package.folder
    entry = target / package.entry
    if entry.is_file():
        return entry
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=base))
    try:
        for name, data in package.files.items():
            (tmp / name).write_bytes(data)
        try:
            tmp.rename(target)
        except OSError:  # another actor of this node won the race: its copy is identical
            if not entry.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def driver_model(model: str | os.PathLike[str] | None) -> tuple[Path, Any]:
    """``(path, ModelInfo)`` of ``model`` (``None``: the default model), read on the driver without compiling.

    A model that is missing or not a YOLO model fails here, in one line,
    before Ray starts or ships it; the classes it names check ``--classes``.
    """
    from ..default_model import resolve_or_default
    from ..runtime.core import get_core
    from ..runtime.model import inspect_model, read_model

    path = resolve_or_default(model)
    return path, inspect_model(read_model(get_core(), path), path)
