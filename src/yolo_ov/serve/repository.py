"""A model repository on disk: ``DIR/<name>/<version>/``, version policies, and a stable-file check.

The layout is OpenVINO Model Server's and Triton's: one folder per model, one
positive-integer folder per version, holding what :class:`~yolo_ov.Detector`
loads (an OpenVINO folder's ``*.xml`` + ``*.bin`` + ``metadata.yaml``, or one
``.xml``, ``.onnx`` or ``.tflite``)::

    models/
      yolov8n/
        config.yaml          # optional: version_policy
        1/  model.xml model.bin metadata.yaml
        2/  model.onnx

``config.yaml`` may hold ``version_policy`` with Triton's and OVMS's names:
``{latest: {num_versions: N}}``, ``{specific: {versions: [1, 3]}}`` or
``{all: {}}``; without it a model serves its latest version only.

Nothing here loads a model: :func:`scan` reads the folders and each version's
*fingerprint* (every file's path, size and mtime), so the reloader
(:mod:`yolo_ov.serve.reloader`) can tell new, changed and removed versions
apart, and :class:`StableFiles` holds a version back until its fingerprint has
not changed between two polls (a version still being copied is not loaded
half-written).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["CONFIG_FILE", "ModelFolder", "StableFiles", "VersionFolder", "VersionPolicy", "read_policy", "scan"]

#: The optional per-model configuration file, beside the version folders.
CONFIG_FILE = "config.yaml"
_MODEL_SUFFIXES = (".onnx", ".tflite")

#: A version's files as seen at one poll: ``(relative path, size, mtime_ns)`` of each, sorted.
Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, kw_only=True)
class VersionPolicy:
    """Which of a model's versions are served: Triton's and OVMS's ``version_policy``.

    Attributes:
        kind: ``"latest"`` (the ``num_versions`` highest), ``"specific"``
            (exactly ``versions``, those present) or ``"all"``.
        num_versions: for ``latest``.
        versions: for ``specific``.
    """

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "specific", "all"):
            raise ConfigError(f"version_policy {self.kind!r}: use latest, specific or all")
        if self.kind == "latest" and (not isinstance(self.num_versions, int) or isinstance(self.num_versions, bool)
                                      or self.num_versions < 1):
            raise ConfigError(f"version_policy latest: num_versions must be a positive integer, "
                              f"got {self.num_versions!r}")
        if self.kind == "specific":
            if not self.versions or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                            for v in self.versions):
                raise ConfigError(f"version_policy specific: versions must be a list of positive integers, "
                                  f"got {list(self.versions)!r}")
            object.__setattr__(self, "versions", tuple(sorted(set(self.versions))))

    def select(self, available: list[int] | tuple[int, ...] | set[int]) -> tuple[int, ...]:
        """The versions to serve out of ``available``, in ascending order."""
        present = sorted(set(available))
        if self.kind == "all":
            return tuple(present)
        if self.kind == "specific":
            return tuple(v for v in present if v in self.versions)
        return tuple(present[-self.num_versions:])

    def describe(self) -> dict[str, Any]:
        """The policy as written in ``config.yaml``."""
        if self.kind == "latest":
            return {"latest": {"num_versions": self.num_versions}}
        if self.kind == "specific":
            return {"specific": {"versions": list(self.versions)}}
        return {"all": {}}


def policy_from(value: Any, where: str = "version_policy") -> VersionPolicy:
    """A :class:`VersionPolicy` from its mapping form (``{latest: {num_versions: 2}}``).

    Raises:
        ConfigError: naming ``where`` and what is wrong.
    """
    if value is None:
        return VersionPolicy()
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ConfigError(f"{where}: expected one of {{latest: {{num_versions: N}}}}, "
                          f"{{specific: {{versions: [..]}}}} or {{all: {{}}}}, got {value!r}")
    (kind, body), = value.items()
    body = body or {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where}: {kind} takes a mapping, got {body!r}")
    try:
        if kind == "latest":
            return VersionPolicy(kind="latest", num_versions=body.get("num_versions", 1))
        if kind == "specific":
            versions = body.get("versions")
            return VersionPolicy(kind="specific", versions=tuple(versions) if isinstance(versions, list) else ())
        return VersionPolicy(kind=str(kind))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def read_policy(folder: Path) -> VersionPolicy:
    """The version policy of the model in ``folder`` (its ``config.yaml``; latest 1 without one).

    Raises:
        ConfigError: an unreadable or malformed ``config.yaml``, naming the file.
    """
    path = folder / CONFIG_FILE
    if not path.is_file():
        return VersionPolicy()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not readable YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping with version_policy")
    return policy_from(data.get("version_policy"), f"{path}: version_policy")


@dataclass(frozen=True)
class VersionFolder:
    """One version on disk: its folder, what the Detector opens (or why nothing), its fingerprint."""

    version: int
    folder: Path
    model_path: Path | None
    problem: str | None
    fingerprint: Fingerprint


@dataclass(frozen=True)
class ModelFolder:
    """One model on disk: its versions and its policy (or why its ``config.yaml`` was refused)."""

    name: str
    folder: Path
    policy: VersionPolicy
    versions: dict[int, VersionFolder] = field(default_factory=dict)
    problem: str | None = None

    def wanted(self) -> tuple[int, ...]:
        """The versions the policy serves (of those present)."""
        return self.policy.select(list(self.versions))


def model_path(folder: Path) -> tuple[Path | None, str | None]:
    """What the Detector opens for a version folder: the folder (an OpenVINO IR), or its one ``.onnx``/``.tflite``."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    xmls = [p for p in files if p.suffix.lower() == ".xml"]
    if len(xmls) == 1:
        return folder, None
    if len(xmls) > 1:
        return None, f"{folder}: {len(xmls)} .xml files; a version holds one model"
    others = [p for p in files if p.suffix.lower() in _MODEL_SUFFIXES]
    if len(others) == 1:
        return others[0], None
    if len(others) > 1:
        return None, f"{folder}: {len(others)} model files; a version holds one model"
    return None, f"{folder}: no model file (an OpenVINO .xml + .bin, .onnx or .tflite)"


def fingerprint(folder: Path) -> Fingerprint:
    """Every file under ``folder``: relative path, size, mtime (what changes when a file is copied or edited)."""
    out = []
    for path in sorted(folder.rglob("*")):
        try:
            st = path.stat()
        except OSError:
            continue  # removed while listed: the next poll sees it
        if path.is_file():
            out.append((path.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(out)


def scan(root: Path, names: set[str] | None = None) -> dict[str, ModelFolder]:
    """Every model folder of ``root`` (or only ``names``) with its version folders.

    A folder whose name is not a positive integer is not a version and is
    skipped, as Triton and OVMS skip it; hidden entries are skipped too.
    """
    from .settings import valid_name

    models: dict[str, ModelFolder] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if names is not None and folder.name not in names:
            continue
        if not valid_name(folder.name):
            continue
        problem = None
        try:
            policy = read_policy(folder)
        except ConfigError as exc:
            policy, problem = VersionPolicy(), str(exc)
        versions = {}
        for sub in folder.iterdir():
            if not sub.is_dir() or not sub.name.isdigit() or int(sub.name) < 1:
                continue
            path, why = model_path(sub)
            versions[int(sub.name)] = VersionFolder(int(sub.name), sub, path, why, fingerprint(sub))
        models[folder.name] = ModelFolder(folder.name, folder, policy, dict(sorted(versions.items())), problem)
    return models


class StableFiles:
    """Lets a version through once its fingerprint is the same at two polls in a row.

    A version being copied grows between polls; loading it then would read a
    truncated ``.bin``. :meth:`stable` remembers each key's last fingerprint
    and answers whether this one equals it.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], Fingerprint] = {}

    def stable(self, name: str, version: int, print_: Fingerprint) -> bool:
        key = (name, version)
        previous = self._seen.get(key)
        self._seen[key] = print_
        return previous == print_ and bool(print_)

    def forget(self, keep: set[tuple[str, int]]) -> None:
        """Drop what is known of versions not in ``keep`` (removed from disk)."""
        for key in [k for k in self._seen if k not in keep]:
            del self._seen[key]
