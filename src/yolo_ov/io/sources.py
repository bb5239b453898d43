"""Expand what the user names into a stream of :class:`SourceItem` frames.

Accepted sources:

* image files, folders (searched recursively), globs (``**`` recursive);
* video files (by suffix), read frame by frame through ``cv2.VideoCapture``;
* live sources: a camera index (``0`` or ``"0"``) or an ``rtsp://``,
  ``rtmp://``, ``http(s)://``, ``udp://`` or ``tcp://`` URL;
* a numpy array (one image), a list of any of the above, or any Python
  iterable of frames (arrays, bytes or paths).

Several live sources given together run at once: each gets a reader thread
and its results carry its ``stream`` index and the frame's ``frame`` index.
Live sources use the ``latest`` frame-drop policy by default: a reader thread
keeps only the newest frame, so a slow device infers the newest picture and
never falls behind real time; how many frames were skipped is counted per
stream. Files are never dropped from. A Motion-JPEG stream (most HTTP
cameras) is then read without decoding: every frame is an independent JPEG,
so the reader keeps the newest one's bytes and only the frames the pipeline
takes are decoded (by its workers); a skipped frame costs a demux, not a
decode. Other codecs (H.264, ...) are decoded frame by frame: each frame
depends on the ones before it.

A name that matches nothing, or a video that cannot be opened, yields an
:class:`~yolo_ov.errors.InputError` item in place, so multi-item runs report
it and go on. Videos, cameras and URLs are opened by
:func:`~yolo_ov.io.capture.open_capture` (the one place that does). Pure
OpenCV/numpy: nothing here imports OpenVINO.

Live sources are kept up by their :class:`~yolo_ov.io.capture.Capture`
(reconnection with back-off, time-outs; :class:`~yolo_ov.io.capture.CaptureConfig`,
given as ``open_source(..., capture=...)`` or for a whole run with
:func:`capture_defaults`): a reconnected camera keeps its stream index and
its frame numbers go on. One given up on ends with an
:class:`~yolo_ov.errors.InputError` item ("live source lost"), which the
commands report as a failed input. :attr:`FrameSource.health` has each live
stream's :class:`~yolo_ov.io.health.Health`.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..imaging.decode import IMAGE_SUFFIXES, describe_source
from .capture import LIVE_SCHEMES, Capture, CaptureConfig, open_capture
from .health import Health, HealthChange

__all__ = [
    "LIVE_SCHEMES",
    "VIDEO_SUFFIXES",
    "FrameSource",
    "LatestFrames",
    "SourceItem",
    "capture_defaults",
    "iter_image_files",
    "open_source",
    "probe_videos",
    "video_fps",
]

_GLOB_CHARS = frozenset("*?[")

#: File suffixes read as videos through ``cv2.VideoCapture``.
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".asf", ".gif"}
)
DROP_POLICIES = ("latest",)

_CAPTURE: contextvars.ContextVar[CaptureConfig | None] = contextvars.ContextVar("yolo_ov_capture", default=None)


@contextmanager
def capture_defaults(config: CaptureConfig) -> Iterator[CaptureConfig]:
    """Use ``config`` for every source opened in this context (what the CLI's reconnect options set).

    Read when a source is opened (:func:`open_source`), in the caller's
    thread; an explicit ``capture=`` wins.
    """
    token = _CAPTURE.set(config)
    try:
        yield config
    finally:
        _CAPTURE.reset(token)


_ON_HEALTH: contextvars.ContextVar[Callable[[HealthChange], None] | None] = contextvars.ContextVar(
    "yolo_ov_on_health", default=None)


def set_capture_defaults(config: CaptureConfig, on_health: Callable[[HealthChange], None] | None = None) -> None:
    """Use ``config`` from now on in this context (a command line run sets it once; see :func:`capture_defaults`),
    and subscribe ``on_health`` to every live source opened from now on (the command line prints reconnections)."""
    _CAPTURE.set(config)
    _ON_HEALTH.set(on_health)


def new_health(source: Any, stream: int | None) -> Health:
    """A :class:`~yolo_ov.io.health.Health` for a live source, with the context's subscriber (see above)."""
    health = Health(str(source), stream)
    listener = _ON_HEALTH.get()
    if listener is not None:
        health.subscribe(listener)
    return health


def current_capture_config(config: CaptureConfig | None = None) -> CaptureConfig:
    """``config``, else the one :func:`capture_defaults` set, else the defaults."""
    return config or _CAPTURE.get() or CaptureConfig()


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One input to the pipeline.

    Attributes:
        data: what to decode (path, bytes, BGR array) or the
            :class:`InputError` that stands for an input that could not be read.
        source: the name results and errors use (path, URL, ``<array ...>``).
        stream: which stream a video/camera frame came from (``None`` for images).
        frame: the frame's index within its stream (``None`` for images).
    """

    data: Any
    source: str
    stream: int | None = None
    frame: int | None = None


def iter_image_files(specs: Iterable[str | Path]) -> Iterator[Path | InputError]:
    """Yield image paths for each spec, in a stable (sorted) order, or an error item."""
    for spec in specs:
        text = str(spec)
        if _GLOB_CHARS & set(text) and not Path(text).exists():
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            images = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                yield InputError(f"{text}: the pattern matched no image files", text)
            yield from images
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                yield InputError(f"{text}: the folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})", text)
            yield from images
        elif path.exists():
            yield path
        else:
            yield InputError(f"{text}: no such file or folder", text)


def is_live(spec: Any) -> bool:
    """A camera index or a stream URL (``rtsp://``, ``http://``, ...)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return True
    if isinstance(spec, str):
        return spec.isdigit() or spec.lower().startswith(LIVE_SCHEMES)
    return False


def is_video_file(spec: Any) -> bool:
    return isinstance(spec, (str, Path)) and Path(str(spec)).suffix.lower() in VIDEO_SUFFIXES and not is_live(spec)


class FrameSource:
    """An iterable of :class:`SourceItem` plus what the pipeline needs to know about it.

    Attributes:
        live: frames arrive in real time (camera/URL); the pipeline keeps
            fewer frames in flight so the newest frame is always next.
        video: frames come from videos or cameras (one aspect ratio per
            stream: shape specialisation is on by default).
        skipped: frames dropped by the ``latest`` policy, per stream index.
        latest: the ``latest`` policy is on: a frame waits in its reader
            until taken, so the pipeline takes one only when a request is
            free (the frame it gets is then the newest, not one that aged in
            a queue).
        expected_frames: how many frames the source will yield, when known
            before reading them (video files: ``CAP_PROP_FRAME_COUNT``);
            ``None`` for cameras, URLs, iterables and images.
        frame_hw: the ``(h, w)`` every frame shares, when known before
            reading (video files of one size); else ``None``.
        health: per live stream index, its :class:`~yolo_ov.io.health.Health`
            (state, changes, subscribers); empty for files and iterables.

    The pipeline uses ``expected_frames`` and ``frame_hw`` to decide whether
    compiling a video's own shape can repay its compile time
    (:mod:`yolo_ov.pipeline.payoff`). For video files they are read on first
    use (opening each file once more, a few milliseconds), not before.
    """

    def __init__(self, items: Iterable[SourceItem], *, live: bool = False, video: bool = False,
                 closers: list[Any] | None = None, skipped: dict[int, int] | None = None,
                 probe: Callable[[], tuple[int | None, tuple[int, int] | None]] | None = None,
                 latest: bool = False, health: dict[int, Health] | None = None) -> None:
        self._items = items
        self.health: dict[int, Health] = health or {}
        self.live = live
        self.latest = latest
        self.video = video
        self._closers = closers or []
        self.skipped: dict[int, int] = skipped if skipped is not None else {}
        self._probe = probe
        self._probed: tuple[int | None, tuple[int, int] | None] | None = None

    def _known(self) -> tuple[int | None, tuple[int, int] | None]:
        if self._probed is None:
            self._probed = self._probe() if self._probe is not None else (None, None)
        return self._probed

    @property
    def expected_frames(self) -> int | None:
        return self._known()[0]

    @property
    def frame_hw(self) -> tuple[int, int] | None:
        return self._known()[1]

    def __iter__(self) -> Iterator[SourceItem]:
        return iter(self._items)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def close(self) -> None:
        """Stop reader threads and release captures (idempotent)."""
        for closer in self._closers:
            closer.close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(source: Any, *, drop: str | None = "auto", live: bool | None = None,
                capture: CaptureConfig | None = None) -> FrameSource:
    """Turn ``source`` into a :class:`FrameSource`.

    Args:
        source: a path/folder/glob, video file, camera index, URL, numpy
            array, a list of these, or any iterable of frames.
        drop: frame-drop policy for live sources: ``"auto"`` (``latest`` for
            live sources, none for files), ``"latest"`` or ``None`` (keep
            every frame).
        live: force the live treatment on (e.g. for a generator fed by a
            camera SDK) or off; default: cameras and URLs are live.
        capture: how cameras, URLs and videos are opened and kept up
            (reconnection, time-outs, ``loop``); default: :func:`capture_defaults`'s,
            else :class:`~yolo_ov.io.capture.CaptureConfig` ().

    Example:
        >>> src = open_source([np.zeros((48, 64, 3), np.uint8)] * 2)
        >>> [item.source for item in src]
        ['<array 48x64x3 uint8>', '<array 48x64x3 uint8>']
    """
    if drop not in ("auto", None, *DROP_POLICIES):
        raise ConfigError(f"drop={drop!r}: expected 'latest' or None")
    if isinstance(source, FrameSource):
        return source
    specs = _as_specs(source)
    config = current_capture_config(capture)
    if specs is None:  # an arbitrary iterable of frames
        is_live_src = bool(live)
        policy = _policy(drop, is_live_src)
        items = (SourceItem(f, describe_source(f), 0 if is_live_src else None, i if is_live_src else None)
                 for i, f in enumerate(source))
        if policy == "latest":
            return _latest_source([_frames_of_iterable(source)], ["<iterable>"])
        return FrameSource(items, live=is_live_src)
    live_specs = [s for s in specs if is_live(s)]
    if live_specs:
        if len(live_specs) != len(specs):
            raise ConfigError("mix of live streams and files/images: run them separately")
        policy = _policy(drop, True if live is None else live)
        names = [str(s) for s in specs]
        readers = [CaptureReader(s, encoded=policy == "latest", config=config, stream=i) for i, s in enumerate(specs)]
        health = {i: r.health for i, r in enumerate(readers)}
        if policy == "latest":
            return _latest_source(readers, names, health)
        return FrameSource(_interleave(readers, names), live=True, video=True, closers=readers, health=health)
    videos = [s for s in specs if is_video_file(s)]
    if videos:
        if len(videos) != len(specs):
            raise ConfigError("mix of video files and images: run them separately")
        policy = _policy(drop, bool(live))
        names = [str(s) for s in specs]
        if policy == "latest":  # a file forced to behave live (e.g. a recording replayed as a camera)
            readers = [CaptureReader(s, encoded=True, config=config, stream=i) for i, s in enumerate(specs)]
            return _latest_source(readers, names, {i: r.health for i, r in enumerate(readers)})
        return FrameSource(_sequential_videos(specs, config), live=bool(live), video=True,
                           probe=lambda: probe_videos(specs))
    return FrameSource(_image_items(specs), live=bool(live))


def _latest_source(readers: list[Any], names: list[str], health: dict[int, Health] | None = None) -> FrameSource:
    """The ``latest`` policy over ``readers``: a :class:`LatestFrames` wrapped as a live source."""
    reader = LatestFrames(readers, names=names)
    return FrameSource(reader, live=True, video=True, closers=[reader], skipped=reader.skipped, latest=True,
                       health=health)


def _policy(drop: str | None, live: bool) -> str | None:
    if drop == "auto":
        return "latest" if live else None
    return drop


def _as_specs(source: Any) -> list[Any] | None:
    """A list of path/URL/camera/array specs, or ``None`` for a generic iterable of frames."""
    if isinstance(source, (str, Path, int, np.ndarray, bytes, bytearray)):
        return [source]
    if isinstance(source, (list, tuple)):
        if all(isinstance(s, (str, Path, int)) and not isinstance(s, bool) for s in source):
            return list(source)
        return None
    if isinstance(source, Iterable):
        return None
    raise ConfigError(f"unsupported source type {type(source).__name__}: pass paths, URLs, arrays or an iterable")


def _image_items(specs: list[Any]) -> Iterator[SourceItem]:
    for spec in specs:
        if isinstance(spec, (np.ndarray, bytes, bytearray)):
            yield SourceItem(spec, describe_source(spec))
            continue
        for item in iter_image_files([spec]):
            if isinstance(item, InputError):
                yield SourceItem(item, item.source or str(spec))
            else:
                yield SourceItem(item, str(item))


def probe_videos(specs: list[Any]) -> tuple[int | None, tuple[int, int] | None]:
    """``(total frames, common (h, w))`` of video files from their containers, without decoding.

    Either is ``None`` when a file cannot be opened or does not say
    (``CAP_PROP_FRAME_COUNT`` is 0 or negative for some streams and
    containers), or, for the size, when the files differ.
    """
    total: int | None = 0
    sizes: set[tuple[int, int]] = set()
    for spec in specs:
        try:
            cap = open_capture(spec)
        except InputError:
            return None, None
        with cap:
            count = cap.frame_count
            sizes.add(cap.frame_hw)
        total = total + count if total is not None and count is not None else None
    hw = sizes.pop() if len(sizes) == 1 else None
    return total, hw if hw and min(hw) > 0 else None


class CaptureReader:
    """The frames of one capture as an iterator; an :class:`InputError` item when it cannot be
    opened or, live, is given up on (then the iteration ends).

    With ``encoded``, a Motion-JPEG capture yields each frame's JPEG bytes
    undecoded (see :func:`~yolo_ov.io.capture.open_capture`); any other
    capture yields decoded frames as without it. :meth:`close` may be called
    from another thread: it ends a wait for a reconnection at once.
    """

    def __init__(self, spec: Any, *, encoded: bool = False, config: CaptureConfig | None = None,
                 stream: int | None = None) -> None:
        self.health = new_health(spec, stream)
        self._capture = Capture(spec, encoded=encoded, config=config, health=self.health)
        self._frames = self._run()

    def _run(self) -> Iterator[np.ndarray | bytes | InputError]:
        cap = self._capture
        try:
            cap.connect()
        except InputError as exc:
            yield exc
            return
        yield from cap.frames()
        if cap.error is not None:
            yield cap.error

    def __iter__(self) -> CaptureReader:
        return self

    @property
    def frame_index(self) -> int:
        """The number of the frame last yielded (see :attr:`~yolo_ov.io.capture.Capture.frame_index`)."""
        return self._capture.frame_index

    def __next__(self) -> np.ndarray | bytes | InputError:
        return next(self._frames)

    def stop(self) -> None:
        """Make the reading end soon, from any thread (a wait for a reconnection ends at once)."""
        self._capture.stop()

    def close(self) -> None:
        """Stop the capture (from any thread); it is released by the thread reading it (now, when that is us)."""
        self._capture.stop()
        with contextlib.suppress(ValueError):  # being read in another thread: it ends there and releases the capture
            self._frames.close()


def _capture_frames(spec: Any, *, encoded: bool = False,
                    config: CaptureConfig | None = None) -> Iterator[np.ndarray | bytes | InputError]:
    """Frames of one capture (see :class:`CaptureReader`)."""
    reader = CaptureReader(spec, encoded=encoded, config=config)
    try:
        yield from reader
    finally:
        reader.close()


def video_fps(specs: Iterable[Any], default: float = 30.0) -> float:
    """The frame rate of the first video file among ``specs`` that reports one, else ``default``:
    what an annotated video written from these sources plays at."""
    for spec in specs:
        if not is_video_file(spec) or not Path(spec).is_file():
            continue
        try:
            with open_capture(spec) as cap:
                fps = cap.fps
        except InputError:
            continue
        if fps:
            return fps
    return default


def _frames_of_iterable(frames: Iterable[Any]) -> Iterator[Any]:
    yield from frames


def _sequential_videos(specs: list[Any], config: CaptureConfig | None = None) -> Iterator[SourceItem]:
    for stream, spec in enumerate(specs):
        name = str(spec)
        for index, frame in enumerate(_capture_frames(spec, config=config)):
            if isinstance(frame, InputError):
                yield SourceItem(frame, name, stream, None)
            else:
                yield SourceItem(frame, name, stream, index)


def _interleave(readers: list[Iterator[Any]], names: list[str]) -> Iterator[SourceItem]:
    """Round-robin over several streams, keeping every frame (no drop policy)."""
    active = {i: (r, 0) for i, r in enumerate(readers)}
    while active:
        for i in list(active):
            reader, index = active[i]
            frame = next(reader, None)
            if frame is None:
                del active[i]
                continue
            if isinstance(frame, InputError):
                yield SourceItem(frame, names[i], i, None)
                del active[i]
                continue
            active[i] = (reader, index + 1)
            number = getattr(reader, "frame_index", None)  # a capture numbers across reconnections
            yield SourceItem(frame, names[i], i, index if number is None else number)


class LatestFrames:
    """The ``latest`` frame-drop policy over one or more frame iterators.

    One reader thread per stream pulls frames as fast as they come and keeps
    only the newest; iterating yields, round-robin over streams, the newest
    frame not yet yielded. A frame replaced before it was taken is counted in
    :attr:`skipped` (per stream). Iteration ends when every stream has ended.
    """

    def __init__(self, readers: list[Iterator[Any]], *, names: list[str]) -> None:
        self._names = names
        self._readers = readers
        self._cond = threading.Condition()
        self._latest: list[tuple[int, Any] | None] = [None] * len(readers)
        self._ended = [False] * len(readers)
        self._stop = threading.Event()
        self.skipped: dict[int, int] = dict.fromkeys(range(len(readers)), 0)
        self._threads = [
            threading.Thread(target=self._read, args=(i, r), name=f"yolo-ov-reader-{i}", daemon=True)
            for i, r in enumerate(readers)
        ]
        self._started = False
        self._next = 0

    def _read(self, stream: int, reader: Iterator[Any]) -> None:
        index = 0
        try:
            for frame in reader:
                if self._stop.is_set():
                    break
                with self._cond:
                    if isinstance(frame, InputError):
                        while self._latest[stream] is not None and not self._stop.is_set():
                            self._cond.wait(0.1)  # the newest frame goes out before the error that ends the stream
                        self._latest[stream] = (-1, frame)
                    else:
                        if self._latest[stream] is not None:
                            self.skipped[stream] += 1
                        number = getattr(reader, "frame_index", None)  # a capture numbers across reconnections
                        self._latest[stream] = (index if number is None else number, frame)
                        index += 1
                    self._cond.notify_all()
                if isinstance(frame, InputError):
                    break
        except Exception as exc:  # noqa: BLE001 - a broken stream becomes an error record, not a dead thread
            with self._cond:
                self._latest[stream] = (-1, InputError(f"{self._names[stream]}: stream failed ({exc})",
                                                       self._names[stream]))
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
            with self._cond:
                self._ended[stream] = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[SourceItem]:
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()
        n = len(self._threads)
        while True:
            with self._cond:
                while True:
                    ready = [i for i in range(n) if self._latest[(self._next + i) % n] is not None]
                    if ready:
                        stream = (self._next + ready[0]) % n
                        index, frame = self._latest[stream]  # type: ignore[misc]
                        self._latest[stream] = None
                        self._next = (stream + 1) % n
                        self._cond.notify_all()  # a reader holding its stream's error until this frame went
                        break
                    if all(self._ended) or self._stop.is_set():
                        return
                    self._cond.wait(0.1)
            if isinstance(frame, InputError):
                yield SourceItem(frame, self._names[stream], stream, None)
            else:
                yield SourceItem(frame, self._names[stream], stream, index)

    def close(self) -> None:
        self._stop.set()
        for reader in self._readers:  # a reader waiting to reconnect stops waiting (thread-safe ``stop``)
            stop = getattr(reader, "stop", None)
            if stop is not None:
                stop()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=2.0)
