"""Tracking over a Detector's stream: one tracker per stream, ids in each result.

:func:`track` starts ``Detector.stream(...)`` on the source (results in order
per stream, frames carrying ``stream`` and ``frame`` indices), gives each
stream's results to that stream's :class:`~yolo_ov.track.tracker.Tracker`, and
yields :class:`~yolo_ov.results.Detections` whose rows are the tracked
objects: ``xyxy`` is the track's Kalman estimate, ``data["track_id"]`` its
id. Detections the tracker does not confirm (a first sighting, a stray
low-score box) are not in the output, as in Ultralytics' ``track``.

Ids are unique within a run: every stream's tracker draws from one counter,
so several cameras tracked together never share an id (each stream's tracks
are the same as when it is tracked alone; only the numbers differ).

With ``detect_every=N`` the frames the detector skips (see
:mod:`yolo_ov.track.sources`) come out in their place, in order, with the
tracker's predicted boxes and ``data["predicted"]`` true; inferred frames then
carry ``data["predicted"]`` false, so every JSONL detection says which it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..results import Detections, Failure
from .config import TrackerConfig, load_tracker_config
from .sources import SkippedFrame, _Selector, open_tracking_source
from .tracker import TrackedObjects, Tracker, id_counter

if TYPE_CHECKING:
    from ..config import DetectConfig
    from ..pipeline import PipelineConfig, RunStats, StreamRun

__all__ = ["StreamingDetector", "TrackRun", "track"]

Result = Detections | Failure


class StreamingDetector(Protocol):
    """What tracking needs of a detector: its class names and its ``stream()``.

    :class:`~yolo_ov.Detector` is one; naming the contract here instead of
    importing the Detector keeps ``track`` below the front door (no import
    circle, even for type checkers).
    """

    @property
    def names(self) -> dict[int, str]: ...

    def stream(self, source: Any, *, with_images: bool = ..., drop: str | None = ...,
               config: PipelineConfig | None = ..., detect: DetectConfig | None = ..., **kwargs: Any) -> StreamRun: ...


def track(
    detector: StreamingDetector,
    source: Any,
    *,
    tracker: str | Path | TrackerConfig | None = "bytetrack",
    detect_every: int = 1,
    detect: DetectConfig | None = None,
    with_images: bool = False,
    drop: str | None = "auto",
    config: PipelineConfig | None = None,
    slicing: Any = None,
) -> TrackRun:
    """Track objects through a video, a camera, several streams or any source ``stream()`` takes.

    Args:
        detector: the loaded :class:`~yolo_ov.Detector` (a ``throughput`` mode
            one keeps several frames in flight).
        source: as for :meth:`Detector.stream`, or a
            :class:`~yolo_ov.track.sources.LiveStreams` of frame producers.
        tracker: ``"bytetrack"``, ``"botsort"``, a YAML file in Ultralytics'
            format, or a :class:`TrackerConfig`.
        detect_every: infer every Nth frame of each stream; the tracker
            predicts the others (marked ``data["predicted"]``).
        detect: detection settings for this run (ByteTrack's second pass uses
            detections scoring between ``track_low_thresh`` and
            ``track_high_thresh``: ``conf=0.1`` lets them through, as
            Ultralytics' ``track`` does by default).
        with_images: yield ``(result, image)`` pairs (for drawing).
        drop: the live frame-drop policy (see :func:`~yolo_ov.io.sources.open_source`).
        config: pipeline settings for this run.
        slicing: sliced inference for small objects in large frames (a
            :class:`~yolo_ov.config.SliceConfig`; default: the detector's own):
            the tracker sees each frame's merged detections.

    Example:
        >>> det = Detector("yolov8n_openvino_model", mode="throughput")  # doctest: +SKIP
        >>> for r in track(det, "walking.mp4"):  # doctest: +SKIP
        ...     print(r.frame, r.data["track_id"].tolist())
    """
    return TrackRun(detector, source, tracker=load_tracker_config(tracker), detect_every=detect_every,
                    detect=detect, with_images=with_images, drop=drop, config=config, slicing=slicing)


class TrackRun:
    """An iterator over tracked results (or ``(result, image)`` pairs); also a context manager.

    Attributes:
        tracker_config: the settings every stream's tracker uses.
        inferred, predicted: frames answered by the detector and by the tracker alone.
    """

    def __init__(self, detector: StreamingDetector, source: Any, *, tracker: TrackerConfig, detect_every: int,
                 detect: DetectConfig | None, with_images: bool, drop: str | None,
                 config: PipelineConfig | None, slicing: Any = None) -> None:
        self.tracker_config = tracker
        self.detect_every = detect_every
        self._names = detector.names
        self._with_images = with_images
        self._next_id = id_counter()
        self._trackers: dict[int, Tracker] = {}
        self._counts: dict[int, int] = {}
        needs_frames = tracker.tracker_type == "botsort" and tracker.gmc_method != "none"
        self._source, self._selector = open_tracking_source(source, detect_every=detect_every, drop=drop,
                                                            keep_images=with_images)
        extra = {"slicing": slicing} if slicing is not None else {}  # a detector without slicing= still tracks
        self._run = detector.stream(self._source, with_images=with_images or needs_frames, drop=drop,
                                    config=config, detect=detect, **extra)
        self.inferred = 0
        self.predicted = 0
        self._emitted = 0

    @property
    def stats(self) -> RunStats:
        """The pipeline's counters (frames read, done, failed; ``skipped`` by the drop policy)."""
        return self._run.stats

    @property
    def skipped(self) -> dict[int, int]:
        """Frames dropped by the live ``latest`` policy, per stream (not the ``detect_every`` ones)."""
        return self._source.skipped

    def tracker(self, stream: int = 0) -> Tracker | None:
        """The tracker of one stream (``None`` before its first frame)."""
        return self._trackers.get(stream)

    def _tracker_for(self, stream: int) -> Tracker:
        t = self._trackers.get(stream)
        if t is None:
            t = self._trackers[stream] = Tracker(self.tracker_config, next_id=self._next_id)
        return t

    def __iter__(self) -> Iterator[Any]:
        try:
            for got in self._run:
                record, image = got if isinstance(got, tuple) else (got, None)
                yield from self._flush_before(record)
                self._emitted += 1
                if isinstance(record, Failure):
                    yield self._out(record, None)
                    continue
                yield self._out(self._tracked(record, image), image if self._with_images else None)
                yield from self._flush_settled()
            yield from self._flush_all()
        finally:
            self.close()

    # -- per result --------------------------------------------------------------
    def _tracked(self, result: Detections, image: np.ndarray | None) -> Detections:
        stream = result.stream or 0
        frame = result.frame if result.frame is not None else self._counts.get(stream, -1) + 1
        self._counts[stream] = frame
        t = self._tracker_for(stream)
        objs = t.update(result.xyxy, result.confidence, result.class_id, frame=frame,
                        image=image if t.uses_images else None)
        self.inferred += 1
        out = result[objs.det_index]
        out.xyxy = objs.xyxy
        out.data["track_id"] = objs.track_id
        if self._selector is not None:
            out.data["predicted"] = np.zeros(len(objs), dtype=bool)
        return out

    def _predicted(self, note: SkippedFrame) -> Any:
        objs: TrackedObjects = self._tracker_for(note.stream or 0).predict(frame=note.frame)
        self.predicted += 1
        result = Detections(objs.xyxy, objs.confidence, objs.class_id, self._names, note.image_shape,
                            note.source, note.stream, note.frame,
                            data={"track_id": objs.track_id, "predicted": np.ones(len(objs), dtype=bool)})
        return self._out(result, note.image)

    def _out(self, result: Result, image: np.ndarray | None) -> Any:
        return (result, image) if self._with_images else result

    def _flush_before(self, record: Result) -> Iterator[Any]:
        selector: _Selector | None = self._selector
        if selector is None:
            return
        if selector.sequential:
            done = self._emitted
            notes = selector.take(lambda n: n.after <= done)
        else:
            if record.stream is None or record.frame is None:
                return
            stream, frame = record.stream, record.frame
            notes = selector.take(lambda n: n.stream == stream and n.frame < frame)
        for note in notes:
            yield self._predicted(note)

    def _flush_settled(self) -> Iterator[Any]:
        """Live streams: a skipped frame fewer than N frames after its stream's last inferred frame
        precedes every later inferred frame of that stream (chosen frames are at least N apart), so it
        goes out now instead of waiting for the stream's next result."""
        selector = self._selector
        if selector is None or selector.sequential:
            return
        last, every = self._counts, self.detect_every
        for note in selector.take(lambda n: (n.stream or 0) in last and n.frame < last[n.stream or 0] + every):
            yield self._predicted(note)

    def _flush_all(self) -> Iterator[Any]:
        if self._selector is not None:
            for note in self._selector.take(lambda n: True):
                yield self._predicted(note)

    def close(self) -> None:
        """Stop the pipeline run and the source (idempotent)."""
        self._run.close()
        self._source.close()

    def __enter__(self) -> TrackRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
