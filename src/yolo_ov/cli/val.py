"""``yolo-ov val``: accuracy of a model on a labelled dataset, for its task, under either protocol."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import ConfigError, OutputError
from ..eval.validate import PROTOCOLS, ValResult, describe, validate
from ..io.sinks import check_output_file
from ._app import app, err, guarded, out
from ._options import (
    DeviceOpt,
    FullPassOpt,
    ImgszOpt,
    ModelOpt,
    ModeOpt,
    NoCacheOpt,
    OverlapOpt,
    SliceAgnosticOpt,
    SliceMergeOpt,
    SliceMetricOpt,
    SliceOpt,
    SliceThresholdOpt,
    build_runtime,
    slice_config,
)


@app.command()
@guarded
def val(
    dataset: Annotated[Path, typer.Argument(
        help="YOLO dataset folder (data.yaml, images/, labels/) or its yaml; for a classification model a "
             "folder of class folders (<dataset>/val/<class>/<images>)")],
    model: ModelOpt = None,
    imgsz: ImgszOpt = None,
    conf: Annotated[float, typer.Option(help="minimum confidence (Ultralytics' val default)")] = 0.001,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold")] = 0.7,
    device: DeviceOpt = None,
    mode: ModeOpt = None,
    no_cache: NoCacheOpt = False,
    protocol: Annotated[str, typer.Option(
        help="coco: deployed pre-processing + COCO AP (faster-coco-eval); ultralytics: Ultralytics' val "
             "pre-processing + its own AP, to reproduce its figure")] = "coco",
    json_path: Annotated[Path | None, typer.Option("--json", help="write the result as JSON to this file")] = None,
    per_class: Annotated[bool, typer.Option("--per-class/--no-per-class", help="print AP of each class")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    slice_size: SliceOpt = None,
    overlap: OverlapOpt = 0.2,
    full_pass: FullPassOpt = True,
    slice_merge: SliceMergeOpt = "greedynmm",
    slice_metric: SliceMetricOpt = "ios",
    slice_threshold: SliceThresholdOpt = 0.5,
    slice_agnostic: SliceAgnosticOpt = False,
) -> None:
    """mAP50-95 / mAP50 of boxes, masks or keypoints (top-1/top-5 for classification), per class, and images/s."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r} is not one of: {', '.join(PROTOCOLS)}")
    slicing = slice_config(slice_size, overlap=overlap, full_pass=full_pass, merge=slice_merge, metric=slice_metric,
                           threshold=slice_threshold, agnostic=slice_agnostic)
    if slicing is not None and protocol != "coco":
        raise ConfigError("--slice is scored with --protocol coco only (Ultralytics' val shrinks each image first)")
    runtime = build_runtime(mode=mode, device=device, imgsz=imgsz, no_cache=no_cache, default_mode="throughput")
    if json_path is not None:
        check_output_file(json_path, "the JSON result")
    with validation_progress(quiet) as progress:
        task = progress.add_task("val", total=None)
        result = validate(model, dataset, conf=conf, iou=iou, runtime=runtime, protocol=protocol, slicing=slicing,
                          progress=lambda done, total: progress.update(task, completed=done, total=total))
    if per_class and result.task != "classify":
        out.print(per_class_table(result))
    out.print(describe(result), soft_wrap=True, markup=False)
    if json_path is not None:
        write_json(json_path, result.to_dict())
        err.print(f"JSON: {json_path}", soft_wrap=True, markup=False)


def per_class_table(result: ValResult) -> Table:
    """AP of each class: box AP, and mask or keypoint AP beside it for those tasks."""
    kinds = [(k, m) for k, m in (("box", result.box), ("mask", result.mask), ("pose", result.pose)) if m is not None]
    table = Table(title=f"{result.model} on {result.dataset} ({result.protocol} AP)", title_justify="left")
    table.add_column("class", justify="left")
    table.add_column("instances", justify="right")
    prefix = len(kinds) > 1
    for kind, _ in kinds:
        label = f"{kind} " if prefix else ""
        table.add_column(f"{label}AP50-95", justify="right")
        table.add_column(f"{label}AP50", justify="right")
    rows: dict[int, list[str]] = {}
    for kind_index, (_, metrics) in enumerate(kinds):
        for c in metrics.per_class:
            row = rows.setdefault(c.class_id, [c.name, str(c.instances)] + ["-"] * (2 * len(kinds)))
            row[2 + 2 * kind_index:4 + 2 * kind_index] = [f"{c.ap50_95:.4f}", f"{c.ap50:.4f}"]
    for class_id in sorted(rows):
        table.add_row(*rows[class_id])
    total = [f"{v:.4f}" for _, m in kinds for v in (m.map50_95, m.map50)]
    table.add_row("all", str(result.instances), *total, style="bold")
    return table


def validation_progress(disable: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, disable=disable, transient=True,
    )


def write_json(path: Path, record: object) -> None:
    """Write ``record`` as JSON, whole or not at all (a temporary file renamed into place)."""
    part = path.with_name(f".{path.name}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write JSON ({exc.strerror or exc})") from exc
