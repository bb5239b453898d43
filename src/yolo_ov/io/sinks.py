"""Where results go: JSONL records, COCO results JSON, annotated images and videos.

Sinks consume :class:`~yolo_ov.results.Detections`,
:class:`~yolo_ov.results.Classification` and :class:`~yolo_ov.results.Failure`
records; they never decide anything about inference. Each is a context
manager so files are flushed and closed even when a run is interrupted, and
each ``write`` runs inside :func:`~yolo_ov.io.signals.deferred`, so Ctrl-C or
SIGTERM never tears a record. ``yolo-ov predict``, ``yolo-ov track`` and the
Ray driver all write through one :class:`~yolo_ov.io.sink.Sinks`; the
contract a new output implements is :class:`~yolo_ov.io.sink.Sink`
(both re-exported here).

What is on disk at any moment, and why:

* JSONL and COCO records go to the file with one unbuffered ``write`` each,
  so every record handed to a sink is in the file as soon as ``write``
  returns (even if the process is then killed). A write that fails (full
  disk, I/O error) or is interrupted is rolled back to the end of the
  previous record and raises :class:`~yolo_ov.errors.OutputError` naming
  the file and the OS error: no half-written record.
* Annotated images are written under a temporary name and renamed into
  place: a file with the final name is always a complete image.
* Videos are playable once :meth:`VideoSink.close` has run (the container
  index is written then); it runs on Ctrl-C and SIGTERM too.
* When one output fails on a record (a full disk under ``--save-dir``),
  :class:`~yolo_ov.io.sink.Sinks` takes that record back from the outputs
  that already have it: JSONL and COCO files are cut back to the previous
  record, the annotated image is removed (each sink's ``undo``).

:func:`check_output_file` and :func:`check_output_dir` test that an output
location can be written before any work starts, with the real reason when
it cannot.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from ..errors import ConfigError, OutputError
from ..results import Classification, Detections, Failure
from .draw import draw
from .signals import deferred
from .sink import Record, Sink, SinkBase, Sinks

__all__ = [
    "AnnotatedImageSink",
    "CocoJsonSink",
    "JsonlSink",
    "Record",
    "Sink",
    "SinkBase",
    "Sinks",
    "VideoSink",
    "check_output_dir",
    "check_output_file",
]

def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is not a folder."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_file(path: str | Path, what: str = "output") -> Path:
    """Fail now, with the OS's reason, if ``path`` cannot be written as a file.

    Creates missing parent folders. An existing file is opened for append
    (its content is untouched); a missing one is created and removed again.

    Raises:
        OutputError: ``path`` is a folder, or cannot be created or written.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; {what} needs a file path")
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise OutputError(f"{path}: cannot write {what} ({blocker} is a file, not a folder)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("ab"):
                pass
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.close(fd)
            path.unlink()
    except OSError as exc:
        raise OutputError(f"{path}: cannot write {what} ({_reason(exc)})") from exc
    return path


def check_output_dir(folder: str | Path, what: str = "output") -> Path:
    """Fail now, with the OS's reason, if files cannot be created in ``folder`` (created if missing).

    Raises:
        OutputError: ``folder`` is a file, or cannot be created or written into.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file; {what} needs a folder")
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise OutputError(f"{folder}: cannot write {what} there ({blocker} is a file, not a folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".yolo-ov-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write {what} there ({_reason(exc)})") from exc
    return folder


class _RecordFile:
    """A file written one whole record at a time, unbuffered, rolled back on failure."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("wb", buffering=0)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write {what} ({_reason(exc)})") from exc
        self._good = 0  # bytes of complete records
        self._before_last: int | None = None  # where the last record starts, while it can be taken back

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def append(self, data: bytes, *, undoable: bool = True) -> None:
        view = memoryview(data)
        try:
            while view:  # unbuffered writes may be short
                view = view[self._fh.write(view) or 0:]
        except BaseException as exc:  # OSError, or Ctrl-C/SIGTERM between two short writes
            self._rollback()
            self._before_last = None  # the record before it is not this write's to take back
            if isinstance(exc, OSError):
                raise OutputError(f"{self.path}: cannot write {self.what} ({_reason(exc)})") from exc
            raise
        self._before_last = self._good if undoable else None
        self._good += len(data)

    def undo(self) -> bool:
        """Cut the file back to where the last record began; ``False`` when there is nothing to take back."""
        if self._before_last is None:
            return False
        self._good, self._before_last = self._before_last, None
        self._rollback()
        return True

    def _rollback(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # not a regular file (/dev/full, a pipe): nothing to cut
            self._fh.truncate(self._good)
            self._fh.seek(self._good)

    def close(self) -> None:
        self._fh.close()


class JsonlSink(SinkBase):
    """One JSON object per line per input: detections or ``{"source", "error"}``.

    Each line is written whole or not at all (see the module docstring);
    ``count`` is the number of lines written. ``extra`` fields of a write
    (a tracker's ``counts``) are added to its line.
    """

    def __init__(self, path: str | Path, *, polygons: bool = False) -> None:
        self.path = Path(path)
        self.polygons = polygons  # segmentation: add each mask's largest outer contour as "polygon"
        self._file: _RecordFile | None = _RecordFile(self.path, "JSONL output")
        self.count = 0

    def write(self, record: Record, image: np.ndarray | None = None, *,
              extra: Mapping[str, Any] | None = None) -> None:
        if self._file is None:
            raise ConfigError(f"{self.path}: the JSONL sink is closed")
        if self.polygons and isinstance(record, Detections) and "masks" in record.data:
            line = json.dumps({**_with_polygons(record), **(extra or {})}, separators=(",", ":"))
        elif extra:
            line = json.dumps({**record.to_dict(), **extra}, separators=(",", ":"))
        else:
            line = record.to_json()  # any object with to_json() (the Ray driver's pre-formatted lines)
        with deferred():
            self._file.append((line + "\n").encode("utf-8"))
            self.count += 1

    def undo(self) -> None:
        """Take the last line back (the run stops: another output failed on its record)."""
        if self._file is not None and self._file.undo():
            self.count -= 1

    def describe(self) -> str:
        return f"JSONL: {self.path} ({self.count} lines)"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _with_polygons(record: Detections) -> dict:
    """The JSONL record with ``"polygon": [[x, y], ...]`` (largest outer contour) per detection."""
    out = record.to_dict()
    for det, poly in zip(out["detections"], record.data["masks"].polygons(), strict=True):
        det["polygon"] = np.round(poly.astype(np.float64), 1).tolist()
    return out


class AnnotatedImageSink(SinkBase):
    """Saves a copy of each image with its boxes drawn, named after its source.

    Names that collide (same file name from different folders) get a numeric
    suffix instead of overwriting each other. Failures, and records written
    without their image, are skipped.
    """

    needs_images: ClassVar[bool] = True

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot create output folder ({_reason(exc)})") from exc
        self._used: set[str] = set()
        self._last: Path | None = None  # the image the last write saved, while it can be taken back
        self.count = 0

    def write(self, record: Record, image: np.ndarray | None = None, *,
              extra: Mapping[str, Any] | None = None) -> Path | None:
        """The file written, or ``None`` for a failure or a record without its image."""
        self._last = None
        if isinstance(record, Failure) or image is None:
            return None
        name = self._name_for(record)
        out = self.folder / name
        ok, buf = cv2.imencode(out.suffix or ".jpg", draw(record, image))
        if not ok:
            raise ConfigError(f"{out}: cannot encode the annotated image")
        part = out.with_name(f".{out.name}.part")
        with deferred():
            try:
                part.write_bytes(buf.tobytes())
                os.replace(part, out)  # a file under its final name is always complete
            except BaseException as exc:
                part.unlink(missing_ok=True)
                if isinstance(exc, OSError):
                    raise OutputError(f"{out}: cannot write the annotated image ({_reason(exc)})") from exc
                raise
            self.count += 1
            self._last = out
        return out

    def undo(self) -> None:
        """Remove the image the last write saved (the run stops: another output failed on its record)."""
        if self._last is not None:
            last, self._last = self._last, None
            last.unlink(missing_ok=True)
            self.count -= 1

    def describe(self) -> str:
        return f"annotated: {self.folder} ({self.count} images)"

    def _name_for(self, result: Detections | Classification) -> str:
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
        """Nothing to flush: every image is complete once written."""


class CocoJsonSink(SinkBase):
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
        self._file: _RecordFile | None = _RecordFile(self.path, "COCO results")
        self._file.append(b"[", undoable=False)  # the opening bracket stays
        self._first = True
        self._undo: tuple[bool, int] | None = None  # (_first, entries) before the last write, while it can be undone
        self.count = 0

    @staticmethod
    def image_id(result: Detections) -> int | str:
        stem = Path(result.source or "image").stem
        if result.frame is not None:
            return f"{stem}_{result.stream or 0}_{result.frame}"
        return int(stem) if stem.isdigit() else stem

    def write(self, record: Record, image: np.ndarray | None = None, *,
              extra: Mapping[str, Any] | None = None) -> None:
        if self._file is None:
            raise ConfigError(f"{self.path}: the COCO sink is closed")
        self._undo = None
        if not isinstance(record, Detections):  # a failure, or a classification (COCO results have no image labels)
            return
        entries = record.to_coco(self.image_id(record), self._cats)
        if not entries:
            return
        sep = "\n" if self._first else ",\n"
        with deferred():
            self._file.append((sep + ",\n".join(json.dumps(e, separators=(",", ":")) for e in entries)).encode("utf-8"))
            self._undo = (self._first, len(entries))
            self._first = False
            self.count += len(entries)

    def undo(self) -> None:
        """Take the last record's entries back (the run stops: another output failed on its record)."""
        if self._undo is not None and self._file is not None and self._file.undo():
            self._first, n = self._undo
            self.count -= n
        self._undo = None

    def describe(self) -> str:
        return f"COCO: {self.path} ({self.count} detections)"

    def close(self) -> None:
        """Close the JSON array; the file is valid JSON from here on."""
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.append(b"\n]\n")
            finally:
                file.close()


class VideoSink(SinkBase):
    """Writes annotated frames to a video file (one file per stream).

    The writer opens on the first frame of each stream (its size comes from
    the frame). Stream ``0`` (or a single stream) writes to ``path``; stream
    ``k > 0`` to ``<stem>_s<k><suffix>``. ``.mp4`` uses the ``mp4v`` codec,
    ``.avi`` ``MJPG``. Frames must arrive in order per stream (the ordered
    pipeline guarantees it). Failures, and records written without their
    image, are skipped.
    """

    needs_images: ClassVar[bool] = True
    _CODECS: ClassVar[dict[str, str]] = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, path: str | Path, *, fps: float = 30.0) -> None:
        self.path = Path(path)
        self._check_suffix(self.path)
        if fps <= 0:
            raise ConfigError(f"video fps must be positive, got {fps!r}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.path.parent}: cannot create output folder ({_reason(exc)})") from exc
        self.fps = fps
        self._writers: dict[int, cv2.VideoWriter] = {}
        self.paths: dict[int, Path] = {}  # the files actually opened, per stream
        self.frames = 0

    @classmethod
    def _check_suffix(cls, path: Path) -> None:
        if path.suffix.lower() not in cls._CODECS:
            raise ConfigError(f"{path}: video output must end in one of {', '.join(sorted(cls._CODECS))}")

    @classmethod
    def check(cls, path: str | Path) -> Path:
        """Fail now if ``path`` cannot be written as a video: bad suffix, no permission, or no codec.

        The file system is tried first (:func:`check_output_file`, which
        names the OS's reason), then OpenCV opens and releases a writer on a
        throw-away file beside ``path``.

        Raises:
            ConfigError: an unsupported suffix.
            OutputError: the location cannot be written, or OpenCV has no writer for it.
        """
        path = Path(path).expanduser()
        cls._check_suffix(path)
        check_output_file(path, "the video")
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=".yolo-ov-probe-", suffix=path.suffix)
        os.close(fd)
        try:
            writer = cv2.VideoWriter(probe, cv2.VideoWriter_fourcc(*cls._CODECS[path.suffix.lower()]), 30.0, (64, 64))
            opened = writer.isOpened()
            writer.release()
        finally:
            Path(probe).unlink(missing_ok=True)
        if not opened:
            raise OutputError(
                f"{path}: this OpenCV build cannot write {path.suffix} video ({cls._CODECS[path.suffix.lower()]}); "
                "try .avi"
            )
        return path

    def _writer(self, stream: int, size: tuple[int, int]) -> cv2.VideoWriter:
        writer = self._writers.get(stream)
        if writer is None:
            out = self.path if stream == 0 else self.path.with_name(f"{self.path.stem}_s{stream}{self.path.suffix}")
            fourcc = cv2.VideoWriter_fourcc(*self._CODECS[self.path.suffix.lower()])
            writer = cv2.VideoWriter(str(out), fourcc, self.fps, size)
            if not writer.isOpened():
                check_output_file(out, "the video")  # names the OS's reason when there is one
                raise OutputError(
                    f"{out}: OpenCV cannot open a {self.path.suffix} video writer for {size[0]}x{size[1]} frames"
                )
            self._writers[stream] = writer
            self.paths[stream] = out
        return writer

    def write(self, record: Record, image: np.ndarray | None = None, *,
              extra: Mapping[str, Any] | None = None) -> None:
        if isinstance(record, Failure) or image is None:
            return
        canvas = draw(record, image)
        h, w = canvas.shape[:2]
        with deferred():
            self._writer(record.stream or 0, (w, h)).write(canvas)
            self.frames += 1

    def describe(self) -> str:
        written = ", ".join(str(p) for _, p in sorted(self.paths.items()))
        return f"video: {written} ({self.frames} frames)" if written else "video: none written"

    def close(self) -> None:
        """Release every writer: this writes each file's index, which makes it playable."""
        for writer in self._writers.values():
            writer.release()
        self._writers.clear()
