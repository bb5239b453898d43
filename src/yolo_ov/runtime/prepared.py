"""The prepared-model store: makes a cached start skip everything but the blob import.

OpenVINO's model cache only pays off fully when ``compile_model`` is given a
*file*: with an in-memory ``ov.Model`` (ours carries reshaping and embedded
pre-processing) every start must still read the IR, rebuild the graph and
hash it before the cache can be consulted. So the first load saves the
prepared graph as an IR in ``<cache_dir>/prepared/<key>/`` together with the
:class:`~yolo_ov.runtime.model.ModelInfo` read from it; later loads skip reading and
preparing and compile that file, which OpenVINO's cache answers directly.

The key covers what the prepared graph depends on: the source files'
absolute paths, sizes and modification times, the batch and input size,
whether float layers run below f32 (``prepare`` then swaps BGR->RGB as data),
the OpenVINO version and :data:`PREPARE_VERSION` (bump it when ``prepare``
changes what it builds).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import openvino as ov

from .model import HeadType, ModelInfo, TensorSpec

__all__ = ["PREPARE_VERSION", "PreparedStore"]

#: Version of the graph ``runtime.prepare`` builds; part of every key.
PREPARE_VERSION = 3


class PreparedStore:
    """Prepared IRs and their ``ModelInfo`` under ``<cache_dir>/prepared``."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "prepared"

    def key(self, source: Path, batch: int, hw: tuple[int, int] | None, *, below_f32: bool = False) -> str:
        files = [source, source.with_suffix(".bin"), source.parent / "metadata.yaml"]
        ident: dict[str, Any] = {
            "files": [
                [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.exists()
            ],
            "batch": batch,
            "hw": list(hw) if hw else None,
            "openvino": ov.get_version(),
            "prepare": PREPARE_VERSION,
            "below_f32": below_f32,  # runtime.prepare's BGR->RGB depends on the inference precision
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]

    def lookup(self, key: str) -> tuple[Path, ModelInfo] | None:
        """The prepared IR and its info, when a complete entry exists."""
        folder = self.root / key
        xml, meta = folder / "model.xml", folder / "info.json"
        if not (xml.exists() and xml.with_suffix(".bin").exists() and meta.exists()):
            return None
        try:
            return xml, _info_from_dict(json.loads(meta.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged entry is rebuilt, not fatal

    def save(self, key: str, prepared: ov.Model, info: ModelInfo) -> Path:
        """Write an entry atomically (a temp folder renamed into place); return the IR path."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / key
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            ov.save_model(prepared, str(tmp / "model.xml"), compress_to_fp16=False)
            (tmp / "info.json").write_text(json.dumps(_info_to_dict(info), default=str), encoding="utf-8")
            try:
                os.replace(tmp, final)
            except OSError:  # another process saved the same entry first: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final / "model.xml"


def _info_to_dict(info: ModelInfo) -> dict[str, Any]:
    return {
        "path": str(info.path), "names": {str(k): v for k, v in info.names.items()},
        "names_source": info.names_source, "imgsz": list(info.imgsz), "stride": info.stride, "task": info.task,
        "head": info.head.value, "inputs": [t.to_dict() for t in info.inputs],
        "outputs": [t.to_dict() for t in info.outputs], "batch": info.batch, "metadata": info.metadata,
    }


def _info_from_dict(d: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        path=Path(d["path"]), names={int(k): v for k, v in d["names"].items()}, names_source=d["names_source"],
        imgsz=(int(d["imgsz"][0]), int(d["imgsz"][1])), stride=int(d["stride"]), task=d["task"],
        head=HeadType(d["head"]), inputs=tuple(TensorSpec(**t) for t in d["inputs"]),
        outputs=tuple(TensorSpec(**t) for t in d["outputs"]), batch=d["batch"], metadata=d["metadata"],
    )
