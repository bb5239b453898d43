"""``yolo-ov export``: .pt / .onnx / IR -> an OpenVINO folder in FP32, FP16 or INT8 (or the faster of
FP32 and INT8 on this machine: ``--precision auto``)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

from ..export.convert import ExportConfig, ExportWarning, export_model
from ..export.quantize import CalibrationWarning
from ._app import app, err, guarded
from ._options import parse_imgsz


@app.command("export")
@guarded
def export_cmd(
    weights: Annotated[Path, typer.Argument(help="Ultralytics .pt, .onnx, or an OpenVINO folder/.xml")],
    precision: Annotated[str, typer.Option(
        help="fp32 | fp16 (weights only) | int8 (NNCF, needs --data) | auto (exports FP32 and INT8, keeps the "
        "faster on this machine within --max-drop mAP50-95; needs a labelled --data)")] = "fp32",
    imgsz: Annotated[str | None, typer.Option(help="input size: 640 or h,w (default 640 / the model's own)")] = None,
    batch: Annotated[int, typer.Option(help="static batch size")] = 1,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="dynamic batch and image size")] = False,
    data: Annotated[
        Path | None, typer.Option(help="calibration images for int8: an image folder or a YOLO dataset")
    ] = None,
    calib_size: Annotated[int, typer.Option("--calib-size", help="most calibration images used")] = 300,
    max_drop: Annotated[
        float | None,
        typer.Option("--max-drop", help="int8 with accuracy control: largest mAP50-95 loss kept (e.g. 0.01); "
                     "auto: largest loss vs the more accurate candidate (default 0.01)"),
    ] = None,
    preset: Annotated[str, typer.Option(help="NNCF preset: mixed (measured best) | performance")] = "mixed",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="output folder")] = None,
) -> None:
    """Export a YOLO model (detect, segment, pose, obb, classify) to an OpenVINO folder (.xml, .bin, metadata.yaml)
    that yolo-ov and Ultralytics load."""
    if precision.strip().lower() == "auto":
        _export_auto(weights, ExportConfig(
            precision="fp32", imgsz=parse_imgsz(imgsz), batch=batch, dynamic=dynamic, data=data,
            calib_size=calib_size, output=output, preset=preset), 0.01 if max_drop is None else max_drop)
        return
    config = ExportConfig(
        precision=precision, imgsz=parse_imgsz(imgsz), batch=batch, dynamic=dynamic, data=data,
        calib_size=calib_size, output=output, max_drop=max_drop, preset=preset,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if config.precision == "int8":
            err.print(f"calibrating INT8 on images from {data} (NNCF, preset {preset})...", soft_wrap=True,
                      markup=False)
        folder = export_model(weights, config)
    for w in caught:
        if issubclass(w.category, (CalibrationWarning, ExportWarning)):
            err.print(f"[yellow]warning:[/] {_esc(str(w.message))}", soft_wrap=True)
    size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    err.print(
        f"exported {folder} ({config.precision}, {size:.1f} MB, {time.perf_counter() - t0:.1f} s); "
        f"check it: yolo-ov val DATASET --model {folder}",
        soft_wrap=True, markup=False,
    )


def _export_auto(weights: Path, config: ExportConfig, max_drop: float) -> None:
    """``--precision auto``: both candidates measured here, the faster accurate one kept (yolo_ov.export.precision)."""
    from ..export.precision import export_fastest

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_fastest(weights, config, max_drop=max_drop,
                                progress=lambda msg: err.print(f"auto: {msg}...", markup=False, soft_wrap=True))
    for w in caught:
        if issubclass(w.category, (CalibrationWarning, ExportWarning)):
            err.print(f"[yellow]warning:[/] {_esc(str(w.message))}", soft_wrap=True)
    err.print("| precision | throughput FPS (median of rounds) | mAP50-95 | mAP50 | within --max-drop |", markup=False,
              soft_wrap=True)
    err.print("|---|---|---|---|---|", markup=False, soft_wrap=True)
    for c in result.candidates:
        err.print(f"| {c['precision']} | {c['fps']:.1f} ({', '.join(f'{f:.1f}' for f in c['fps_rounds'])}) | "
                  f"{c['map50_95']:.4f} | {c['map50']:.4f} | {'yes' if c['eligible'] else 'no'} |", markup=False,
                  soft_wrap=True)
    cpu = result.machine.get("cpu", "this CPU")
    err.print(
        f"exported {result.folder} ({result.precision}: the fastest within {max_drop:g} mAP50-95 of the most "
        f"accurate on {cpu}; measured in {time.perf_counter() - t0:.0f} s, recorded in its metadata.yaml)",
        soft_wrap=True, markup=False,
    )


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
