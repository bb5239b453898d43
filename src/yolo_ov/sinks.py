"""Where results go: JSONL records and annotated image copies.

Sinks consume :class:`~yolo_ov.results.Detections` and
:class:`~yolo_ov.results.Failure` records; they never decide anything about
inference. Each is a context manager so files are flushed and closed even
when a run is interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import cv2
import numpy as np

from .errors import ConfigError
from .results import Detections, Failure

__all__ = ["AnnotatedImageSink", "JsonlSink"]


class JsonlSink:
    """One JSON object per line per input: detections or ``{"source", "error"}``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] | None = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write JSONL output ({exc.strerror or exc})") from exc

    def write(self, record: Detections | Failure) -> None:
        assert self._fh is not None, "sink is closed"
        self._fh.write(record.to_json() + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AnnotatedImageSink:
    """Saves a copy of each image with its boxes drawn, named after its source.

    Names that collide (same file name from different folders) get a numeric
    suffix instead of overwriting each other.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.folder}: cannot create output folder ({exc.strerror or exc})") from exc
        self._used: set[str] = set()

    def write(self, result: Detections, image: np.ndarray) -> Path:
        name = self._name_for(result)
        out = self.folder / name
        ok, buf = cv2.imencode(out.suffix or ".jpg", result.draw(image))
        if not ok:
            raise ConfigError(f"{out}: cannot encode the annotated image")
        out.write_bytes(buf.tobytes())
        return out

    def _name_for(self, result: Detections) -> str:
        src = result.source or "image"
        stem = Path(src).stem if not src.startswith("<") else "image"
        if result.frame is not None:
            stem = f"{stem}_s{result.stream or 0}_f{result.frame:06d}"
        suffix = Path(src).suffix.lower() if Path(src).suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"} else ".jpg"
        name, i = f"{stem}{suffix}", 1
        while name in self._used:
            name, i = f"{stem}_{i}{suffix}", i + 1
        self._used.add(name)
        return name

    def close(self) -> None:
        """Nothing to flush; present so all sinks share one shape."""

    def __enter__(self) -> AnnotatedImageSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
