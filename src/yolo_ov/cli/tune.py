"""``yolo-ov tune``: find the fastest streams x requests x batch x precision within a time budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import ConfigError
from ..sinks import check_output_dir, check_output_file
from ._app import app, err, guarded, out
from ._options import DeviceOpt, ImgszOpt, ModelOpt, NoCacheOpt, build_runtime


@app.command()
@guarded
def tune(
    model: ModelOpt = None,
    target: Annotated[str, typer.Option(help="throughput | latency")] = "throughput",
    max_latency_ms: Annotated[
        float | None, typer.Option("--max-latency-ms", help="keep p90 latency per request within this")
    ] = None,
    device: DeviceOpt = None,
    imgsz: ImgszOpt = None,
    budget: Annotated[float, typer.Option(help="seconds of measuring, shared by the candidates")] = 60.0,
    batch: Annotated[str, typer.Option(help="batch sizes to try, e.g. 1,2")] = "1",
    precision: Annotated[bool, typer.Option(help="also try the precision hints the device offers")] = True,
    output: Annotated[Path, typer.Option("--output", "-o", help="where to save the best config")] = Path(
        "tuned.json"
    ),
    no_cache: NoCacheOpt = False,
    report: Annotated[Path | None, typer.Option("--report", help="write tune.md and tune_sweep.png here")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Sweep configurations, print them, and save the best as a config for --config."""
    from ..tune import tune as run_tune

    batches = _batches(batch)
    check_output_file(output, "the tuned config")
    if report is not None:
        check_output_dir(report, "the report")
    base = build_runtime(mode=target if target in ("throughput", "latency") else "throughput", device=device,
                         imgsz=imgsz, no_cache=no_cache)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=quiet, transient=True) as progress:
        task = progress.add_task("tune", total=None)

        def tick(i: int, n: int, label: str) -> None:
            progress.update(task, total=n, completed=i, description=f"tune: {label[:40]}")

        result = run_tune(model, base, target=target, max_latency_ms=max_latency_ms, budget_s=budget,
                          batches=tuple(batches), sweep_precision=precision, progress=tick)
    out.print("| configuration | FPS | median ms | p90 ms |", markup=False)
    out.print("|---|---|---|---|", markup=False)
    for c in result.candidates:
        if c.measurement is None:
            out.print(f"| {c.label} | failed: {c.error} | | |", markup=False, soft_wrap=True)
            continue
        m = c.measurement
        out.print(f"| {c.label} | {m.fps:.1f} | {m.latency.median_ms:.2f} | {m.latency.p90_ms:.2f} |", markup=False)
    best, base_m = result.best.measurement, result.baseline.measurement
    summary = f"best: {result.best.label}"
    if best is not None:
        summary += f": {best.fps:.1f} FPS, median {best.latency.median_ms:.2f} ms, p90 {best.latency.p90_ms:.2f} ms"
    if base_m is not None:
        summary += f" (the hint's own choice: {base_m.fps:.1f} FPS, median {base_m.latency.median_ms:.2f} ms)"
    out.print(summary, markup=False, soft_wrap=True)
    saved = result.save(output)
    err.print(f"saved: {saved} (use it with --config {saved})")
    if report:
        from ..bench import write_tune_report

        files = write_tune_report(result, report)
        err.print(f"report: {', '.join(str(f) for f in files)}")


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--batch {text!r}: expected sizes like 1,2") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--batch {text!r}: expected positive sizes like 1,2")
    return values
