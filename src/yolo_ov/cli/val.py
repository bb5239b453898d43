"""``yolo-ov val``: COCO mAP of a model on a YOLO-format dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..dataset import load_dataset
from ..validate import ValResult, describe, validate
from ._app import app, err, guarded, out
from ._options import DeviceOpt, ImgszOpt, ModelOpt, ModeOpt, NoCacheOpt, build_runtime


@app.command()
@guarded
def val(
    dataset: Annotated[Path, typer.Argument(help="YOLO dataset folder (data.yaml, images/, labels/) or its yaml")],
    model: ModelOpt = None,
    imgsz: ImgszOpt = None,
    conf: Annotated[float, typer.Option(help="minimum confidence (Ultralytics' val default)")] = 0.001,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold")] = 0.7,
    device: DeviceOpt = None,
    mode: ModeOpt = None,
    no_cache: NoCacheOpt = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the result as JSON to this file")] = None,
    per_class: Annotated[bool, typer.Option("--per-class/--no-per-class", help="print AP of each class")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """COCO mAP50-95 / mAP50 (faster-coco-eval), per-class AP and images/s of a model on a dataset."""
    runtime = build_runtime(mode=mode, device=device, imgsz=imgsz, no_cache=no_cache, default_mode="throughput")
    ds = load_dataset(dataset)
    with validation_progress(quiet) as progress:
        task = progress.add_task("val", total=len(ds))
        result = validate(model, ds, conf=conf, iou=iou, runtime=runtime,
                          progress=lambda done, total: progress.update(task, completed=done))
    if per_class:
        out.print(per_class_table(result))
    out.print(describe(result), soft_wrap=True, markup=False)
    if json_path is not None:
        write_json(json_path, result.to_dict())
        err.print(f"JSON: {json_path}", soft_wrap=True, markup=False)


def per_class_table(result: ValResult) -> Table:
    table = Table(title=f"{result.model} on {result.dataset}", title_justify="left")
    for name, justify in (("class", "left"), ("instances", "right"), ("AP50-95", "right"), ("AP50", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in result.per_class:
        table.add_row(c.name, str(c.instances), f"{c.ap50_95:.4f}", f"{c.ap50:.4f}")
    table.add_row("all", str(result.instances), f"{result.map50_95:.4f}", f"{result.map50:.4f}", style="bold")
    return table


def validation_progress(disable: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, disable=disable, transient=True,
    )


def write_json(path: Path, record: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
