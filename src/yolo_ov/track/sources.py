"""Sources for tracking: live streams given as frame producers, and ``--detect-every N``.

``--detect-every N`` runs the detector on every Nth frame of each stream;
the tracker predicts the frames between. It is done here, in front of the
pipeline, with nothing but the public :mod:`yolo_ov.io.sources` classes: a
wrapper reads every frame, passes the chosen ones on to be inferred and
keeps a note (and, when the caller draws, the picture) of the others, which
the tracking run then answers with the tracker's prediction, in order.

On a live source the choice is made *before* the ``latest`` frame-drop
policy: every camera frame is seen and counted, every Nth is offered for
inference, and only those can be dropped when the device falls behind.
So N times fewer frames compete for the device, and the tracker still
reports every frame it was not forced to drop. Cameras and stream URLs are
read here with ``grab`` for every frame and ``retrieve`` (the decode, most of
a frame's host cost) only for the frames offered to the detector, or drawn.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..io.capture import Capture, CaptureConfig
from ..io.sources import (
    FrameSource,
    LatestFrames,
    SourceItem,
    current_capture_config,
    is_live,
    is_video_file,
    new_health,
    open_source,
)

__all__ = ["LiveStreams", "SkippedFrame", "open_tracking_source"]


class LiveStreams:
    """Live frame producers, one per stream (a camera SDK's generator, a simulated camera).

    Tracking reads each in its own thread and applies the ``latest``
    frame-drop policy after choosing the frames to infer (see the module
    notes); ``drop=None`` keeps every frame instead.

    Args:
        producers: one iterable of BGR frames per stream; iteration blocks
            until the next frame exists (real time).
        names: the ``source`` name of each stream (default ``<stream k>``).

    Example:
        >>> frames = [np.zeros((48, 64, 3), np.uint8)] * 3
        >>> streams = LiveStreams([iter(frames), iter(frames)])
        >>> streams.names
        ['<stream 0>', '<stream 1>']
    """

    def __init__(self, producers: Iterable[Iterable[Any]], names: Iterable[str] | None = None) -> None:
        self.producers = list(producers)
        if not self.producers:
            raise ConfigError("LiveStreams needs at least one frame producer")
        self.names = list(names) if names is not None else [f"<stream {k}>" for k in range(len(self.producers))]
        if len(self.names) != len(self.producers):
            raise ConfigError(f"{len(self.names)} names for {len(self.producers)} streams")


@dataclass(frozen=True, slots=True)
class SkippedFrame:
    """A frame the detector does not see: the tracker predicts it.

    ``after`` orders it in the output (see :class:`_Selector`); ``image`` is
    kept only when the caller draws.
    """

    stream: int | None
    frame: int
    source: str
    image_shape: tuple[int, int]
    image: np.ndarray | None
    after: int


class _Selector:
    """Chooses the frames to infer, per stream, and keeps the others in order.

    A frame is inferred when it is the first of its stream or at least
    ``every`` frames after the last one chosen (on a file this is every Nth
    frame; after a gap the next frame is chosen at once).
    """

    def __init__(self, every: int, keep_images: bool, *, sequential: bool) -> None:
        self.every = every
        self.keep_images = keep_images
        #: One reading thread feeds the pipeline in order (files, round-robin
        #: streams): a skipped frame goes out after the ``after``-th result.
        #: Otherwise (reader threads per live stream) it goes out before its
        #: stream's next result.
        self.sequential = sequential
        self._last: dict[int, int] = {}
        self._lock = threading.Lock()
        self.skipped: deque[SkippedFrame] = deque()
        self.offered = 0  # frames passed on to be inferred (the sequential order)

    def choose(self, stream: int | None, frame: int, data: Any, source: str) -> bool:
        last = self._last.get(stream or 0)
        if last is None or frame - last >= self.every or frame < last:
            self._last[stream or 0] = frame
            return True
        if isinstance(data, _Grabbed):  # a camera frame not decoded: decode it only to draw it
            shape, image = data.shape, (data.decode() if self.keep_images else None)
        else:
            shape, image = (data.shape[:2] if isinstance(data, np.ndarray) else (0, 0)), data
        note = SkippedFrame(stream, frame, source, (int(shape[0]), int(shape[1])),
                            image if self.keep_images else None, self.offered)
        with self._lock:
            self.skipped.append(note)
        return False

    def take(self, ready: Any) -> list[SkippedFrame]:
        """Remove and return, in order, the skipped frames for which ``ready(note)`` holds."""
        with self._lock:
            out = [n for n in self.skipped if ready(n)]
            if out:
                taken = {id(n) for n in out}
                self.skipped = deque(n for n in self.skipped if id(n) not in taken)
            return out


def open_tracking_source(source: Any, *, detect_every: int, drop: str | None, keep_images: bool
                         ) -> tuple[FrameSource, _Selector | None]:
    """The :class:`FrameSource` to stream, and the selector holding the frames it skips.

    With ``detect_every == 1`` and an ordinary source this is
    :func:`~yolo_ov.io.sources.open_source` itself (no selector).
    """
    if isinstance(detect_every, bool) or not isinstance(detect_every, int) or detect_every < 1:
        raise ConfigError(f"detect_every must be a positive integer, got {detect_every!r}")
    live = _live_producers(source)
    if live is None and detect_every == 1:
        return open_source(source, drop=drop), None
    live_policy = "latest" if drop in ("auto", "latest") else None
    selector = _Selector(detect_every, keep_images, sequential=live is None or live_policy is None)
    if live is not None:
        producers, names, closers = live
        health = {k: c.health for k, c in enumerate(closers)}
        if live_policy is None:
            src = FrameSource(_interleave_chosen(producers, names, selector), live=True, video=True, closers=closers,
                              health=health)
            return src, selector
        readers = [_chosen_items(k, frames, names[k], selector) for k, frames in enumerate(producers)]
        latest = LatestFrames(readers, names=names)
        # cameras first: one waiting to reconnect stops waiting, so the reader threads end before the join
        return (FrameSource(_unwrap(latest), live=True, video=True, closers=[*closers, latest],
                            skipped=latest.skipped, latest=True, health=health), selector)
    if _names_image_files(source) or (isinstance(source, FrameSource) and not source.video):
        raise ConfigError("--detect-every needs video files, live streams or frames in order, not image files")
    inner = open_source(source, drop=drop)
    return (FrameSource(_chosen_sequential(inner, selector), live=inner.live, video=True, closers=[inner],
                        skipped=inner.skipped), selector)


def _live_producers(source: Any) -> tuple[list[Iterator[Any]], list[str], list[Any]] | None:
    """Per-stream frame iterators when ``source`` is live (cameras/URLs or :class:`LiveStreams`)."""
    if isinstance(source, LiveStreams):
        return [iter(p) for p in source.producers], list(source.names), []
    specs = [source] if isinstance(source, (str, int)) else source
    if isinstance(specs, (list, tuple)) and specs and all(is_live(s) for s in specs):
        config = current_capture_config()  # read here, in the caller's thread (the readers run in their own)
        cameras = [_Camera(s, config, i) for i, s in enumerate(specs)]
        return cameras, [str(s) for s in specs], cameras
    return None


class _Grabbed:
    """A camera frame read (``grab``) but not decoded yet: decoding is most of a frame's cost,
    and a frame the detector skips needs it only when it is drawn."""

    __slots__ = ("_cap", "_shape")

    def __init__(self, cap: Capture, shape: list[int]) -> None:
        self._cap, self._shape = cap, shape

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape[0], self._shape[1]

    def decode(self) -> np.ndarray | None:
        image = self._cap.retrieve()
        if not isinstance(image, np.ndarray):
            return None
        self._shape[:] = image.shape[:2]
        return image


class _Camera:
    """Every frame of a camera or stream URL as ``(index, _Grabbed)``; an InputError when it cannot be
    opened or is given up on (its :class:`~yolo_ov.io.capture.Capture` reconnects it meanwhile: the
    index goes on across a reconnection)."""

    def __init__(self, spec: Any, config: CaptureConfig, stream: int) -> None:
        self.health = new_health(spec, stream)
        self._cap = Capture(spec, config=config, health=self.health)
        self._frames = self._run()

    def _run(self) -> Iterator[Any]:
        cap = self._cap
        try:
            cap.connect()
        except InputError as exc:
            yield exc
            return
        with cap:
            shape = list(cap.frame_hw)
            while cap.grab():  # numbered by the capture: on across a reconnection, the gap counted
                yield cap.frame_index, _Grabbed(cap, shape)  # decoded (or not) before the next grab
            if cap.error is not None:
                yield cap.error

    def __iter__(self) -> _Camera:
        return self

    def __next__(self) -> Any:
        return next(self._frames)

    def stop(self) -> None:
        """End the reading soon, from any thread (a wait for a reconnection ends at once)."""
        self._cap.stop()

    def close(self) -> None:
        self._cap.stop()
        with contextlib.suppress(ValueError):  # being read in another thread: it ends there and releases the capture
            self._frames.close()


def _chosen_items(stream: int, frames: Iterator[Any], name: str, selector: _Selector) -> Iterator[Any]:
    """One live stream's frames offered for inference (as :class:`SourceItem`); the rest noted."""
    index = 0
    for got in frames:
        if isinstance(got, InputError):
            yield got
            return
        # a camera opened here gives (its own frame index, grabbed frame); a producer gives images
        index, image = got if isinstance(got, tuple) else (index, got)
        if selector.choose(stream, index, image, name):
            decoded = image.decode() if isinstance(image, _Grabbed) else image
            if decoded is not None:
                yield SourceItem(decoded, name, stream, index)
        index += 1


def _unwrap(latest: LatestFrames) -> Iterator[SourceItem]:
    """``LatestFrames`` numbers what it yields itself; restore the camera's own frame indices."""
    for item in latest:
        inner = item.data
        if isinstance(inner, SourceItem):
            yield SourceItem(inner.data, inner.source, item.stream, inner.frame)
        else:
            yield item


def _interleave_chosen(producers: list[Iterator[Any]], names: list[str], selector: _Selector
                       ) -> Iterator[SourceItem]:
    """Every frame of every live stream, round-robin (no drop policy)."""
    readers = [_chosen_items(k, p, names[k], selector) for k, p in enumerate(producers)]
    active = list(range(len(readers)))
    while active:
        for k in list(active):
            got = next(readers[k], None)
            if got is None:
                active.remove(k)
            elif isinstance(got, InputError):
                active.remove(k)
                yield SourceItem(got, names[k], k, None)
            else:
                selector.offered += 1
                yield got


def _names_image_files(source: Any) -> bool:
    specs = [source] if isinstance(source, (str, Path)) else source
    if not isinstance(specs, (list, tuple)) or not all(isinstance(s, (str, Path)) for s in specs):
        return False
    return any(not is_live(str(s)) and not is_video_file(s) for s in specs)


def _chosen_sequential(inner: FrameSource, selector: _Selector) -> Iterator[SourceItem]:
    """A source's items offered for inference, in order; the rest noted.

    Frames of a plain iterable have no index: they are numbered here (per
    stream), so the tracker and the output agree on which frame is which.
    """
    counts: dict[int | None, int] = {}
    for item in inner:
        if isinstance(item.data, InputError):
            selector.offered += 1
            yield item
            continue
        frame = item.frame if item.frame is not None else counts.get(item.stream, -1) + 1
        counts[item.stream] = frame
        if selector.choose(item.stream, frame, item.data, item.source):
            selector.offered += 1
            yield SourceItem(item.data, item.source, item.stream, frame)
