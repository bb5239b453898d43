"""The cameras page, the cameras' MJPEG streams and their Prometheus metrics, over HTTP.

``yolo-ov watch cameras.yaml --port N`` serves a :class:`~yolo_ov.watch.board.CameraBoard`
with :func:`serve_board` (uvicorn in a background thread, stopped when the
service drains). The routes:

=======================================  ==========================================================
``GET /`` (and ``/cameras``)             the cameras page: every camera's live image, state, fps,
                                         latency, counts and last events (``/static/...`` its files)
``GET /cameras.json``                    the figures the page polls (:meth:`CameraBoard.status`)
``GET /cameras/{name}/stream.mjpg``      the annotated stream, ``multipart/x-mixed-replace``
``GET /cameras/{name}/snapshot.jpg``     the newest annotated frame
``GET /metrics``                         Prometheus: per camera and per output
``GET /healthz``                         the server is up (and the cameras' states)
=======================================  ==========================================================

A stream is an async generator on the server's one event loop, not a
thread per viewer: it sends the newest frame when one arrives (woken by the
board, no polling; a part is followed by the same frame once more, marked
``X-Frame-Repeat: 1``, when no new one comes within 0.25 s, since Chromium
shows a part only when the next one starts) and skips those that came while it was still sending,
so a slow viewer sees fewer frames and never slows inference. The JPEG is
encoded in a worker thread at most once per new frame and camera, shared
by every viewer (:meth:`CameraBoard.jpeg`); viewers are bounded
(``max_viewers``, a 503 beyond it).

Browsers open at most six HTTP/1.1 connections to one server, and each
MJPEG ``<img>`` holds one, so the page streams up to four cameras and shows
the others (or all, with ``?mode=snapshot``) as snapshots refreshed on each
new frame.

The metrics live in a registry of their own (one per app, read from the
board at scrape time), never the process's global one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingExtraError
from ..io.health import HEALTH_STATES
from .board import CameraBoard, UnknownCameraError

try:  # the serve extra; a clear line naming it when missing (the watch service imports this only for --port)
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError as _exc:  # pragma: no cover - the suite runs with the extra
    raise MissingExtraError(_exc.name or "fastapi", "serve", "the cameras page (yolo-ov watch --port)") from None

__all__ = ["BoardServer", "create_board_app", "serve_board"]

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("yolo_ov.watch") / "static"))
BOUNDARY = "frame"
_DELIMITER = f"\r\n--{BOUNDARY}\r\n".encode("ascii")


class _Viewers:
    """Wakes the streams of a camera when the board has a new frame; counts viewers. Lives on the event loop."""

    def __init__(self, board: CameraBoard, max_viewers: int) -> None:
        self.board = board
        self.max_viewers = max_viewers
        self.per_camera: dict[str, int] = {}
        self.total = 0
        self.closing = False
        self._events: dict[str, asyncio.Event] = {}
        self._encoding: dict[str, asyncio.Future[tuple[int, bytes] | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Any = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self.board.subscribe(self._on_frame)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.close()

    def close(self) -> None:
        """End every stream (on the loop): they see ``closing`` when woken."""
        self.closing = True
        for name in list(self._events):
            self.wake(name)

    def _on_frame(self, camera: str) -> None:
        """The board's listener, on the service's thread: hand the wake-up to the loop, only if someone watches."""
        loop = self._loop
        if loop is None or not self.per_camera.get(camera):
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self.wake, camera)

    def wake(self, camera: str) -> None:
        event = self._events.pop(camera, None)
        if event is not None:
            event.set()

    def event(self, camera: str) -> asyncio.Event:
        event = self._events.get(camera)
        if event is None:
            event = self._events[camera] = asyncio.Event()
        return event

    async def jpeg(self, camera: str) -> tuple[int, bytes] | None:
        """The newest frame's JPEG: cached, or encoded once in a worker thread for every viewer waiting on it."""
        hit = self.board.cached_jpeg(camera)
        if hit is not None:
            return hit
        pending = self._encoding.get(camera)
        if pending is None or pending.done():
            pending = self._encoding[camera] = asyncio.ensure_future(asyncio.to_thread(self.board.jpeg, camera))
        return await asyncio.shield(pending)


def create_board_app(board: CameraBoard, *, max_viewers: int = 32, idle_s: float = 1.0) -> FastAPI:
    """The cameras page's ASGI app for ``board`` (see the module docstring for its routes).

    Args:
        board: the board the watch service feeds.
        max_viewers: open MJPEG streams at once, all cameras together; one more is refused with 503.
        idle_s: how often a stream with no new frame checks that its viewer is still there.

    Example:
        >>> from fastapi.testclient import TestClient
        >>> board = CameraBoard()
        >>> with TestClient(create_board_app(board)) as client:
        ...     client.get("/cameras/nope/snapshot.jpg").json()
        {'error': "no camera named 'nope'; cameras: (none yet)"}
    """
    if max_viewers < 1:
        raise ConfigError(f"max_viewers must be >= 1, got {max_viewers}")

    viewers = _Viewers(board, max_viewers)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_BoardCollector(board))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        viewers.start()
        try:
            yield
        finally:
            viewers.stop()

    app = FastAPI(title="yolo-ov watch", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.board = board
    app.state.viewers = viewers
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def not_found(exc: UnknownCameraError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(UnknownCameraError)
    async def _unknown(request: Request, exc: UnknownCameraError) -> JSONResponse:
        return not_found(exc)

    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/cameras", page, methods=["GET"], include_in_schema=False)

    @app.get("/cameras.json")
    async def cameras_json() -> JSONResponse:
        return JSONResponse(board.status(), headers={"Cache-Control": "no-store"})

    @app.get("/cameras/{name}/snapshot.jpg")
    async def snapshot(name: str) -> Response:
        board.frame_seq(name)  # unknown camera -> 404
        part = await viewers.jpeg(name)
        if part is None:
            return JSONResponse({"error": f"camera {name!r} has no frame yet; retry in a moment"}, status_code=503,
                                headers={"Retry-After": "1"})
        return Response(part[1], media_type="image/jpeg",
                        headers={"Cache-Control": "no-store", "X-Frame-Seq": str(part[0])})

    @app.get("/cameras/{name}/stream.mjpg")
    async def stream(name: str, request: Request) -> Response:
        board.frame_seq(name)  # unknown camera -> 404
        if viewers.total >= viewers.max_viewers:
            return JSONResponse({"error": f"too many viewers ({viewers.max_viewers} streams open); close one, or "
                                          "use snapshot.jpg"}, status_code=503, headers={"Retry-After": "5"})
        return StreamingResponse(
            _mjpeg(viewers, name, request, idle_s),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-cache, no-store", "Pragma": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        cams = board.status()["cameras"]
        states: dict[str, int] = {}
        for cam in cams:
            states[cam["state"]] = states.get(cam["state"], 0) + 1
        return JSONResponse({"status": "ok", "cameras": len(cams), "states": states, "viewers": viewers.total})

    return app


def _part(seq: int, jpeg: bytes, *, repeat: bool = False) -> bytes:
    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\nX-Frame-Seq: {seq}\r\n"
    if repeat:
        head += "X-Frame-Repeat: 1\r\n"
    return (head + "\r\n").encode("ascii") + jpeg + _DELIMITER


async def _mjpeg(viewers: _Viewers, name: str, request: Request, idle_s: float,
                 settle_s: float = 0.25) -> AsyncIterator[bytes]:
    """One viewer's stream: the newest frame each time there is a new one; ends on hang-up or server stop.

    Chromium shows a part only when the *next* part's headers arrive, so when
    no new frame follows within ``settle_s`` (a stalled camera, a slow one)
    the last part is sent once more, marked ``X-Frame-Repeat: 1``: the viewer
    then shows the newest frame instead of the one before it.
    """
    last, repeated = 0, True
    # Counted here, not in the route: a generator never started (the client left first) never runs its finally.
    viewers.total += 1
    viewers.per_camera[name] = viewers.per_camera.get(name, 0) + 1
    try:
        yield _DELIMITER[2:]  # the first part's opening boundary; each part then ends with the next one's
        while not viewers.closing:
            woken = viewers.event(name)  # taken before the check, so a frame arriving in between still wakes us
            if viewers.board.frame_seq(name) != last:
                part = await viewers.jpeg(name)
                if part is not None and part[0] != last:
                    last, repeated = part[0], False
                    yield _part(*part)
                    continue
            try:
                await asyncio.wait_for(woken.wait(), idle_s if repeated else settle_s)
            except asyncio.TimeoutError:
                if not repeated:
                    part = await viewers.jpeg(name)
                    repeated = True
                    if part is not None and part[0] == last:
                        yield _part(*part, repeat=True)
                    continue
                if await request.is_disconnected():
                    return
    finally:
        viewers.total -= 1
        viewers.per_camera[name] -= 1


class _BoardCollector:
    """Prometheus metric families read from the board at each scrape (nothing counted twice)."""

    def __init__(self, board: CameraBoard) -> None:
        self.board = board

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        status = self.board.status()
        frames = CounterMetricFamily("yolo_ov_camera_frames", "Frames of each camera: read from it, inferred, "
                                     "dropped by the newest-frame policy", labels=["camera", "kind"])
        reconnects = CounterMetricFamily("yolo_ov_camera_reconnects", "Successful reconnections of each camera",
                                         labels=["camera"])
        state = GaugeMetricFamily("yolo_ov_camera_state", "Each camera's health state (1 for the current one)",
                                  labels=["camera", "state"])
        latency = GaugeMetricFamily("yolo_ov_camera_latency_seconds", "Newest-frame latency: capture to result, "
                                    "of the camera's last inferred frame", labels=["camera"])
        fps = GaugeMetricFamily("yolo_ov_camera_fps", "Frames inferred per second over the last window",
                                labels=["camera"])
        events = CounterMetricFamily("yolo_ov_events", "Events published, by camera and type",
                                     labels=["camera", "type"])
        for cam in status["cameras"]:
            name = cam["name"]
            for kind in ("read", "inferred", "dropped"):
                frames.add_metric([name, kind], cam["frames"][kind])
            reconnects.add_metric([name], cam["reconnects"])
            for s in HEALTH_STATES:
                state.add_metric([name, s], 1.0 if cam["state"] == s else 0.0)
            if cam["latency_s"] is not None:
                latency.add_metric([name], cam["latency_s"])
            fps.add_metric([name], cam["fps"])
            for kind, n in sorted(cam["events"].items()):
                events.add_metric([name, kind], n)
        depth = GaugeMetricFamily("yolo_ov_output_queue_depth", "Events waiting in each output's queue",
                                  labels=["output"])
        dropped = CounterMetricFamily("yolo_ov_output_dropped", "Events an output dropped (its queue was full)",
                                      labels=["output"])
        sent = CounterMetricFamily("yolo_ov_output_sent", "Events an output delivered", labels=["output"])
        retries = CounterMetricFamily("yolo_ov_output_retries", "Deliveries an output retried", labels=["output"])
        connected = GaugeMetricFamily("yolo_ov_output_connected", "1 while the output reaches its destination",
                                      labels=["output"])
        for out, c in sorted(status["outputs"].items()):
            depth.add_metric([out], c.get("queued", 0))
            dropped.add_metric([out], c.get("dropped", 0))
            sent.add_metric([out], c.get("sent", 0))
            retries.add_metric([out], c.get("retries", 0))
            if "connected" in c:
                connected.add_metric([out], c["connected"])
        yield from (frames, reconnects, state, latency, fps, events, depth, dropped, sent, retries, connected)


@dataclass
class BoardServer:
    """A running cameras page (from :func:`serve_board`): its address, and :meth:`stop`."""

    host: str
    port: int
    server: Any
    thread: threading.Thread
    sock: socket.socket

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the streams, stop uvicorn and wait for its thread (idempotent)."""
        app = self.server.config.app
        loop = getattr(self.server, "yolo_ov_loop", None)
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(app.state.viewers.close)
        self.server.should_exit = True
        self.thread.join(timeout_s)
        self.sock.close()

    def __enter__(self) -> BoardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_board(board: CameraBoard, host: str = "127.0.0.1", port: int = 0, *, max_viewers: int = 32,
                log_level: str = "warning", start_timeout_s: float = 30.0) -> BoardServer:
    """Serve ``board``'s page, streams and metrics on ``host:port`` from a background thread.

    ``port=0`` picks a free port; the returned :class:`BoardServer` says which
    (``.port``, ``.url``) and stops it (``.stop()``, also on leaving a ``with``).
    A port that cannot be bound is one :class:`~yolo_ov.errors.ConfigError` line.

    Example:
        >>> board = CameraBoard()
        >>> with serve_board(board) as page:
        ...     page.url.startswith("http://127.0.0.1:")
        True
    """
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - the suite runs with the extra
        raise MissingExtraError("uvicorn", "serve", "the cameras page (yolo-ov watch --port)") from None

    app = create_board_app(board, max_viewers=max_viewers)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"the cameras page cannot listen on {host}:{port}: {exc.strerror or exc}; "
                          "pick another --port (0 picks a free one)") from None
    bound = sock.getsockname()[1]
    # In a thread, uvicorn installs no signal handlers: SIGINT/SIGTERM stay the watch service's, which drains
    # and then calls stop().
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=2, server_header=False)
    server = uvicorn.Server(config)

    def run() -> None:
        async def main() -> None:
            server.yolo_ov_loop = asyncio.get_running_loop()  # type: ignore[attr-defined]
            await server.serve(sockets=[sock])
        asyncio.run(main())

    thread = threading.Thread(target=run, name=f"yolo-ov-board:{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise ConfigError(f"the cameras page did not start on {host}:{bound}")
        time.sleep(0.01)
    log.info("cameras page on http://%s:%d", host, bound)
    return BoardServer(host, bound, server, thread, sock)
