"""``yolo-ov compare``: accuracy and speed of several models side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import ConfigError
from ..eval.compare import compare_models, plot_comparison, table_rows
from ..eval.evaluate import PROTOCOLS
from ..io.sinks import check_output_file
from ._app import app, err, guarded, out
from ._options import DeviceOpt, ImgszOpt, ModeOpt, NoCacheOpt, build_runtime
from .val import validation_progress, write_json


@app.command()
@guarded
def compare(
    models: Annotated[list[Path], typer.Argument(help="OpenVINO folders, .xml or .onnx files (e.g. FP32, FP16, INT8)")],
    data: Annotated[Path, typer.Option(
        "--data", help="YOLO dataset folder to validate every model on (class folders for classifiers)")],
    imgsz: ImgszOpt = None,
    conf: Annotated[float, typer.Option(help="minimum confidence")] = 0.001,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold")] = 0.7,
    device: DeviceOpt = None,
    mode: ModeOpt = None,
    no_cache: NoCacheOpt = False,
    protocol: Annotated[str, typer.Option(help="coco (default) or ultralytics: see yolo-ov val")] = "coco",
    plot: Annotated[Path, typer.Option("--plot", help="PNG chart of mAP50-95 vs images/s")] = Path("compare.png"),
    json_path: Annotated[Path | None, typer.Option("--json", help="write all results as JSON")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Validate several models on one dataset in one run: a table and a PNG chart (mAP vs images/s)."""
    runtime = build_runtime(mode=mode, device=device, imgsz=imgsz, no_cache=no_cache, default_mode="throughput")
    check_output_file(plot, "the chart")
    if json_path is not None:
        check_output_file(json_path, "the JSON results")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r} is not one of: {', '.join(PROTOCOLS)}")
    with validation_progress(quiet) as progress:
        task = progress.add_task("", total=None)

        def on_model(i: int, label: str) -> None:
            progress.reset(task, total=None, description=f"[{i + 1}/{len(models)}] {label}")

        rows = compare_models(models, data, conf=conf, iou=iou, protocol=protocol, runtime=runtime,
                              on_model=on_model,
                              progress=lambda done, total: progress.update(task, completed=done, total=total))
    header, *body = table_rows(rows)
    images = rows[0].result.images if rows else 0
    table = Table(title=f"{images} images of {data} ({runtime.mode.value}, {runtime.device}, {protocol} AP)",
                  title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right")
    for r in body:
        table.add_row(*r)
    out.print(table)
    chart = plot_comparison(rows, plot, title=f"{data.name}: accuracy vs speed")
    err.print(f"chart: {chart}", soft_wrap=True, markup=False)
    if json_path is not None:
        write_json(json_path, [row.to_dict() for row in rows])
        err.print(f"JSON: {json_path}", soft_wrap=True, markup=False)
