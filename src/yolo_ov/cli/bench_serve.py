"""``yolo-ov bench-serve URL``: a perf_analyzer-style load sweep of a running KServe v2 server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from ..io.sinks import check_output_file
from ._app import app, err, esc, guarded, out
from .val import write_json

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@app.command("bench-serve")
@guarded
def bench_serve(
    url: Annotated[str, typer.Argument(help="the server: HOST:PORT (or http://HOST:PORT) of the protocol measured")],
    model: Annotated[str, typer.Option("--model", help="model name, as the server lists it")],
    images: Annotated[list[Path], typer.Option("--images", help="JPEG files or folders (repeatable); sent as BYTES, "
                                                               "one image per request, in turn")],
    protocol: Annotated[str, typer.Option(help="http | grpc | both (both needs --grpc-url)")] = "http",
    grpc_url: Annotated[str | None, typer.Option("--grpc-url", help="HOST:PORT of gRPC for --protocol both")] = None,
    model_version: Annotated[str, typer.Option("--model-version", help="version to ask for ('' = default)")] = "",
    concurrency: Annotated[str, typer.Option(help="closed-loop steps: requests always outstanding")] = "1,2,4,8,16",
    request_rate: Annotated[str | None, typer.Option(
        "--request-rate", help="open-loop steps instead: requests per second (e.g. 20,40)")] = None,
    distribution: Annotated[str, typer.Option("--request-distribution", help="constant | poisson")] = "constant",
    window_ms: Annotated[float, typer.Option("--window-ms", help="measurement window")] = 2000.0,
    stability: Annotated[str, typer.Option(help="stable when the last 3 windows' throughput and p99 are within "
                                                "this of their average (10% or 0.1)")] = "10%",
    max_windows: Annotated[int, typer.Option("--max-windows", help="windows per step at most")] = 10,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="client time-out per request")] = 60.0,
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="environment variable holding the server's API key")] = None,
    as_json: Annotated[Path | None, typer.Option("--json", help="write every step to this JSON file")] = None,
    as_csv: Annotated[Path | None, typer.Option("--csv", help="perf_analyzer's -f CSV columns")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="latency vs throughput PNG (needs matplotlib)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines")] = False,
) -> None:
    """Load a running server as perf_analyzer does: each step until stable; throughput, p50-p99, server time."""
    from rich.table import Table

    from ..bench.serve_report import HEADERS, table_rows, write_csv, write_plot
    from ..bench.serve_sweep import SweepConfig, run_sweep

    protocols = _protocols(protocol, grpc_url)
    payloads = _read_images(images)
    for path, what in ((as_json, "the JSON figures"), (as_csv, "the CSV"), (plot, "the plot")):
        if path is not None:
            check_output_file(path, what)
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigError(f"--api-key-env {api_key_env}: that environment variable is not set or empty")
    rates = _numbers(request_rate, "--request-rate", float) if request_rate else ()
    steps = _numbers(concurrency, "--concurrency", int)
    reports = []
    for name in protocols:
        config = SweepConfig(url=grpc_url if name == "grpc" and grpc_url else url, model=model, protocol=name,
                             model_version=model_version, concurrency=tuple(steps), request_rates=tuple(rates),
                             distribution=distribution, window_ms=window_ms, stability=_fraction(stability),
                             max_windows=max_windows, timeout_s=timeout_s, api_key=api_key)
        reports.append(run_sweep(config, payloads, progress=None if quiet else _progress))
    all_steps = [s for r in reports for s in r.steps]
    table = Table(title=f"{model}: {len(payloads)} images, windows of {window_ms:g} ms")
    for header in HEADERS:
        table.add_column(header, overflow="fold")  # a narrow terminal folds figures, never cuts them
    for row in table_rows(all_steps):
        table.add_row(*row)
    out.print(table)
    if as_json is not None:
        write_json(as_json, {"sweeps": [r.to_dict() for r in reports]})
        err.print(f"JSON: {esc(str(as_json))}")
    if as_csv is not None:
        write_csv(as_csv, all_steps)
        err.print(f"CSV: {esc(str(as_csv))}")
    if plot is not None:
        write_plot(plot, all_steps, title=f"{model}: latency vs throughput")
        err.print(f"plot: {esc(str(plot))}")


def _progress(line: str) -> None:
    err.print(line, markup=False, highlight=False, soft_wrap=True)


def _protocols(protocol: str, grpc_url: str | None) -> list[str]:
    choice = protocol.strip().lower()
    if choice == "both":
        if not grpc_url:
            raise ConfigError("--protocol both: give gRPC's address as --grpc-url HOST:PORT (URL is REST's)")
        return ["http", "grpc"]
    if choice not in ("http", "grpc"):
        raise ConfigError(f"--protocol must be http, grpc or both, got {protocol!r}")
    return [choice]


def _numbers(text: str, flag: str, kind: type) -> list:
    try:
        values = [kind(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated numbers such as 1,2,4, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag}: give at least one value")
    return values


def _fraction(text: str) -> float:
    t = text.strip()
    try:
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ConfigError(f"--stability: expected a percentage such as 10% (or 0.1), got {text!r}") from None


def _read_images(paths: list[Path]) -> list[bytes]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise ConfigError(f"--images {p}: the folder holds no image file ({', '.join(_IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"--images {p}: no such file or folder")
    try:
        return [f.read_bytes() for f in files]
    except OSError as exc:
        raise ConfigError(f"--images {exc.filename}: cannot read it ({exc.strerror})") from None
