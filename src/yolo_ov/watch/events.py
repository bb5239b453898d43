"""Events from one camera's tracks: zone enter/exit, line crossings, appear/disappear; camera health changes.

Pure (numpy and OpenCV's point-in-polygon only), so every rule is tested on
synthetic tracks in the fast tier. One :class:`EventDetector` follows one
camera; it is fed each inferred frame's tracked
:class:`~yolo_ov.results.Detections` (``data["track_id"]``) with the frame's
capture time and index, and returns that frame's events.

The rules, consistent with ``yolo-ov track --line/--zone``
(:mod:`yolo_ov.track.counters`):

* A track's **position** is the centre of its box.
* ``appear``: a track id seen for the first time (the tracker reports only
  confirmed tracks, so a first sighting is a new confirmed object).
* ``zone_enter`` / ``zone_exit``: the centre goes into / out of the polygon
  (its edge counts as inside). A track first seen inside a zone enters it on
  that frame; a track that disappears while inside exits it then, so every
  enter has its exit.
* ``line_cross``: the centre moves from one side of the segment to the other
  across the segment itself (not its extension). ``direction`` is
  ``left_to_right`` or ``right_to_left`` as seen walking along the line from
  its first point to its second: for a line drawn left to right across the
  picture (``[[0, 300], [960, 300]]``), ``left_to_right`` is moving down the
  picture (image y grows). It is what ``track --line`` counts as ``in``.
  Like those counts, a track crosses a line at most once per direction (a
  box jittering on the line does not make a stream of events).
* ``disappear``: a track not seen for more than ``lost_after`` frames (the
  tracker's ``track_buffer``, counted in camera frames, so an outage ages
  tracks out as the tracker does), with ``dwell_s`` from its first to its
  last sighting (capture times).

Objects below the camera's ``conf`` or outside its ``classes`` make no
events (they are not seen, for these rules).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from ..io.health import HealthChange
    from ..results import Detections

__all__ = ["EVENT_TYPES", "EventDetector", "camera_event", "new_event_id", "snapshot"]

#: Every event ``type``.
EVENT_TYPES = ("zone_enter", "zone_exit", "line_cross", "appear", "disappear", "camera")

Point = tuple[float, float]


def new_event_id() -> str:
    """A unique event id (uuid4, 32 hex digits): consumers de-duplicate QoS 1 redeliveries by it."""
    return uuid.uuid4().hex


def _side(a: Point, b: Point, p: np.ndarray) -> float:
    """> 0 right of ``a -> b`` (image coordinates, y down), < 0 left, 0 on it."""
    return float(np.sign((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])))


def _crosses(a: Point, b: Point, p: np.ndarray, q: np.ndarray) -> bool:
    """Whether the movement ``p -> q`` crosses the segment ``a - b`` itself."""
    s1, s2 = _side(a, b, p), _side(a, b, q)
    if s1 == 0 or s2 == 0 or s1 == s2:
        return False
    t1, t2 = _side(tuple(p), tuple(q), np.asarray(a)), _side(tuple(p), tuple(q), np.asarray(b))  # type: ignore[arg-type]
    return t1 != t2


@dataclass
class _Track:
    first_time: float
    last_time: float
    last_frame: int
    centre: np.ndarray
    box: list[float]
    class_name: str
    inside: set[str] = field(default_factory=set)
    crossed: dict[str, int] = field(default_factory=dict)  # line -> bits: 1 left_to_right, 2 right_to_left


class EventDetector:
    """Turns one camera's tracked frames into events (see the module notes for the rules).

    Args:
        camera: the camera's name (each event's ``camera``).
        zones: named polygons, frame pixels.
        lines: named two-point lines, frame pixels.
        lost_after: frames without a sighting after which a track has disappeared.
        conf: the lowest confidence that counts as a sighting.
        classes: class ids that count (``None``: every class).

    Example:
        >>> from yolo_ov.results import Detections
        >>> det = EventDetector("road", lines={"north": ((0, 50), (100, 50))})
        >>> def at(y, frame):
        ...     return Detections(np.array([[40, y - 5, 60, y + 5]], np.float32), np.array([0.9], np.float32),
        ...                       np.array([0]), {0: "car"}, (100, 100), data={"track_id": np.array([7])})
        >>> [e["type"] for e in det.update(at(30, 0), time=0.0, frame=0)]
        ['appear']
        >>> [(e["type"], e["direction"]) for e in det.update(at(70, 1), time=0.04, frame=1)]
        [('line_cross', 'left_to_right')]
    """

    def __init__(self, camera: str, *, zones: Mapping[str, Sequence[Point]] | None = None,
                 lines: Mapping[str, Sequence[Point]] | None = None, lost_after: int = 30, conf: float = 0.0,
                 classes: Collection[int] | None = None) -> None:
        self.camera = camera
        self.zones = {name: np.asarray(points, np.float32).reshape(-1, 1, 2) for name, points in (zones or {}).items()}
        self.lines = {name: (tuple(map(float, pts[0])), tuple(map(float, pts[1])))
                      for name, pts in (lines or {}).items()}
        self.lost_after = int(lost_after)
        self.conf = float(conf)
        self.classes = set(classes) if classes is not None else None
        self._tracks: dict[int, _Track] = {}
        self.counts: dict[str, int] = dict.fromkeys(EVENT_TYPES[:-1], 0)

    @property
    def active(self) -> int:
        """Tracks followed now (seen within ``lost_after`` frames)."""
        return len(self._tracks)

    def _event(self, kind: str, time: float, track_id: int, track: _Track, **fields: Any) -> dict[str, Any]:
        self.counts[kind] += 1
        return {"id": new_event_id(), "camera": self.camera, "time": round(float(time), 6), "type": kind,
                "track_id": int(track_id), "class_name": track.class_name, "box": track.box, **fields}

    def update(self, record: Detections, *, time: float, frame: int) -> list[dict[str, Any]]:
        """The events of one inferred frame (``time``: its capture time, epoch s; ``frame``: its index)."""
        events: list[dict[str, Any]] = []
        ids = record.data.get("track_id") if record.data else None
        if ids is not None and len(record):
            keep = record.confidence >= self.conf
            if self.classes is not None:
                keep &= np.isin(record.class_id, list(self.classes))
            xyxy = record.xyxy[keep]
            centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
            for tid, box, centre, cls in zip(np.asarray(ids)[keep].tolist(), xyxy.tolist(), centres,
                                             record.class_id[keep].tolist(), strict=True):
                events += self._sighting(int(tid), [round(v, 1) for v in box], centre,
                                         record.names.get(int(cls), str(cls)), time, frame)
        for tid in [t for t, tr in self._tracks.items() if frame - tr.last_frame > self.lost_after]:
            events += self._gone(tid, time)
        return events

    def _sighting(self, tid: int, box: list[float], centre: np.ndarray, class_name: str, time: float,
                  frame: int) -> list[dict[str, Any]]:
        events = []
        track = self._tracks.get(tid)
        before = None
        if track is None:
            track = self._tracks[tid] = _Track(time, time, frame, centre, box, class_name)
            events.append(self._event("appear", time, tid, track))
        else:
            before = track.centre
            track.last_time, track.last_frame, track.centre, track.box = time, frame, centre, box
            track.class_name = class_name
        for name, poly in self.zones.items():
            inside = cv2.pointPolygonTest(poly, (float(centre[0]), float(centre[1])), False) >= 0
            if inside and name not in track.inside:
                track.inside.add(name)
                events.append(self._event("zone_enter", time, tid, track, zone=name))
            elif not inside and name in track.inside:
                track.inside.discard(name)
                events.append(self._event("zone_exit", time, tid, track, zone=name))
        if before is not None:
            for name, (a, b) in self.lines.items():
                if not _crosses(a, b, before, centre):
                    continue
                bit = 1 if _side(a, b, centre) > 0 else 2
                if track.crossed.get(name, 0) & bit:
                    continue
                track.crossed[name] = track.crossed.get(name, 0) | bit
                events.append(self._event("line_cross", time, tid, track, line=name,
                                          direction="left_to_right" if bit == 1 else "right_to_left"))
        return events

    def _gone(self, tid: int, time: float) -> list[dict[str, Any]]:
        track = self._tracks.pop(tid)
        events = [self._event("zone_exit", time, tid, track, zone=name) for name in sorted(track.inside)]
        events.append(self._event("disappear", time, tid, track,
                                  dwell_s=round(track.last_time - track.first_time, 3)))
        return events


def camera_event(camera: str, change: HealthChange) -> dict[str, Any]:
    """A ``camera`` event for a health change (``state``, ``previous``, ``reason``, ``reconnects``)."""
    return {"id": new_event_id(), "camera": camera, "time": round(change.time, 6), "type": "camera",
            "state": change.state, "previous": change.previous, "reason": change.reason,
            "reconnects": change.reconnects}


def snapshot(image: np.ndarray, box: Sequence[float] | None = None, *, quality: int = 80) -> str | None:
    """A base64 JPEG of ``image`` (or of ``box`` within it, clipped to the frame); ``None`` when empty."""
    if box is not None:
        h, w = image.shape[:2]
        x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
        x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
        if x2 <= x1 or y2 <= y1:
            return None
        image = image[y1:y2, x1:x2]
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return base64.b64encode(data.tobytes()).decode("ascii") if ok else None
