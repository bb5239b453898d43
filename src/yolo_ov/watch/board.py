"""The cameras board: what the cameras page and the metrics show, kept as the watch service runs.

:class:`CameraBoard` is a :class:`~yolo_ov.watch.observer.CameraObserver`.
The service calls it from its result thread (and from the cameras' reader
threads for health), so every ``on_*`` call only stores references and
bumps counters under one short lock: it never draws, encodes or copies a
frame. The frame kept is the one the service hands over; the capture layer
allocates a new array for every frame it reads (OpenCV's ``retrieve``
without an output buffer), so holding a reference is safe and the producer
never writes into a frame the board still shows.

A JPEG is drawn and encoded only when a viewer asks (:meth:`CameraBoard.jpeg`),
at most once per new frame whatever the number of viewers: the first one
draws under the camera's encode lock, the others get the cached bytes. A
camera nobody watches costs two dict updates per frame.

Drawing reuses the package's own: :func:`~yolo_ov.io.draw.draw` for boxes,
track ids, class names (one palette), :class:`~yolo_ov.track.draw.Trails`
for the tracks' paths, and the zone and line colours of
:class:`~yolo_ov.track.counters.Counters`, labelled with the counts of the
events the service published (so the frame and the page show the same
numbers).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..io.draw import draw
from ..results import Classification, Detections
from ..track.draw import Trails
from .observer import CameraInfo

if TYPE_CHECKING:
    from ..io.health import HealthChange

__all__ = ["BoardConfig", "CameraBoard", "UnknownCameraError"]

_ZONE_BGR = (255, 144, 30)  # Counters.draw's zone colour
_LINE_BGR = (0, 220, 255)  # Counters.draw's line colour


class UnknownCameraError(KeyError):
    """A camera name the board does not know; the message lists the ones it does."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(name)
        self.name = name
        self.message = (f"no camera named {name!r}; cameras: {', '.join(known) or '(none yet)'}")

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, kw_only=True)
class BoardConfig:
    """What the board keeps and how it draws.

    Attributes:
        fps_window_s: processed fps is the frames of this last window, per second.
        recent_events: how many of each camera's newest events the page lists.
        jpeg_quality: OpenCV's JPEG quality (0-100) of the streams and snapshots.
        trails: draw the tracks' recent paths.
        max_width: frames wider than this are scaled down before encoding (0: never), so a 4K
            camera does not cost a 4K encode per viewed frame.
    """

    fps_window_s: float = 5.0
    recent_events: int = 10
    jpeg_quality: int = 80
    trails: bool = True
    max_width: int = 1280

    def __post_init__(self) -> None:
        if self.fps_window_s <= 0:
            raise ValueError(f"fps_window_s must be > 0, got {self.fps_window_s}")
        if self.recent_events < 0:
            raise ValueError(f"recent_events must be >= 0, got {self.recent_events}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 0..100, got {self.jpeg_quality}")
        if self.max_width < 0:
            raise ValueError(f"max_width must be >= 0, got {self.max_width}")


@dataclass(eq=False)
class _Camera:
    """One camera's live state; guarded by the board's lock except the encode fields (``encode_lock``)."""

    info: CameraInfo
    fps_window_s: float
    recent_kept: int
    state: str = "connecting"
    reason: str = "waiting for the service"
    since: float = field(default_factory=time.time)
    reconnects: int = 0
    inferred: int = 0
    dropped: int = 0
    latency_s: float | None = None
    seq: int = 0  # frames with an image kept; the JPEG cache is valid for one seq
    image: np.ndarray | None = None
    record: Any = None
    image_record: Any = None  # the record of ``image`` (drawn on it), when the newest record came without one
    frame_time: float | None = None
    times: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    events: Counter[str] = field(default_factory=Counter)
    zones: dict[str, dict[str, int]] = field(default_factory=dict)
    lines: dict[str, dict[str, int]] = field(default_factory=dict)
    recent: deque[dict[str, Any]] = field(default_factory=deque)
    encode_lock: threading.Lock = field(default_factory=threading.Lock)
    jpeg_seq: int = -1
    jpeg_bytes: bytes | None = None
    trails: Trails = field(default_factory=Trails)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.recent_kept)
        self.zones = {z: {"inside": 0, "entered": 0, "exited": 0} for z in self.info.zones}
        self.lines = {ln: {} for ln in self.info.lines}

    def fps(self, now: float) -> float:
        while self.times and self.times[0] < now - self.fps_window_s:
            self.times.popleft()
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(now - self.times[0], 1e-6)


class CameraBoard:
    """Follows a watch run's cameras for the page and the metrics; thread-safe.

    Hand it to the watch service as an observer, then serve it with
    :func:`yolo_ov.watch.web.serve_board`.

    Args:
        config: what it keeps and how it draws (:class:`BoardConfig`).

    Example:
        >>> board = CameraBoard()
        >>> board.on_start([CameraInfo("door", "rtsp://cam/door")])
        >>> board.on_frame("door", Detections.empty(), np.zeros((48, 64, 3), np.uint8), latency_s=0.05)
        >>> seq, jpeg = board.jpeg("door")
        >>> frames = board.camera_status("door")["frames"]
        >>> seq, jpeg[:2] == b"\\xff\\xd8", frames["inferred"]
        (1, True, 1)
    """

    def __init__(self, config: BoardConfig | None = None) -> None:
        self.config = config or BoardConfig()
        self._lock = threading.Lock()
        self._cameras: dict[str, _Camera] = {}
        self._outputs: dict[str, dict[str, int]] = {}
        self._listeners: list[Callable[[str], None]] = []
        self.started: float | None = None
        self.stopped: float | None = None
        #: JPEG encodes done so far (one per viewed new frame, however many viewers): tests and tuning read it.
        self.encodes = 0

    # -- the observer side (the service's threads): references and counters only ------------------

    def on_start(self, cameras: Sequence[CameraInfo]) -> None:
        with self._lock:
            self.started = time.time()
            for info in cameras:
                self._cameras[info.name] = self._new(info)

    def on_frame(self, camera: str, record: Detections, image: np.ndarray | None, *, latency_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            cam = self._get_or_add(camera)
            cam.inferred += 1
            cam.latency_s = float(latency_s)
            cam.times.append(now)
            cam.record = record
            if image is not None:
                cam.image, cam.image_record = image, record
                cam.seq += 1
                cam.frame_time = time.time()
            listeners = list(self._listeners) if image is not None else []
        for listener in listeners:
            listener(camera)

    def on_dropped(self, camera: str, frames: int) -> None:
        with self._lock:
            self._get_or_add(camera).dropped += int(frames)

    def on_health(self, camera: str, change: HealthChange) -> None:
        with self._lock:
            cam = self._get_or_add(camera)
            cam.state, cam.reason, cam.since, cam.reconnects = change.state, change.reason, change.time, \
                change.reconnects

    def on_event(self, event: Mapping[str, Any]) -> None:
        name = event.get("camera")
        kind = str(event.get("type", "unknown"))
        if not name:  # not a camera's event: nothing on the page to count it under
            return
        name = str(name)
        with self._lock:
            cam = self._get_or_add(name)
            cam.events[kind] += 1
            if kind in ("zone_enter", "zone_exit") and event.get("zone") is not None:
                zone = cam.zones.setdefault(str(event["zone"]), {"inside": 0, "entered": 0, "exited": 0})
                zone["entered" if kind == "zone_enter" else "exited"] += 1
                zone["inside"] = max(zone["entered"] - zone["exited"], 0)
            elif kind == "line_cross" and event.get("line") is not None:
                line = cam.lines.setdefault(str(event["line"]), {})
                direction = str(event.get("direction") or "crossed")
                line[direction] = line.get(direction, 0) + 1
            cam.recent.appendleft(_brief(event))

    def on_outputs(self, stats: Mapping[str, Mapping[str, int]]) -> None:
        with self._lock:
            for name, counters in stats.items():
                self._outputs[str(name)] = {str(k): int(v) for k, v in counters.items()}

    def on_stop(self) -> None:
        with self._lock:
            self.stopped = time.time()

    # -- the viewer side (the web app's threads) --------------------------------------------------

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(camera)`` after each new frame with an image (on the service's thread: be quick).

        Returns the function that unsubscribes.
        """
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    @property
    def names(self) -> list[str]:
        """The cameras, in the order the run named them."""
        with self._lock:
            return list(self._cameras)

    def frame_seq(self, camera: str) -> int:
        """How many frames with an image ``camera`` has had (0: none yet); a new frame changes it."""
        with self._lock:
            return self._camera(camera).seq

    def cached_jpeg(self, camera: str) -> tuple[int, bytes] | None:
        """The JPEG already encoded for ``camera``'s newest frame, or ``None`` (none yet, or stale): never encodes."""
        with self._lock:
            cam = self._camera(camera)
            if cam.jpeg_bytes is None or cam.jpeg_seq != cam.seq:
                return None
            return cam.jpeg_seq, cam.jpeg_bytes

    def jpeg(self, camera: str) -> tuple[int, bytes] | None:
        """``(seq, JPEG bytes)`` of ``camera``'s newest frame, drawn; ``None`` before its first frame.

        Encodes at most once per new frame: concurrent callers wait on the
        camera's encode lock and share the first one's bytes.
        """
        with self._lock:
            cam = self._camera(camera)
        with cam.encode_lock:
            with self._lock:
                seq, image, record = cam.seq, cam.image, cam.image_record
                if cam.jpeg_bytes is not None and cam.jpeg_seq == seq:
                    return seq, cam.jpeg_bytes
                zones = {k: dict(v) for k, v in cam.zones.items()}
                lines = {k: dict(v) for k, v in cam.lines.items()}
            if image is None:
                return None
            canvas = self._render(cam, image, record, zones, lines)
            ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
            if not ok:  # pragma: no cover - OpenCV encodes any 8-bit BGR image
                return None
            data = buf.tobytes()
            with self._lock:
                cam.jpeg_seq, cam.jpeg_bytes = seq, data
                self.encodes += 1
            return seq, data

    def camera_status(self, camera: str) -> dict[str, Any]:
        """One camera's figures, as ``/cameras.json`` lists them."""
        now = time.monotonic()
        with self._lock:
            return self._status(self._camera(camera), now)

    def status(self) -> dict[str, Any]:
        """Every camera's figures and the outputs' counters (the ``/cameras.json`` body)."""
        now = time.monotonic()
        with self._lock:
            return {
                "time": time.time(),
                "started": self.started,
                "stopped": self.stopped,
                "cameras": [self._status(cam, now) for cam in self._cameras.values()],
                "outputs": {k: dict(v) for k, v in self._outputs.items()},
            }

    # -- internals -------------------------------------------------------------------------------

    def _new(self, info: CameraInfo) -> _Camera:
        return _Camera(info, self.config.fps_window_s, self.config.recent_events)

    def _get_or_add(self, name: str) -> _Camera:
        """The camera, added on first sight when the run did not announce it (a test, a late camera)."""
        cam = self._cameras.get(name)
        if cam is None:
            cam = self._cameras[name] = self._new(CameraInfo(name, ""))
        return cam

    def _camera(self, name: str) -> _Camera:
        cam = self._cameras.get(name)
        if cam is None:
            raise UnknownCameraError(name, list(self._cameras))
        return cam

    def _status(self, cam: _Camera, now: float) -> dict[str, Any]:
        return {
            "name": cam.info.name,
            "url": cam.info.url,
            "state": cam.state,
            "since": cam.since,
            "reason": cam.reason,
            "reconnects": cam.reconnects,
            "fps": round(cam.fps(now), 2),
            "latency_s": cam.latency_s,
            "frames": {"read": cam.inferred + cam.dropped, "inferred": cam.inferred, "dropped": cam.dropped},
            "frame_seq": cam.seq,
            "frame_time": cam.frame_time,
            "detections": len(cam.record) if isinstance(cam.record, Detections) else None,
            "events": dict(cam.events),
            "counts": {"zones": {k: dict(v) for k, v in cam.zones.items()},
                       "lines": {k: dict(v) for k, v in cam.lines.items()}},
            "recent_events": list(cam.recent),
        }

    def _render(self, cam: _Camera, image: np.ndarray, record: Any, zones: Mapping[str, Mapping[str, int]],
                lines: Mapping[str, Mapping[str, int]]) -> np.ndarray:
        """A drawn copy of ``image`` (the frame itself is never written to); runs under the camera's encode lock."""
        canvas = draw(record, image) if isinstance(record, (Detections, Classification)) else image.copy()
        if self.config.trails and isinstance(record, Detections) and "track_id" in record.data:
            cam.trails.draw(canvas, record)
        _draw_geometry(canvas, cam.info, zones, lines)
        width = canvas.shape[1]
        if self.config.max_width and width > self.config.max_width:
            height = round(canvas.shape[0] * self.config.max_width / width)
            canvas = cv2.resize(canvas, (self.config.max_width, height), interpolation=cv2.INTER_AREA)
        return canvas


def _brief(event: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an event the page lists (no snapshot bytes, no boxes)."""
    keys = ("id", "time", "type", "track_id", "class_name", "zone", "line", "direction", "dwell_s", "state",
            "reason")
    return {k: event[k] for k in keys if k in event and event[k] is not None}


def _draw_geometry(canvas: np.ndarray, info: CameraInfo, zones: Mapping[str, Mapping[str, int]],
                   lines: Mapping[str, Mapping[str, int]]) -> None:
    """The camera's zones and lines in :class:`~yolo_ov.track.counters.Counters`' colours, with the events' counts."""
    lw = max(round(sum(canvas.shape[:2]) / 2 * 0.003), 2)
    scale = lw / 3
    for name, points in info.zones.items():
        pts = np.asarray(points, np.float64).round().astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], True, _ZONE_BGR, lw, cv2.LINE_AA)
        z = zones.get(name, {})
        _label(canvas, f"{name}: {z.get('inside', 0)} inside ({z.get('entered', 0)} entered)", pts[0, 0], scale, lw)
    for name, points in info.lines.items():
        (x1, y1), (x2, y2) = points[0], points[-1]
        p1, p2 = (round(x1), round(y1)), (round(x2), round(y2))
        cv2.arrowedLine(canvas, p1, p2, _LINE_BGR, lw, cv2.LINE_AA, tipLength=0.02)
        counts = lines.get(name, {})
        text = " ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"
        _label(canvas, f"{name}: {text}", p1, scale, lw)


def _label(image: np.ndarray, text: str, at: Sequence[int], scale: float, lw: int) -> None:
    thickness = max(lw - 1, 1)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = int(at[0]), max(int(at[1]), th + 4)
    cv2.rectangle(image, (x, y - th - 4), (x + tw + 4, y + 2), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
