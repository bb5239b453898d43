"""``yolo-ov watch cameras.yaml``: the multi-camera service, run until SIGINT/SIGTERM (or ``--duration``).

Thin: the config file is read and checked (a mistake is one line with the
file, line and field, exit 2, before a model loads), the model is loaded
once for every camera (one that cannot load is one line, exit 3), then
:class:`~yolo_ov.watch.service.WatchService` runs. SIGINT or SIGTERM drains
it (frames in flight answered, events flushed, outputs closed) and the
command exits 0: stopping the service is its normal end. A run that ends
by itself (``--duration``, or every camera ended) exits 1 when a camera was
given up on, as a failed input does in ``predict``.

With ``--port N`` the cameras page (:mod:`yolo_ov.watch.web`) is bound
before the model loads, so a busy port is one line (exit 2) at once; it
follows the service as an observer (:class:`~yolo_ov.watch.board.CameraBoard`),
prints its address (``--port 0`` picks a free port) and stops after the
service has drained, so the page shows the cameras to the end.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import DetectConfig, Precision, RuntimeConfig
from ..errors import ConfigError
from ..io.health import HealthChange
from . import _options
from ._app import EXIT_OK, EXIT_PARTIAL, app, err, esc, guarded

LEVELS = ("debug", "info", "warning", "error")


class _Say:
    """Camera health changes and output failures on stderr, one line each (an observer of the run)."""

    def on_start(self, cameras: Any) -> None:
        for cam in cameras:
            err.print(f"[green]camera:[/] {esc(cam.name)} <- {esc(cam.url)}", soft_wrap=True)  # password hidden

    def on_health(self, camera: str, change: HealthChange) -> None:
        if change.state == "connecting" and change.previous is None:
            return
        colour = {"live": "green", "failed": "red"}.get(change.state, "yellow")
        err.print(f"[{colour}]camera:[/] {esc(camera)}: {change.state} ({esc(change.reason)})", soft_wrap=True)

    def on_frame(self, *args: Any, **kwargs: Any) -> None: ...
    def on_dropped(self, *args: Any) -> None: ...
    def on_event(self, *args: Any) -> None: ...
    def on_outputs(self, *args: Any) -> None: ...
    def on_stop(self) -> None: ...


def _serve_board(host: str, port: int) -> tuple[Any, Any]:
    """The cameras page on ``host:port`` (:mod:`yolo_ov.watch.web`): ``(board, server)``; the board is an observer."""
    try:
        from ..watch.board import CameraBoard
        from ..watch.web import serve_board
    except ImportError as exc:
        raise ConfigError(f"--port {port}: the cameras page is not available in this build ({exc})") from None
    board = CameraBoard()
    server = serve_board(board, host, port)  # a port that cannot be bound: one ConfigError line
    err.print(f"[green]cameras page:[/] {server.url}/  (metrics: {server.url}/metrics)", soft_wrap=True)
    return board, server


@app.command()
@guarded
def watch(
    config_file: Annotated[Path, typer.Argument(metavar="CONFIG", help="the cameras file (cameras.yaml; see the "
                                                "docs' cameras and events page)")],
    port: Annotated[int | None, typer.Option("--port", help="serve the cameras page and per-camera metrics on "
                                             "this port")] = None,
    host: Annotated[str, typer.Option(help="address of the cameras page (with --port)")] = "127.0.0.1",
    duration: Annotated[float | None, typer.Option("--duration", help="stop (drained, exit 0) after this many "
                                                   "seconds: for demos and tests")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug | info | warning | error "
                                           "(info logs every camera change)")] = "warning",
) -> None:
    """Run the cameras of a config file on one model: tracks, zone/line events, outputs (JSONL, MQTT, webhook)."""
    from ..watch.config import load_watch_config
    from ..watch.service import WatchService

    if log_level.lower() not in LEVELS:
        raise ConfigError(f"--log-level {log_level}: expected one of {', '.join(LEVELS)}")
    if duration is not None and duration <= 0:
        raise ConfigError(f"--duration {duration}: expected a positive number of seconds")
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 0..65535")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_watch_config(config_file)
    runtime = RuntimeConfig(mode=config.mode, device=config.device,  # type: ignore[arg-type]
                            inference_precision=Precision.parse(config.precision) if config.precision else None)
    board, page = _serve_board(host, port) if port is not None else (None, None)
    try:
        with _options.open_detector(str(config.model), runtime=runtime, detect=DetectConfig()) as detector:
            service = WatchService(config, detector, observers=[_Say()] if board is None else [_Say(), board])
            started = time.monotonic()
            stopped_by = None
            try:
                service.start()
                if duration is not None:
                    service.wait(duration)
                else:
                    while not service.wait(1.0):
                        pass
            except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM as Terminated: the normal way to stop
                stopped_by = getattr(exc, "signum", None) or "SIGINT"
            finally:
                service.close()
            if service.error is not None:
                raise service.error
    finally:
        if page is not None:
            page.stop()  # after the drain: the page showed the cameras until the end
    elapsed = time.monotonic() - started
    for name, s in service.stats().items():
        err.print(f"{esc(name)}: {s.state}, {s.frames_read} frames read, {s.inferred} inferred "
                  f"({s.inferred / max(elapsed, 1e-9):.1f}/s), {s.dropped} dropped, {s.reconnects} reconnects, "
                  f"{s.events} events", soft_wrap=True)
    if service.events_dropped:
        err.print(f"[yellow]warning:[/] {service.events_dropped} events dropped (the publish queue was full)")
    if stopped_by is not None:
        err.print(f"stopped ({stopped_by if isinstance(stopped_by, str) else _signal_name(stopped_by)}), drained",
                  soft_wrap=True)
    failed = [n for n, s in service.stats().items() if s.state == "failed"]
    if failed and stopped_by is None:
        err.print(f"[red]failed:[/] {esc(', '.join(failed))} (given up on; see the camera events)", soft_wrap=True)
    raise typer.Exit(EXIT_PARTIAL if failed and stopped_by is None else EXIT_OK)


def _signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name
