"""``yolo-ov tune``: find the fastest model x precision x streams x requests x batch within a time budget
(and, with ``--data``, within ``--max-drop`` mAP50-95 of the most accurate variant)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import ConfigError
from ..io.sinks import check_output_dir, check_output_file
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
    models: Annotated[str | None, typer.Option(
        "--models", help="compare model variants, e.g. yolov8n_openvino_model,yolov8n_int8_openvino_model "
        "(instead of --model; needs --data)")] = None,
    data: Annotated[Path | None, typer.Option(
        help="labelled YOLO dataset: each model and precision is validated, and only those within --max-drop "
        "mAP50-95 of the most accurate compete")] = None,
    max_drop: Annotated[float | None, typer.Option(
        "--max-drop", help="largest mAP50-95 loss accepted vs the most accurate variant (default 0.01 with --data)")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="where to save the best config")] = Path(
        "tuned.json"
    ),
    no_cache: NoCacheOpt = False,
    report: Annotated[Path | None, typer.Option("--report", help="write tune.md and tune_sweep.png here")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Sweep configurations, print them, and save the best as a config for --config."""
    from ..bench.tune import tune as run_tune

    batches = _batches(batch)
    variants = _models(models, model)
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

        if data is not None:
            progress.update(task, description="tune: validating each model and precision on the dataset")
        result = run_tune(model, base, target=target, max_latency_ms=max_latency_ms, budget_s=budget,
                          batches=tuple(batches), sweep_precision=precision, progress=tick, models=variants,
                          data=data, max_drop=max_drop)
    if result.accuracy:
        out.print("| model | precision | mAP50-95 | mAP50 |", markup=False)
        out.print("|---|---|---|---|", markup=False)
        for a in result.accuracy:
            out.print(f"| {a.model} | {a.precision} | {a.map50_95:.4f} | {a.map50:.4f} |", markup=False, soft_wrap=True)
        floor = max(a.map50_95 for a in result.accuracy) - (result.max_drop or 0.0)
        out.print(f"competing: mAP50-95 >= {floor:.4f} (the most accurate minus --max-drop {result.max_drop:g})",
                  markup=False)
    acc = bool(result.accuracy)
    out.print("| configuration | FPS | median ms | p90 ms |" + (" mAP50-95 |" if acc else ""), markup=False)
    out.print("|---|---|---|---|" + ("---|" if acc else ""), markup=False)
    for c in result.candidates:
        tail = (f" {c.map50_95:.4f} |" if c.map50_95 is not None else " |") if acc else ""
        if c.measurement is None:
            out.print(f"| {c.label} | failed: {c.error} | | |{tail}", markup=False, soft_wrap=True)
            continue
        m = c.measurement
        out.print(f"| {c.label} | {m.fps:.1f} | {m.latency.median_ms:.2f} | {m.latency.p90_ms:.2f} |{tail}",
                  markup=False, soft_wrap=True)
    best, base_m = result.best.measurement, result.baseline.measurement
    summary = f"best: {result.best.label}"
    if variants and len(variants) > 1:
        summary += f" (model {result.best.model})"
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


def _models(text: str | None, model: str | None) -> list[str] | None:
    if text is None:
        return None
    if model is not None:
        raise ConfigError("give either --model or --models (a comma-separated list), not both")
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise ConfigError(f"--models {text!r}: expected model paths separated by commas")
    return names


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--batch {text!r}: expected sizes like 1,2") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--batch {text!r}: expected positive sizes like 1,2")
    return values
