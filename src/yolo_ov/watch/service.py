"""The multi-camera service behind ``yolo-ov watch``: cameras -> one model -> trackers -> events -> outputs.

All cameras share one compiled model and the throughput engine through the
tracking path of ``yolo-ov track`` over live sources
(:func:`yolo_ov.track.track` on a :class:`~yolo_ov.track.sources.LiveStreams`):
one reader thread per camera, the newest-frame policy (a camera the device
cannot keep up with drops frames, never queues them), round-robin fairness
between cameras, one tracker per camera. Each camera is read here through a
reconnecting :class:`~yolo_ov.io.capture.Capture` of its own settings; the
reader notes every frame's capture time (wall clock, when the frame was
read) so an event carries the time its frame was taken, not when it was
inferred. With ``detect_every: N`` a camera's frames are all read (grabbed)
and only every Nth is decoded and offered for inference.

Three kinds of thread, so nothing waits on a slow neighbour:

* camera readers (one per camera): read, reconnect, report health;
* the result thread: tracked frames -> :class:`~yolo_ov.watch.events.EventDetector`
  -> observers' ``on_frame`` -> the publish queue;
* the publisher: the one thread that writes to the outputs (sinks are not
  made for concurrent callers) and calls observers' ``on_event`` and
  ``on_outputs``. Camera health changes go to the same queue, so a
  ``camera`` event goes out even while no camera has a frame.

:meth:`WatchService.close` drains: the cameras stop reading, the frames in
flight are answered and their events published, the queue is flushed, the
outputs are closed (an MQTT sink publishes ``offline``), observers get
``on_stop``. A camera given up on (its reconnection attempts used up) is a
``camera`` event with state ``failed``; the other cameras go on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import DetectConfig
from ..errors import ConfigError, InputError
from ..io.capture import Capture
from ..io.health import Health, HealthChange
from ..results import Detections, Failure
from ..track import track
from ..track.config import load_tracker_config
from ..track.sources import LiveStreams
from .config import CameraConfig, WatchConfig, redact
from .events import EventDetector, camera_event, snapshot
from .observer import CameraInfo, CameraObserver

__all__ = ["CameraStats", "WatchService"]

log = logging.getLogger(__name__)

#: Capture times kept per camera (frame index -> time); far more than can be in flight.
_TIMES_KEPT = 1024
#: Events waiting for the publisher, at most (beyond it they are counted in ``events_dropped``).
_QUEUE_SIZE = 10000


@dataclass(frozen=True, slots=True)
class CameraStats:
    """One camera's counters (see :meth:`WatchService.stats`).

    Attributes:
        state: its health state now.
        frames_read: frames read from the source (every frame, across reconnections).
        inferred: frames inferred and tracked.
        dropped: frames offered for inference but replaced by a newer one first (the newest-frame policy).
        reconnects: successful reconnections.
        events: events it produced (object and camera events).
    """

    state: str
    frames_read: int
    inferred: int
    dropped: int
    reconnects: int
    events: int


class _CameraReader:
    """Every chosen frame of one camera as ``(frame index, BGR image)``, its capture time noted.

    The index is the capture's (:attr:`Capture.frame_index`): it goes on
    across a reconnection, counting the frames the gap would have held, so
    the tracker ages tracks out over an outage.
    """

    def __init__(self, camera: CameraConfig, health: Health) -> None:
        self.camera = camera
        self.capture = Capture(camera.url, config=camera.capture, health=health)
        self._times: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()

    def capture_time(self, frame: int | None) -> float:
        """The wall-clock time frame ``frame`` was read (now, if it is no longer known)."""
        with self._lock:
            return self._times.get(frame, time.time()) if frame is not None else time.time()

    def __iter__(self) -> Iterator[Any]:
        cap, every = self.capture, self.camera.detect_every
        try:
            cap.connect()
        except InputError as exc:
            yield exc
            return
        with cap:
            last: int | None = None
            while cap.grab():
                taken = time.time()
                index = cap.frame_index
                if last is not None and 0 <= index - last < every:
                    continue  # read, not decoded: the detector sees every Nth frame
                image = cap.retrieve()
                if not isinstance(image, np.ndarray):
                    continue
                last = index
                with self._lock:
                    self._times[index] = taken
                    while len(self._times) > _TIMES_KEPT:
                        self._times.popitem(last=False)
                yield index, image
            if cap.error is not None:
                yield cap.error


class _Camera:
    """What the service keeps per camera."""

    def __init__(self, index: int, config: CameraConfig, events: EventDetector, health: Health) -> None:
        self.index = index
        self.config = config
        self.name = config.name
        self.events = events
        self.health = health
        self.reader = _CameraReader(config, health)
        self.inferred = 0
        self.dropped = 0
        self.event_count = 0


def _resolve_classes(config: WatchConfig, camera: CameraConfig, names: Mapping[int, str]) -> tuple[int, ...] | None:
    if camera.classes is None:
        return None
    by_name = {v.lower(): k for k, v in names.items()}
    out = []
    for i, c in enumerate(camera.classes):
        if isinstance(c, int) or str(c).isdigit():
            if int(c) not in names:
                raise ConfigError(f"{config.where(f'cameras.{camera.name}.classes[{i}]')}: class id {c} is not "
                                  f"one of the model's (0..{max(names)})")
            out.append(int(c))
        elif str(c).lower() in by_name:
            out.append(by_name[str(c).lower()])
        else:
            some = ", ".join(list(names.values())[:8])
            raise ConfigError(f"{config.where(f'cameras.{camera.name}.classes[{i}]')}: unknown class {c!r}; "
                              f"the model's classes are {some}, ...")
    return tuple(out)


class WatchService:
    """Runs the cameras of a :class:`~yolo_ov.watch.config.WatchConfig` until :meth:`close`.

    Args:
        config: the parsed config file.
        detector: the loaded :class:`~yolo_ov.Detector` (any object with
            ``names`` and ``stream()``; a throughput-mode one keeps several
            frames in flight).
        outputs: the sinks by output name (``jsonl``, ``mqtt``, ``webhook``);
            default :func:`~yolo_ov.watch.outputs.build_outputs` of the config.
        observers: who follows the cameras (a page, metrics, a test);
            more can be appended to :attr:`observers` before :meth:`start`.

    Example:
        >>> service = WatchService(load_watch_config("cameras.yaml"), detector)  # doctest: +SKIP
        >>> service.start(); service.wait(60); service.close()  # doctest: +SKIP
    """

    def __init__(self, config: WatchConfig, detector: Any, *, outputs: Mapping[str, Any] | None = None,
                 observers: Iterable[CameraObserver] = ()) -> None:
        self.config = config
        self.detector = detector
        self.observers: list[CameraObserver] = list(observers)
        names = dict(detector.names)
        self._names = names
        tracker = load_tracker_config(config.tracker)
        self.tracker_config = tracker
        classes = {c.name: _resolve_classes(config, c, names) for c in config.cameras}  # before a file is opened
        if outputs is None:
            from .outputs import build_outputs

            outputs = build_outputs(config)
        self.outputs: dict[str, Any] = dict(outputs)
        self._cameras: list[_Camera] = []
        for k, cam in enumerate(config.cameras):
            health = Health(redact(cam.url), k)  # what observers and pages see: no password
            events = EventDetector(cam.name, zones=cam.zones, lines=cam.lines, lost_after=tracker.track_buffer + 1,
                                   conf=cam.conf, classes=classes[cam.name])
            self._cameras.append(_Camera(k, cam, events, health))
        every = list(classes.values())
        self._detect = DetectConfig(conf=min(0.1, *(c.conf for c in config.cameras)),
                                    classes=None if any(c is None for c in every)
                                    else tuple(sorted({i for c in every for i in c})))  # type: ignore[union-attr]
        self._routes = {c.name: [o for o in (c.outputs or tuple(self.outputs)) if o in self.outputs]
                        for c in config.cameras}
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._count_lock = threading.Lock()
        self._run: Any = None
        self._threads: list[threading.Thread] = []
        self._done = threading.Event()
        self._stopping = threading.Event()
        self._closed = False
        self._started = False
        self._unsubscribe: list[Any] = []
        self.error: BaseException | None = None
        self.events_dropped = 0
        self.output_errors: dict[str, int] = dict.fromkeys(self.outputs, 0)
        self._last_outputs = 0.0

    # -- what it runs ---------------------------------------------------------------------------------------
    @property
    def cameras(self) -> list[CameraInfo]:
        """The cameras as observers see them."""
        return [CameraInfo(c.name, redact(c.config.url), dict(c.config.zones), dict(c.config.lines))
                for c in self._cameras]

    def stats(self) -> dict[str, CameraStats]:
        """Each camera's counters by name (safe from any thread)."""
        skipped = self._run.skipped if self._run is not None else {}
        return {c.name: CameraStats(c.health.state, c.reader.capture.frames_read, c.inferred,
                                    int(skipped.get(c.index, c.dropped)), c.health.reconnects, c.event_count)
                for c in self._cameras}

    def health(self, camera: str) -> Health:
        """One camera's :class:`~yolo_ov.io.health.Health` (state, reason, history)."""
        return next(c.health for c in self._cameras if c.name == camera)

    # -- life -----------------------------------------------------------------------------------------------
    def start(self) -> WatchService:
        """Open the outputs, tell the observers, start reading the cameras (returns at once)."""
        if self._started:
            return self
        self._started = True
        opened = []
        try:
            for sink in self.outputs.values():
                sink.open()
                opened.append(sink)
        except BaseException:
            for sink in opened:
                sink.close()
            raise
        self._notify("on_start", self.cameras)
        for cam in self._cameras:
            self._unsubscribe.append(cam.health.subscribe(lambda change, cam=cam: self._on_health(cam, change)))
        publisher = threading.Thread(target=self._publish_loop, name="yolo-ov-watch-publish", daemon=True)
        publisher.start()
        self._threads.append(publisher)
        try:
            streams = LiveStreams([c.reader for c in self._cameras], names=[c.name for c in self._cameras])
            self._run = track(self.detector, streams, tracker=self.tracker_config, detect=self._detect,
                              with_images=self._needs_images(), drop="latest")
        except BaseException:
            self._stop_publisher()
            raise
        results = threading.Thread(target=self._result_loop, name="yolo-ov-watch-results", daemon=True)
        results.start()
        self._threads.append(results)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every camera has ended (or the run failed) or ``timeout`` passed; ``True`` when ended."""
        return self._done.wait(timeout)

    def close(self, timeout: float = 15.0) -> None:
        """Drain and stop (idempotent): cameras stop, frames in flight are answered, events flushed, outputs closed.

        ``timeout`` bounds the wait for the frames in flight; past it the run is cut short.
        """
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        for cam in self._cameras:
            cam.reader.capture.stop()  # a wait for a reconnection ends at once; a read ends after its frame
        if self._run is not None and not self._done.wait(timeout):
            log.warning("the cameras did not stop within %.0f s; cutting the run short", timeout)
            self._run.close()
            self._done.wait(5.0)
        if self._run is not None:
            self._run.close()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._stop_publisher()
        self._notify("on_stop")

    def __enter__(self) -> WatchService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the result thread ------------------------------------------------------------------------------------
    def _needs_images(self) -> bool:
        return bool(self.observers) or self.config.snapshot != "none" or any(
            getattr(s, "needs_images", False) for s in self.outputs.values())

    def _result_loop(self) -> None:
        try:
            for got in self._run:
                record, image = got if isinstance(got, tuple) else (got, None)
                cam = self._cameras[record.stream or 0]
                if isinstance(record, Failure):
                    log.warning("camera %s: %s", cam.name, record.error)
                    continue
                self._frame(cam, record, image)
        except BaseException as exc:  # noqa: BLE001 - an inference error ends the run; the CLI reports it
            if not self._stopping.is_set():
                self.error = exc
                log.error("the watch run failed: %s", exc)
        finally:
            self._done.set()

    def _frame(self, cam: _Camera, record: Detections, image: np.ndarray | None) -> None:
        taken = cam.reader.capture_time(record.frame)
        cam.inferred += 1
        events = cam.events.update(record, time=taken, frame=record.frame if record.frame is not None else cam.inferred)
        skipped = self._run.skipped.get(cam.index, 0)
        if skipped > cam.dropped:
            self._notify("on_dropped", cam.name, skipped - cam.dropped)
            cam.dropped = skipped
        self._notify("on_frame", cam.name, record, image, latency_s=max(0.0, time.time() - taken))
        if not events:
            return
        if self.config.snapshot != "none" and image is not None:
            seen = set(record.data["track_id"].tolist()) if "track_id" in (record.data or {}) else set()
            for event in events:
                if event["track_id"] in seen:  # not for an object gone (its exit and disappearance): not in this frame
                    shot = snapshot(image, event["box"] if self.config.snapshot == "crop" else None)
                    if shot is not None:
                        event["snapshot"] = shot
        self._enqueue(cam, record, image, events)

    # -- publishing ---------------------------------------------------------------------------------------
    def _on_health(self, cam: _Camera, change: HealthChange) -> None:
        """On the camera's reader thread: tell observers now, queue the ``camera`` event (never block)."""
        if self._stopping.is_set():
            return
        log.info("camera %s: %s (%s)", cam.name, change.state, change.reason)
        self._notify("on_health", cam.name, change)
        record = Detections.empty(names=self._names, source=cam.name, stream=cam.index)
        self._enqueue(cam, record, None, [camera_event(cam.name, change)])

    def _enqueue(self, cam: _Camera, record: Any, image: np.ndarray | None, events: list[dict[str, Any]]) -> None:
        """Queue events for the publisher (from the result thread, or a reader thread for health changes)."""
        with self._count_lock:
            cam.event_count += len(events)
        try:
            self._queue.put_nowait((cam.name, record, image, events))
        except queue.Full:
            with self._count_lock:
                self.events_dropped += len(events)

    def _publish_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._report_outputs()
                continue
            if item is None:
                break
            camera, record, image, events = item
            for name in self._routes.get(camera, ()):
                sink = self.outputs[name]
                try:
                    sink.write(record, image if getattr(sink, "needs_images", False) else None,
                               extra={"events": events})
                except Exception as exc:  # noqa: BLE001 - one output failing must not stop the cameras
                    self.output_errors[name] += 1
                    if self.output_errors[name] == 1 or self.output_errors[name] % 1000 == 0:
                        log.error("output %s failed (%d times): %s", name, self.output_errors[name], exc)
            for event in events:
                self._notify("on_event", event)
            self._report_outputs()
        self._report_outputs(force=True)

    def _report_outputs(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.observers or (not force and now - self._last_outputs < 1.0):
            return
        self._last_outputs = now
        self._notify("on_outputs", self.output_stats())

    def output_stats(self) -> dict[str, dict[str, int]]:
        """Each output's counters (``queued``, ``sent``, ``dropped``, ``retries``, ``connected``) and ``errors``."""
        out = {}
        for name, sink in self.outputs.items():
            stats = getattr(sink, "stats", None)
            out[name] = {**(dict(stats()) if stats is not None else {}), "errors": self.output_errors[name]}
        return out

    def _stop_publisher(self) -> None:
        """Flush the queue through the outputs, then close them (each, even when one fails)."""
        publisher = self._threads[0] if self._threads else None
        if publisher is not None and publisher.is_alive():
            self._queue.put(None)
            publisher.join(timeout=30.0)
        for name, sink in self.outputs.items():
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - the others still close
                log.error("output %s did not close cleanly: %s", name, exc)

    def _notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args, **kwargs)
            except Exception:
                log.exception("observer %r failed in %s", observer, method)
