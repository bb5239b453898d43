"""Multi-object tracking: persistent ids on videos and live streams (ByteTrack, BoT-SORT).

``Detector.track(source)`` (or :func:`track`) runs the detector through its
throughput pipeline and gives each stream's results to that stream's
:class:`Tracker`; every result's ``data["track_id"]`` holds the ids. The
defaults are Ultralytics' ``bytetrack.yaml``; ``tracker="botsort"`` adds
camera-motion compensation. ``detect_every=N`` infers every Nth frame and
lets the tracker predict the rest. :class:`Counters` counts line crossings
and zone occupancy over the ids.

Example:
    >>> from yolo_ov import Detector  # doctest: +SKIP
    >>> with Detector("yolov8n_openvino_model", mode="throughput") as det:  # doctest: +SKIP
    ...     for r in det.track("walking.mp4", tracker="bytetrack"):
    ...         print(r.frame, r.data["track_id"].tolist())
"""

from __future__ import annotations

from .config import TrackerConfig, load_tracker_config
from .counters import Counters, Line, Zone
from .draw import Trails
from .metrics import FrameTracks, frame_agreement, idf1
from .run import TrackRun, track
from .sources import LiveStreams
from .tracker import TrackedObjects, Tracker, id_counter

__all__ = [
    "Counters",
    "FrameTracks",
    "Line",
    "LiveStreams",
    "TrackRun",
    "TrackedObjects",
    "Tracker",
    "TrackerConfig",
    "Trails",
    "Zone",
    "frame_agreement",
    "id_counter",
    "idf1",
    "load_tracker_config",
    "track",
]
