"""Where results go: JSONL records, COCO results JSON, annotated images and videos.

Sinks consume :class:`~yolo_ov.results.Detections` and
:class:`~yolo_ov.results.Failure` records; they never decide anything about
inference. Each is a context manager so files are flushed and closed even
when a run is interrupted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, ClassVar

import cv2
import numpy as np

from .errors import ConfigError
from .results import Detections, Failure

__all__ = ["AnnotatedImageSink", "CocoJsonSink", "JsonlSink", "VideoSink"]


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


class CocoJsonSink:
    """COCO-format detection results: one JSON array of
    ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

    Entries are streamed to the file as they come, so memory stays flat on
    big folders. ``image_id`` is the file stem as an integer when it is one
    (COCO's ``000000000009.jpg`` -> ``9``), otherwise the stem; frames of a
    video get ``<stem>_<stream>_<frame>``. ``category_ids`` maps class ids to
    dataset category ids (e.g. ``COCO80_TO_COCO91`` for official COCO
    annotations); default: the class id itself. Failures write nothing.
    """

    def __init__(self, path: str | Path, *, category_ids: Mapping[int, int] | Sequence[int] | None = None) -> None:
        self.path = Path(path)
        self._cats = dict(enumerate(category_ids)) if isinstance(category_ids, Sequence) else category_ids
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] | None = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write COCO results ({exc.strerror or exc})") from exc
        self._fh.write("[")
        self._first = True
        self.count = 0

    @staticmethod
    def image_id(result: Detections) -> int | str:
        stem = Path(result.source or "image").stem
        if result.frame is not None:
            return f"{stem}_{result.stream or 0}_{result.frame}"
        return int(stem) if stem.isdigit() else stem

    def write(self, record: Detections | Failure) -> None:
        if self._fh is None:
            raise ConfigError(f"{self.path}: the COCO sink is closed")
        if isinstance(record, Failure):
            return
        for entry in record.to_coco(self.image_id(record), self._cats):
            self._fh.write(("\n" if self._first else ",\n") + json.dumps(entry, separators=(",", ":")))
            self._first = False
            self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.write("\n]\n")
            self._fh.close()
            self._fh = None

    def __enter__(self) -> CocoJsonSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoSink:
    """Writes annotated frames to a video file (one file per stream).

    The writer opens on the first frame of each stream (its size comes from
    the frame). Stream ``0`` (or a single stream) writes to ``path``; stream
    ``k > 0`` to ``<stem>_s<k><suffix>``. ``.mp4`` uses the ``mp4v`` codec,
    ``.avi`` ``MJPG``. Frames must arrive in order per stream (the ordered
    pipeline guarantees it).
    """

    _CODECS: ClassVar[dict[str, str]] = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, path: str | Path, *, fps: float = 30.0) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in self._CODECS:
            raise ConfigError(f"{self.path}: video output must end in one of {', '.join(sorted(self._CODECS))}")
        if fps <= 0:
            raise ConfigError(f"video fps must be positive, got {fps!r}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.path.parent}: cannot create output folder ({exc.strerror or exc})") from exc
        self.fps = fps
        self._writers: dict[int, cv2.VideoWriter] = {}
        self.paths: dict[int, Path] = {}
        self.frames = 0

    def _writer(self, stream: int, size: tuple[int, int]) -> cv2.VideoWriter:
        writer = self._writers.get(stream)
        if writer is None:
            out = self.path if stream == 0 else self.path.with_name(f"{self.path.stem}_s{stream}{self.path.suffix}")
            fourcc = cv2.VideoWriter_fourcc(*self._CODECS[self.path.suffix.lower()])
            writer = cv2.VideoWriter(str(out), fourcc, self.fps, size)
            if not writer.isOpened():
                raise ConfigError(f"{out}: OpenCV cannot write this video format here")
            self._writers[stream] = writer
            self.paths[stream] = out
        return writer

    def write(self, result: Detections, image: np.ndarray) -> None:
        canvas = result.draw(image)
        h, w = canvas.shape[:2]
        self._writer(result.stream or 0, (w, h)).write(canvas)
        self.frames += 1

    def close(self) -> None:
        for writer in self._writers.values():
            writer.release()
        self._writers.clear()

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
