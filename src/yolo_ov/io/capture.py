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

Live sources survive (:class:`CaptureConfig`): URLs are opened through
FFmpeg with open and read time-outs (a camera that stops sending makes a read
return after ``read_timeout_s``, so no thread hangs on it), RTSP over TCP by
default; a live source that ends or stalls is opened again with exponential
back-off and jitter (:class:`ReconnectConfig`), and its frames go on as one
stream. :attr:`Capture.health` follows it (:mod:`yolo_ov.io.health`). One
given up on leaves :attr:`Capture.error`, which the sources turn into an
error record. A file can be looped at its frame rate (``loop=True``), a
camera for demos and tests.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError, InputError
from .health import Health

__all__ = ["LIVE_SCHEMES", "Capture", "CaptureConfig", "ReconnectConfig", "open_capture", "reconnect_option"]

#: URL schemes read as live streams (also :data:`yolo_ov.io.sources.LIVE_SCHEMES`).
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")

_JPEG_START = b"\xff\xd8"

#: FFmpeg's own messages ("moov atom not found", "Connection refused" per reconnection attempt, "Stream ends
#: prematurely") reach stderr raw, beside the one clear line yolo-ov prints for the same cause. OpenCV reads
#: this variable once, when it first uses FFmpeg, so it is set before the first capture opens (not on import:
#: importing yolo-ov changes nothing): fatal messages only, unless the user chose a level
#: (``OPENCV_FFMPEG_LOGLEVEL=32`` shows FFmpeg's warnings again, to debug a camera).
_FFMPEG_LOGLEVEL = ("OPENCV_FFMPEG_LOGLEVEL", "8")


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


@dataclass(frozen=True, slots=True)
class ReconnectConfig:
    """When and how often a live source that was lost is opened again.

    Attributes:
        enabled: ``None`` (default): on for cameras and stream URLs, off for
            files; ``False``: a lost source is given up on at once.
        max_attempts: failed attempts in a row before giving up; ``None``
            (default) tries for ever (a camera that reboots for an hour
            comes back).
        first_delay_s: wait before the first attempt (the issue's "first
            retry within 1 s").
        max_delay_s: the cap of the doubling wait.
        factor: how the wait grows per failed attempt.
        jitter: each wait is drawn within +-``jitter`` of itself, so cameras
            that dropped together (a switch rebooting) do not all knock at once.
        early_s: for this long after a source is lost, a wait is at most
            ``early_max_delay_s``: most outages are short (a camera or its
            network blinking), a refused attempt costs a loopback round trip,
            and a camera back after 5 s is then picked up within about a
            second instead of the 2.5 s the doubling has reached by then.
        early_max_delay_s: the cap of the waits during ``early_s``.
    """

    enabled: bool | None = None
    max_attempts: int | None = None
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    factor: float = 1.5
    jitter: float = 0.2
    early_s: float = 15.0
    early_max_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and (isinstance(self.max_attempts, bool) or self.max_attempts < 0):
            raise ConfigError(f"reconnect max_attempts must be a non-negative integer or None, "
                              f"got {self.max_attempts!r}")
        if not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ConfigError(f"reconnect delays: need 0 <= first ({self.first_delay_s}) <= max ({self.max_delay_s})")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ConfigError(f"reconnect factor must be >= 1 and jitter in [0, 1), got {self.factor}, {self.jitter}")
        if self.early_s < 0 or self.early_max_delay_s < 0:
            raise ConfigError(f"reconnect early_s and early_max_delay_s must be >= 0, got {self.early_s}, "
                              f"{self.early_max_delay_s}")

    def delay(self, attempt: int, rng: random.Random | None = None, *, lost_for_s: float | None = None) -> float:
        """The wait before attempt ``attempt`` (1 = the first), jittered.

        With ``lost_for_s`` (how long the source has been away, as the
        capture passes it): during ``early_s`` the doubling is capped at
        ``early_max_delay_s``; after it the waits grow by ``factor`` per
        attempt again, starting from that cap: a geometric schedule, which is
        the same as a wait of ``early_max_delay_s + (factor - 1) * (lost_for_s - early_s)``
        (so no wait jumps when the early phase ends), up to ``max_delay_s``.

        Example:
            >>> cfg = ReconnectConfig(jitter=0.0)
            >>> [round(cfg.delay(n), 2) for n in (1, 2, 5)]
            [0.5, 0.75, 2.53]
            >>> cfg.delay(5, lost_for_s=4.0), cfg.delay(20, lost_for_s=25.0)
            (1.0, 6.0)
        """
        base = min(self.max_delay_s, self.first_delay_s * self.factor ** max(0, attempt - 1))
        if lost_for_s is not None:
            if lost_for_s < self.early_s:
                base = min(base, self.early_max_delay_s)
            else:
                start = self.early_max_delay_s if self.early_s > 0 else self.first_delay_s
                base = min(base, start + (self.factor - 1) * (lost_for_s - self.early_s))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_delay_s, base * (1 + spread)))


def reconnect_option(text: str, option: str = "--reconnect") -> ReconnectConfig:
    """The command line's reconnection setting: ``auto`` (for ever, the default), ``off``, or a number of attempts.

    Example:
        >>> reconnect_option("5").max_attempts, reconnect_option("off").enabled
        (5, False)
    """
    value = text.strip().lower()
    if value in ("auto", "on", "forever"):
        return ReconnectConfig()
    if value in ("off", "0", "no", "none"):
        return ReconnectConfig(enabled=False)
    if value.isdigit():
        return ReconnectConfig(enabled=True, max_attempts=int(value))
    raise ConfigError(f"{option} {text}: expected auto (reconnect a lost camera for ever), off, or a number of "
                      "attempts")


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """How sources are opened and kept up (one per run; see :func:`open_capture`).

    Attributes:
        reconnect: the back-off for a lost live source.
        rtsp_transport: ``"tcp"`` (default: no lost packets, works through
            NAT and firewalls) or ``"udp"`` (lower latency on a clean LAN).
        open_timeout_s: how long opening a URL may take before it counts as failed.
        read_timeout_s: the stall watchdog: no frame from a URL for this
            long and the read gives up, the source is ``stalled`` and is
            reconnected.
        loop: a video file starts again at its end, read at its frame rate
            (a camera made of a recording, for demos and tests).
        probe_s: how long FFmpeg studies a stream URL before the first
            frame (``analyzeduration``): 0.5 s opens an RTSP camera in about
            0.3 s instead of 1.2 s here; raise it for a source whose stream
            information arrives late (audio first, sparse key frames).
    """

    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)
    rtsp_transport: str = "tcp"
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    loop: bool = False
    probe_s: float = 0.5

    def __post_init__(self) -> None:
        if self.probe_s <= 0:
            raise ConfigError(f"probe_s must be positive (seconds), got {self.probe_s!r}")
        if self.rtsp_transport not in ("tcp", "udp"):
            raise ConfigError(f"rtsp_transport={self.rtsp_transport!r}: expected 'tcp' or 'udp'")
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ConfigError("open_timeout_s and read_timeout_s must be positive (seconds)")

    def reconnects(self, kind: str) -> bool:
        """Whether a lost source of ``kind`` is opened again."""
        return self.reconnect.enabled if self.reconnect.enabled is not None else kind != "video"


class Capture:
    """A source opened by :func:`open_capture` (or :meth:`connect`), closed by :meth:`close` (or ``with``).

    Reading: :meth:`read` gives the next frame (``None`` at the end), or
    :meth:`grab` then :meth:`retrieve` to decode only some frames. In raw
    Motion-JPEG mode (:attr:`encoded`) frames are JPEG ``bytes``; otherwise
    BGR arrays. Not thread-safe: one reader per capture; :meth:`stop` is the
    one call another thread may make (it ends a wait for a reconnection).

    A live source that ends or stalls is reconnected inside :meth:`grab`
    (see :class:`CaptureConfig`); the reader only sees a longer wait for the
    next frame. When it is given up on, reading ends and :attr:`error` says
    why.

    Attributes:
        name: the source as the user gave it (results and errors use it).
        kind: ``"camera"``, ``"stream"`` (a URL) or ``"video"`` (a file).
        health: its state and changes (:class:`~yolo_ov.io.health.Health`).
        error: why a live source was given up on, else ``None``.
        frames_read: frames read so far, across reconnections.
        frame_index: the newest frame's number in the stream: +1 per frame,
            and across a reconnection +the frames the gap would have held at
            the source's frame rate, so numbers go on (never restart) and a
            tracker fed them ages its tracks out over the outage rather
            than matching stale ones to the first frame after it.
        last_frame_time: ``time.monotonic()`` of the newest frame (strictly increasing).
    """

    def __init__(self, spec: Any, cap: cv2.VideoCapture | None = None, *, encoded: bool = False,
                 config: CaptureConfig | None = None, health: Health | None = None) -> None:
        self.spec = spec
        self.name = str(spec)
        self.kind = _kind(_target(spec))
        self.config = config or CaptureConfig()
        self.health = health or Health(self.name)
        self._cap = cap
        self._want_encoded = encoded
        self._encoded = encoded
        self.closed = False
        self.error: InputError | None = None
        self.frames_read = 0
        self.frame_index = -1
        self._gap = False
        self.last_frame_time = 0.0
        self._stop = threading.Event()
        self._next_due = 0.0

    # -- what the container says ------------------------------------------------
    @property
    def encoded(self) -> bool:
        """Frames come as JPEG bytes (raw Motion-JPEG mode), not decoded arrays."""
        return self._encoded

    @property
    def live(self) -> bool:
        """A camera or a stream URL (frames arrive in real time)."""
        return self.kind != "video"

    def _get(self, prop: int) -> float:
        return float(self._cap.get(prop)) if self._cap is not None else 0.0

    @property
    def fps(self) -> float | None:
        """Frames per second the source reports, or ``None`` when it does not say."""
        fps = self._get(cv2.CAP_PROP_FPS)
        return fps if fps and fps > 0 else None

    @property
    def frame_count(self) -> int | None:
        """Frames in a video file from its container (no decoding); ``None`` when unknown (cameras, streams)."""
        count = int(self._get(cv2.CAP_PROP_FRAME_COUNT))
        return count if count > 0 else None

    @property
    def frame_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the frames as the source reports them (``(0, 0)`` when unknown)."""
        return int(self._get(cv2.CAP_PROP_FRAME_HEIGHT)), int(self._get(cv2.CAP_PROP_FRAME_WIDTH))

    @property
    def fourcc(self) -> str:
        """The codec's four characters, upper case (``"MJPG"``, ``"H264"``, ...)."""
        return int(self._get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1").upper()

    @property
    def backend(self) -> str:
        return self._cap.getBackendName() if self._cap is not None else ""

    # -- opening -----------------------------------------------------------------
    def connect(self) -> Capture:
        """Open the source, retrying a stream URL with back-off (a camera that is still booting).

        A file or a camera index that cannot be opened raises at once (one
        line), as does a URL when reconnection is off or its attempts run out.
        """
        self.health.set("connecting", "opening")
        if self.kind == "stream":
            _quiet_opencv_reads()
        try:
            self._open()
        except InputError as exc:
            reason = str(exc).removeprefix(f"{self.name}: ")
            if self.kind != "stream" or not self.config.reconnects(self.kind) or not self._retry(reason):
                failure = self.error or exc
                self.health.set("failed", str(failure).removeprefix(f"{self.name}: "))
                raise failure from None
        return self

    def _open(self) -> None:
        cap = _open(self.spec, self.config)
        if self._cap is not None:
            self._cap.release()
        self._cap, self._encoded = cap, False
        if (self._want_encoded and self.fourcc == "MJPG" and self.backend == "FFMPEG"
                and cap.set(cv2.CAP_PROP_FORMAT, -1)):
            self._encoded = True

    def _retry(self, reason: str) -> bool:
        """Open the source again with back-off; ``False`` (and :attr:`error` set) when it is given up on."""
        policy = self.config.reconnect
        if not self.config.reconnects(self.kind):
            self.error = InputError(f"{self.name}: live source lost ({reason}); reconnection is off", self.name)
            return False
        attempt, lost_at = 0, time.monotonic()
        while not self._stop.is_set():
            attempt += 1
            if policy.max_attempts is not None and attempt > policy.max_attempts:
                self.error = InputError(f"{self.name}: live source lost ({reason}); gave up after "
                                        f"{policy.max_attempts} reconnection attempts", self.name)
                return False
            wait = policy.delay(attempt, lost_for_s=time.monotonic() - lost_at)
            self.health.set("reconnecting", f"attempt {attempt} in {wait:.1f} s: {reason}")
            if self._stop.wait(wait):
                break
            try:
                self._open()
            except InputError as exc:
                reason = str(exc).removeprefix(f"{self.name}: ")
                continue
            self.health.reconnects += 1
            self._gap = self.frames_read > 0
            return True
        return False

    # -- reading -------------------------------------------------------------------
    def grab(self) -> bool:
        """Read the next frame without decoding it; ``False`` at the end (or once closed or given up on).

        A live source that ends or stalls is reconnected here first; a
        looped file starts again; a file is paced at its frame rate when looped.
        """
        while not self.closed and not self._stop.is_set() and self._cap is not None:
            started = time.monotonic()
            if self._cap.grab():
                self._got_frame()
                return True
            if self._stop.is_set() or self.closed:
                return False
            if self.kind == "video":
                if not self.config.loop or self.frames_read == 0:
                    return False
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                if not self._cap.grab():
                    return False
                self._got_frame()
                return True
            waited = time.monotonic() - max(started, self.last_frame_time)
            reason = (f"no frame for {waited:.1f} s" if waited >= 0.9 * self.config.read_timeout_s
                      else "the stream ended")
            self.health.set("stalled", reason)
            if not self._retry(reason):
                self.health.set("failed", str(self.error).removeprefix(f"{self.name}: ") if self.error else "stopped")
                return False
        return False

    def _got_frame(self) -> None:
        if self.config.loop and self.kind == "video":
            self._pace()
        now = time.monotonic()
        step = 1
        if self._gap:  # the frames the outage would have held, at the source's rate
            step = max(1, round((now - self.last_frame_time) * (self.fps or 25.0)))
            self._gap = False
        self.frame_index += step
        self.last_frame_time = max(now, self.last_frame_time + 1e-6)
        self.frames_read += 1
        if self.health.state != "live":
            self.health.set("live", "frames arriving" if self.frames_read == 1 or not self.health.reconnects
                            else f"reconnected ({self.health.reconnects})")

    def _pace(self) -> None:
        """Hold a looped file to its frame rate, as a camera would deliver it."""
        period = 1.0 / (self.fps or 25.0)
        now = time.monotonic()
        if self._next_due > now:
            self._stop.wait(self._next_due - now)
            now = time.monotonic()
        self._next_due = max(self._next_due + period, now)

    def retrieve(self) -> np.ndarray | bytes | None:
        """The frame last grabbed: decoded BGR, or its JPEG bytes in :attr:`encoded` mode; ``None`` on failure."""
        if self.closed or self._cap is None:
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
        while self.grab():
            frame = self.retrieve()
            if frame is None:
                if self.live:
                    continue  # a damaged packet of a live stream: the next one is due
                return None
            if self._encoded and frame[:2] != _JPEG_START:  # type: ignore[index]
                self._want_encoded = False
                try:
                    self._open()
                except InputError:
                    if not self.live:
                        raise
                    self._cap.release()  # gone meanwhile: the next grab fails and reconnects it like any loss
                continue
            return frame
        return None

    def frames(self) -> Iterator[np.ndarray | bytes]:
        """Every frame to the end (see :meth:`read`); the capture is closed when the iteration ends or stops."""
        try:
            while (frame := self.read()) is not None:
                yield frame
        finally:
            self.close()

    def stop(self) -> None:
        """Make reading end soon, from any thread: a wait for a reconnection ends now (then :meth:`close`)."""
        self._stop.set()

    def close(self) -> None:
        """Release the capture (idempotent)."""
        self._stop.set()
        if not self.closed:
            self.closed = True
            if self._cap is not None:
                self._cap.release()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Capture({self.name!r}, kind={self.kind!r}, encoded={self._encoded}, state={self.health.state!r})"


#: The user's own choice of OpenCV's log level, which a live capture leaves as it is.
_OPENCV_LOG_LEVEL = "OPENCV_LOG_LEVEL"


def _quiet_opencv_reads() -> None:
    """OpenCV's warnings to errors, for the process, once a stream URL is read.

    A stream that stops sending makes OpenCV print ``[ WARN:6@550.9] global cap_ffmpeg_impl.hpp:435
    _opencv_ffmpeg_interrupt_callback Stream timeout triggered after 10052 ms`` on every timed-out read (one a
    camera every 10 s while its server is gone), beside the one ``stalled``/``reconnecting`` line its health
    already gives; opens are quieted in :func:`_opening`, reads run for hours. ``OPENCV_LOG_LEVEL=WARNING``
    (OpenCV's own variable) keeps them, to debug a camera.
    """
    if _OPENCV_LOG_LEVEL not in os.environ and cv2.utils.logging.getLogLevel() > cv2.utils.logging.LOG_LEVEL_ERROR:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


#: OpenCV reads ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` when a capture opens (not later), and it has no open
#: parameter for FFmpeg's ``rtsp_transport`` or ``analyzeduration``: the variable is set for the one open,
#: under this lock, then removed, so it is per capture. A value the user set themselves is left as it is.
_ENV_LOCK = threading.Lock()
_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


@contextmanager
def _opening(options: str | None) -> Iterator[None]:
    """FFmpeg options for one open (restored after), with OpenCV's own warnings quiet while it tries."""
    with _ENV_LOCK:
        os.environ.setdefault(*_FFMPEG_LOGLEVEL)
        before = os.environ.get(_FFMPEG_OPTIONS)
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        if options is not None and before is None:
            os.environ[_FFMPEG_OPTIONS] = options
        try:
            yield
        finally:
            cv2.utils.logging.setLogLevel(level)
            if options is not None and before is None:
                del os.environ[_FFMPEG_OPTIONS]


#: Video files OpenCV could not open, by (path, size, mtime): a run asks about a file up to three times
#: (its length, its frame rate, its frames) and FFmpeg would print its complaint ("moov atom not found")
#: each time; the answer is kept instead, so the complaint comes once before the one clear line.
_UNREADABLE: dict[tuple[str, int, int], str] = {}


def _open(spec: Any, config: CaptureConfig | None = None) -> cv2.VideoCapture:
    """A ``cv2.VideoCapture`` that is open, or the :class:`InputError` that says why not, in one line."""
    config = config or CaptureConfig()
    name = str(spec)
    target = _target(spec)
    kind = _kind(target)
    key = None
    if kind == "video":
        path = Path(name).expanduser()
        try:
            stat = path.stat()
        except OSError:
            raise InputError(f"{name}: no such video file", name) from None
        if path.is_file() and stat.st_size == 0:
            raise InputError(f"{name}: empty file (0 bytes), not a video", name)  # said as for an empty image
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key in _UNREADABLE:
            raise InputError(_UNREADABLE[key], name)
    if kind == "stream":
        options = f"analyzeduration;{int(config.probe_s * 1e6)}"
        if name.lower().startswith(("rtsp", "rtsps")):
            options += f"|rtsp_transport;{config.rtsp_transport}"
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(config.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(config.read_timeout_s * 1000)]
        with _opening(options):
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    else:
        with _opening(None):
            cap = cv2.VideoCapture(str(Path(name).expanduser()) if kind == "video" else target)
    if not cap.isOpened():
        cap.release()
        message = f"{name}: cannot open {kind} with OpenCV (check the path/URL/index and codecs)"
        if key is not None:
            if len(_UNREADABLE) > 1024:
                _UNREADABLE.clear()
            _UNREADABLE[key] = message
        raise InputError(message, name)
    return cap


def open_capture(spec: Any, *, encoded: bool = False, config: CaptureConfig | None = None,
                 health: Health | None = None) -> Capture:
    """Open a video file, a camera index (``0``, ``"0"``) or a stream URL for reading.

    Args:
        spec: a path, a camera index, or an ``rtsp://``, ``http(s)://``,
            ``rtmp://``, ``udp://``, ``tcp://`` URL.
        encoded: read a Motion-JPEG source's frames as JPEG bytes (FFmpeg's
            raw packet mode) when it can be; other sources are decoded as
            usual (check :attr:`Capture.encoded`).
        config: time-outs, RTSP transport, reconnection and looping
            (:class:`CaptureConfig`; the defaults reconnect live sources for ever).
        health: the :class:`~yolo_ov.io.health.Health` to report to (made
            here when not given; :attr:`Capture.health`).

    A stream URL that does not answer is retried with back-off before this
    returns (unless reconnection is off); a file or camera index fails at once.

    Raises:
        InputError: a missing file, or a source OpenCV cannot open; one line
            naming the source (``exc.source``).

    Example:
        >>> open_capture("missing.mp4")
        Traceback (most recent call last):
        ...
        yolo_ov.errors.InputError: missing.mp4: no such video file
    """
    return Capture(spec, encoded=encoded, config=config, health=health).connect()
