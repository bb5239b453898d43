"""``--ray [ADDRESS]`` for ``yolo-ov predict`` and ``yolo-ov serve``: the same commands on a Ray cluster.

Thin, like every command: options become :class:`~yolo_ov.ray.BatchConfig` /
:class:`~yolo_ov.ray.Scaling` and the work is :func:`yolo_ov.ray.predict_dataset`
or :func:`yolo_ov.ray.run`. ``--ray`` alone means "no address": Ray already
running here, else ``RAY_ADDRESS``, else a local cluster on this machine.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..config import DetectConfig, Mode, RuntimeConfig
from ..errors import ConfigError
from ..io.signals import terminate_as_interrupt
from ._app import EXIT_OK, EXIT_PARTIAL, err

__all__ = ["RAY_OPTION", "optional_value_args", "plain_ray_logs", "predict_on_ray", "ray_address", "serve_on_ray"]

RAY_OPTION = "--ray"
RAY_HELP = ("run on a Ray cluster: --ray alone starts a local one (or joins RAY_ADDRESS), --ray ADDRESS joins "
            "host:port, 'auto' or ray://host:port (needs the ray extra)")


def optional_value_args(argv: Sequence[str], options: Sequence[str] = (RAY_OPTION,)) -> list[str]:
    """Let ``--ray`` be given without a value: a bare ``--ray`` (last, or before another option) becomes ``--ray=``.

    Typer options always take a value; this keeps ``yolo-ov predict images/ --ray``
    and ``yolo-ov serve -m M --ray --replicas 2`` working as written.
    """
    args = list(argv)
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg in options and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(arg + "=")
        else:
            out.append(arg)
    return out


def plain_ray_logs(stream: TextIO | None = None) -> bool:
    """No colour codes in the lines Ray prints here when ``stream`` (stderr) is not a terminal; ``True`` if turned off.

    Ray's driver wraps the messages it relays (``(raylet)`` warnings, worker
    logs) in ANSI colour codes whatever it writes to; in a log file or a
    pipe they arrive as raw ``ESC[33m`` noise. Ray reads ``RAY_COLOR_PREFIX``
    at each print: ``0`` drops the codes. It is set only when nobody chose a
    value, and also under ``NO_COLOR`` (https://no-color.org). Call it
    before Ray starts.
    """
    stream = sys.stderr if stream is None else stream
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if "RAY_COLOR_PREFIX" in os.environ or (tty and not os.environ.get("NO_COLOR")):
        return False
    os.environ["RAY_COLOR_PREFIX"] = "0"
    return True


def ray_address(value: str) -> str | None:
    """The ``--ray`` value as an address (``None``: no address); a path given by mistake is a usage error."""
    text = value.strip()
    if not text:
        return None
    if Path(text).expanduser().exists() and ":" not in text and text not in ("auto", "local"):
        raise ConfigError(f"--ray {text}: that is a file or folder, not a cluster address; put --ray after the "
                          "inputs (yolo-ov predict images/ --ray) or write --ray=ADDRESS")
    return text


def predict_on_ray(
    *,
    sources: list[str],
    model: Any,
    address: str | None,
    runtime: RuntimeConfig,
    detect: DetectConfig,
    classes: tuple[int | str, ...] | None,
    specialize: bool | None,
    save_json: Path | None,
    save_parquet: str | None,
    actors: int | None,
    unsupported: dict[str, Any],
    quiet: bool,
    slicing: Any = None,
) -> int:
    """``yolo-ov predict SOURCES --ray``: returns the exit code (1 when an input failed)."""
    import dataclasses

    from ._options import resolve_classes

    given = [name for name, value in unsupported.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)}: not available with --ray (the driver writes the records); "
                          "use --save-json FILE or --save-parquet DIR")
    from ..ray import BatchConfig, connect, driver_model, predict_dataset, require_extra

    require_extra("yolo-ov predict --ray")
    path, info = driver_model(model)  # a bad model fails here, before Ray starts
    if slicing is not None and info.task == "classify":
        from ..pipeline.slicing import NO_BOXES

        raise ConfigError(NO_BOXES)
    if classes is not None:
        detect = dataclasses.replace(detect, classes=resolve_classes(classes, info.names))
    if runtime.mode is Mode.LATENCY:
        err.print("note: --mode latency gives each actor one stream; throughput keeps every core busy",
                  soft_wrap=True)
    plain_ray_logs()
    connect(address)
    progress = _Progress(quiet)
    try:
        with terminate_as_interrupt():  # again: ray.init installed its own SIGTERM handler, which just exits
            result = predict_dataset(
                sources, path, runtime=runtime, detect=detect, config=BatchConfig(concurrency=actors),
                specialize=specialize, save_json=save_json, save_parquet=save_parquet, on_record=progress.record,
                slicing=slicing,
            )
    finally:
        progress.close()
    noun = "records"
    failed = f", {result.failed} failed" if result.failed else ""
    done = result.records - result.failed
    written = f"; JSONL: {save_json} ({result.records} lines)" if save_json else ""
    written += f"; Parquet: {save_parquet}" if save_parquet else ""
    again = f", {result.duplicates} duplicates dropped" if result.duplicates else ""
    err.print(f"{done} {noun}{failed} from {result.inputs} inputs, {result.detections} detections, "
              f"{result.per_second:.1f} {noun}/s ({result.steady_per_second:.1f}/s after a {result.startup_s:.1f} s "
              f"start; Ray: {result.actors} actor(s) on "
              f"{result.nodes} node(s), {runtime.mode.value}, {runtime.device}{again}){written}",
              soft_wrap=True, markup=False)
    return EXIT_PARTIAL if result.failed else EXIT_OK


class _Progress:
    """A count and a rate on stderr while records come back (no total: videos add frames)."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        self.count = 0
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.bar = Progress(TextColumn("predict on Ray: {task.completed} records, {task.fields[rate]:.1f}/s"),
                            TimeElapsedColumn(), console=err, disable=quiet, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("ray", total=None, rate=0.0)

    def record(self, record: dict[str, Any]) -> None:
        self.count += 1
        if "error" in record:
            from rich.markup import escape

            self.bar.console.print(f"[yellow]skipped:[/] {escape(str(record['error']))}", soft_wrap=True)
        now = time.perf_counter()
        if now - self.last > 0.25:
            self.last = now
            self.bar.update(self.task, completed=self.count, rate=self.count / (now - self.t0))

    def close(self) -> None:
        self.bar.stop()


def serve_on_ray(settings: Any, *, address: str | None, replicas: int, min_replicas: int | None,
                 max_replicas: int | None, target_ongoing_requests: float, say: Any) -> None:
    """``yolo-ov serve --ray``: deploy, print the URL, wait for Ctrl-C/SIGTERM, drain, stop."""
    from ..ray import Scaling, require_extra

    require_extra("yolo-ov serve --ray", serve=True)
    scaling = Scaling(replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
                      target_ongoing_requests=target_ongoing_requests)
    from ..ray import connect, run, shutdown

    names = ", ".join(m.name for m in settings.models)
    count = (f"{scaling.min_replicas or 1}-{scaling.max_replicas} replicas (autoscaling)" if scaling.autoscaling
             else f"{scaling.replicas} replica(s)")
    say(f"deploying {names} on Ray Serve, {count} ({settings.runtime.mode.value}, {settings.runtime.device}) ...")
    deployed = False
    plain_ray_logs()
    started = connect(address)
    try:
        url = run(settings, scaling=scaling)
        deployed = True
        say(f"serving on {url} (Ray Serve, {count}; KServe v2 at /v2, metrics at /metrics per replica); "
            "Ctrl-C or SIGTERM drains and stops")
        with terminate_as_interrupt():  # again: ray.init installed its own SIGTERM handler, which just exits
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated)
        if not deployed:
            raise
        say("stopping: replicas finish their requests in flight, then Ray Serve stops")
    finally:
        if deployed:
            shutdown(stop_serve=started)
    say("stopped")
