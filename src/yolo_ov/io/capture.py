"""One way to open every OpenCV source: video files, camera indices, RTSP/HTTP/... URLs.

:func:`open_capture` is the only place in the package that opens a
``cv2.VideoCapture`` for reading frames: prediction's sources
(:mod:`yolo_ov.io.sources`) and tracking's (:mod:`yolo_ov.track.sources`)
both go through it, so a source that cannot be opened fails with the same
one-line :class:`~yolo_ov.errors.InputError` everywhere, and what a live
source needs later (open and read time-outs, reconnection with back-off,
health states) is added inside :class:`Capture` without touching callers:
they only ever ``read``/``grab``/``retrieve`` until ``None``/``False`` and
``close``.

Motion-JPEG (most HTTP cameras, MJPG ``.avi`` files) can be opened
*encoded*: OpenCV's FFmpeg raw mode (``CAP_PROP_FORMAT = -1``) hands over
each frame's JPEG bytes undecoded, so a reader that drops frames (the
``latest`` policy) pays a demux per skipped frame, not a decode. Any other
codec depends on the frames before it and is always decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["LIVE_SCHEMES", "Capture", "open_capture"]

#: URL schemes read as live streams (also :data:`yolo_ov.io.sources.LIVE_SCHEMES`).
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")

_JPEG_START = b"\xff\xd8"


def _target(spec: Any) -> int | str:
    """What ``cv2.VideoCapture`` takes: a camera index as an ``int``, anything else as a string."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return spec
    name = str(spec)
    return int(name) if name.isdigit() else name


def _kind(target: int | str) -> str:
    if isinstance(target, int):
        return "camera"
    return "stream" if target.lower().startswith(LIVE_SCHEMES) else "video"


class Capture:
    """An open OpenCV source; made by :func:`open_capture`, closed by :meth:`close` (or ``with``).

    Reading: :meth:`read` gives the next frame (``None`` at the end), or
    :meth:`grab` then :meth:`retrieve` to decode only some frames. In raw
    Motion-JPEG mode (:attr:`encoded`) frames are JPEG ``bytes``; otherwise
    BGR arrays. Not thread-safe: one reader per capture.

    Attributes:
        name: the source as the user gave it (results and errors use it).
        kind: ``"camera"``, ``"stream"`` (a URL) or ``"video"`` (a file).
    """

    def __init__(self, spec: Any, cap: cv2.VideoCapture, *, encoded: bool = False) -> None:
        self.spec = spec
        self.name = str(spec)
        self.kind = _kind(_target(spec))
        self._cap = cap
        self._encoded = encoded
        self.closed = False

    # -- what the container says ------------------------------------------------
    @property
    def encoded(self) -> bool:
        """Frames come as JPEG bytes (raw Motion-JPEG mode), not decoded arrays."""
        return self._encoded

    @property
    def live(self) -> bool:
        """A camera or a stream URL (frames arrive in real time)."""
        return self.kind != "video"

    @property
    def fps(self) -> float | None:
        """Frames per second the source reports, or ``None`` when it does not say."""
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        return float(fps) if fps and fps > 0 else None

    @property
    def frame_count(self) -> int | None:
        """Frames in a video file from its container (no decoding); ``None`` when unknown (cameras, streams)."""
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return count if count > 0 else None

    @property
    def frame_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the frames as the source reports them (``(0, 0)`` when unknown)."""
        return int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))

    @property
    def fourcc(self) -> str:
        """The codec's four characters, upper case (``"MJPG"``, ``"H264"``, ...)."""
        return int(self._cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1").upper()

    @property
    def backend(self) -> str:
        return self._cap.getBackendName()

    # -- reading -------------------------------------------------------------------
    def grab(self) -> bool:
        """Read the next frame without decoding it; ``False`` at the end (or once closed)."""
        return not self.closed and self._cap.grab()

    def retrieve(self) -> np.ndarray | bytes | None:
        """The frame last grabbed: decoded BGR, or its JPEG bytes in :attr:`encoded` mode; ``None`` on failure."""
        if self.closed:
            return None
        ok, frame = self._cap.retrieve()
        if not ok or frame is None:
            return None
        return frame.tobytes() if self._encoded else frame

    def read(self) -> np.ndarray | bytes | None:
        """The next frame, or ``None`` at the end.

        In :attr:`encoded` mode a packet that is not a whole JPEG (a
        container that is MJPG in name only) switches the capture back to
        decoding: it is opened again without raw mode and read from there
        (a file restarts at its first frame, a live source at its newest).
        """
        if self.closed:
            return None
        if not self._encoded:
            ok, frame = self._cap.read()
            return frame if ok else None
        if not self._cap.grab():
            return None
        packet = self.retrieve()
        if packet is None:
            return None
        if packet[:2] != _JPEG_START:  # type: ignore[index]
            self._cap.release()
            self._cap, self._encoded = _open(self.spec), False
            return self.read()
        return packet

    def frames(self) -> Iterator[np.ndarray | bytes]:
        """Every frame to the end (see :meth:`read`); the capture is closed when the iteration ends or stops."""
        try:
            while (frame := self.read()) is not None:
                yield frame
        finally:
            self.close()

    def close(self) -> None:
        """Release the capture (idempotent)."""
        if not self.closed:
            self.closed = True
            self._cap.release()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Capture({self.name!r}, kind={self.kind!r}, encoded={self._encoded})"


def _open(spec: Any) -> cv2.VideoCapture:
    """A ``cv2.VideoCapture`` that is open, or the :class:`InputError` that says why not, in one line."""
    name = str(spec)
    target = _target(spec)
    kind = _kind(target)
    if kind == "video" and not Path(name).expanduser().exists():
        raise InputError(f"{name}: no such video file", name)
    if kind == "video" and Path(name).expanduser().is_file() and Path(name).expanduser().stat().st_size == 0:
        raise InputError(f"{name}: empty file (0 bytes), not a video", name)  # said as for an empty image
    cap = cv2.VideoCapture(str(Path(name).expanduser()) if kind == "video" else target)
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{name}: cannot open {kind} with OpenCV (check the path/URL/index and codecs)", name)
    return cap


def open_capture(spec: Any, *, encoded: bool = False) -> Capture:
    """Open a video file, a camera index (``0``, ``"0"``) or a stream URL for reading.

    Args:
        spec: a path, a camera index, or an ``rtsp://``, ``http(s)://``,
            ``rtmp://``, ``udp://``, ``tcp://`` URL.
        encoded: read a Motion-JPEG source's frames as JPEG bytes (FFmpeg's
            raw packet mode) when it can be; other sources are decoded as
            usual (check :attr:`Capture.encoded`).

    Raises:
        InputError: a missing file, or a source OpenCV cannot open; one line
            naming the source (``exc.source``).

    Example:
        >>> open_capture("missing.mp4")
        Traceback (most recent call last):
        ...
        yolo_ov.errors.InputError: missing.mp4: no such video file
    """
    cap = _open(spec)
    capture = Capture(spec, cap)
    if encoded and capture.fourcc == "MJPG" and capture.backend == "FFMPEG" and cap.set(cv2.CAP_PROP_FORMAT, -1):
        capture._encoded = True
    return capture

