"""``yolo-ov bench``: latency and throughput, model only and end to end, cold and cached start."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import Mode
from ..errors import ConfigError
from ..io.sinks import check_output_dir, check_output_file
from ._app import app, err, guarded, out
from ._options import ConfigOpt, DeviceOpt, ImgszOpt, ModelOpt, NoCacheOpt, NoMmapOpt, build_runtime, tuned_model
from .val import write_json


@app.command()
@guarded
def bench(
    model: ModelOpt = None,
    mode: Annotated[str, typer.Option(help="latency | throughput | cumulative_throughput | all")] = "all",
    device: DeviceOpt = None,
    source: Annotated[str, typer.Option(help="image folder, video file, or 'synthetic'")] = "synthetic",
    duration: Annotated[float, typer.Option(help="seconds per measurement (warm-up excluded)")] = 10.0,
    imgsz: ImgszOpt = None,
    streams: Annotated[int | None, typer.Option(help="force the number of streams")] = None,
    requests: Annotated[int | None, typer.Option(help="requests in flight (throughput modes)")] = None,
    batch: Annotated[int | None, typer.Option(help="model batch size (the model is reshaped)")] = None,
    config: ConfigOpt = None,
    no_cache: NoCacheOpt = False,
    no_mmap: NoMmapOpt = False,
    startup: Annotated[bool, typer.Option(help="measure cold vs cached start in fresh processes")] = True,
    sweep: Annotated[bool, typer.Option(help="model-only FPS vs requests in flight")] = True,
    specialize: Annotated[
        bool, typer.Option(help="end-to-end throughput with shape specialisation, as predict runs it")
    ] = False,
    as_json: Annotated[Path | None, typer.Option("--json", help="write every figure to this JSON file")] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="write bench.md, bench.json and PNG plots here")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Measure each mode like benchmark_app (model only) and end to end; print what OpenVINO chose."""
    from ..bench import markdown_summary, run_bench, write_report

    modes = _modes(mode)
    if as_json is not None:
        check_output_file(as_json, "the JSON figures")
    if report is not None:
        check_output_dir(report, "the report")
    runtime = build_runtime(mode=modes[0].value, device=device, imgsz=imgsz, config=config, no_cache=no_cache,
                            no_mmap=no_mmap, num_streams=streams, num_requests=requests, batch=batch)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err,
                  disable=quiet, transient=True) as progress:
        tasks: dict[str, object] = {}

        def tick(label: str, fraction: float) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(f"{label:<34}", total=1.0)
            progress.update(tasks[label], completed=fraction)  # type: ignore[arg-type]

        result = run_bench(tuned_model(model, config), runtime, modes=modes, source=source, duration_s=duration,
                           startup=startup, sweep_requests=sweep, specialize=specialize, progress=tick)
    out.print(markdown_summary(result), markup=False, soft_wrap=True)
    if as_json:
        write_json(as_json, result.to_dict())
        err.print(f"JSON: {as_json}")
    if report:
        files = write_report(result, report)
        err.print(f"report: {', '.join(str(f) for f in files)}")


def _modes(text: str) -> list[Mode]:
    if text.strip().lower() == "all":
        return [Mode.LATENCY, Mode.THROUGHPUT, Mode.CUMULATIVE_THROUGHPUT]
    modes = [Mode.parse(t) for t in text.split(",") if t.strip()]
    if not modes:
        raise ConfigError("--mode: name at least one mode or 'all'")
    return modes
