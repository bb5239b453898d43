"""``yolo-ov predict``: detect objects in files, folders and globs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import DetectConfig
from ..detector import Detector
from ..errors import InputError
from ..images import load_image
from ..results import Detections, Failure
from ..sinks import AnnotatedImageSink, JsonlSink
from ..sources import iter_image_files
from ._app import EXIT_OK, EXIT_PARTIAL, app, err, guarded
from ._options import (
    ConfigOpt,
    DeviceOpt,
    ImgszOpt,
    ModelOpt,
    ModeOpt,
    NoCacheOpt,
    NoMmapOpt,
    build_runtime,
    parse_classes,
)


@app.command()
@guarded
def predict(
    sources: Annotated[list[str], typer.Argument(help="image files, folders (recursive) or globs")],
    model: ModelOpt = None,
    conf: Annotated[float, typer.Option(help="minimum confidence")] = 0.25,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold")] = 0.7,
    max_det: Annotated[int, typer.Option("--max-det", help="most detections per image")] = 300,
    classes: Annotated[Optional[str], typer.Option(help="keep only these class ids, e.g. 0,2")] = None,
    agnostic: Annotated[bool, typer.Option("--agnostic-nms", help="NMS across classes")] = False,
    imgsz: ImgszOpt = None,
    device: DeviceOpt = None,
    mode: ModeOpt = None,
    config: ConfigOpt = None,
    no_cache: NoCacheOpt = False,
    no_mmap: NoMmapOpt = False,
    save_json: Annotated[
        Optional[Path], typer.Option("--save-json", help="write one JSON object per image to this .jsonl file")
    ] = None,
    save_dir: Annotated[Optional[Path], typer.Option("--save-dir", help="save annotated copies here")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Detect objects; print a summary, optionally save JSONL and annotated images.

    Exit code 1 when any input failed (each failure is reported and, with
    --save-json, recorded as {"source": ..., "error": ...}).
    """
    runtime = build_runtime(
        mode=mode, device=device, imgsz=imgsz, config=config, no_cache=no_cache, no_mmap=no_mmap
    )
    detect = DetectConfig(conf=conf, iou=iou, max_det=max_det, classes=parse_classes(classes), agnostic=agnostic)
    items = list(iter_image_files(sources))
    with Detector(model, runtime=runtime, detect=detect) as det:
        json_sink = JsonlSink(save_json) if save_json else None
        image_sink = AnnotatedImageSink(save_dir) if save_dir else None
        n_images = n_failed = n_dets = 0
        t0 = time.perf_counter()
        try:
            with _progress(quiet or len(items) < 2) as progress:
                task = progress.add_task("predict", total=len(items))
                for item in items:
                    record = _run_one(det, item, image_sink)
                    if isinstance(record, Failure):
                        n_failed += 1
                        err.print(f"[yellow]skipped:[/] {_esc(record.error)}", soft_wrap=True)
                    else:
                        n_images += 1
                        n_dets += len(record)
                    if json_sink:
                        json_sink.write(record)
                    progress.update(task, advance=1)
        finally:
            if json_sink:
                json_sink.close()
        elapsed = time.perf_counter() - t0
    rate = n_images / elapsed if elapsed > 0 else 0.0
    failed = f", {n_failed} failed" if n_failed else ""
    err.print(
        f"{n_images} images{failed}, {n_dets} detections, {rate:.1f} images/s "
        f"({runtime.mode.value}, {runtime.device})"
        + (f"; JSONL: {save_json}" if save_json else "")
        + (f"; annotated: {save_dir}" if save_dir else ""),
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_PARTIAL if n_failed else EXIT_OK)


def _run_one(det: Detector, item: Path | InputError, image_sink: AnnotatedImageSink | None) -> Detections | Failure:
    if isinstance(item, InputError):
        return Failure(item.source or str(item), str(item))
    try:
        image = load_image(item, str(item))
        result = det(image, source=str(item))
    except InputError as exc:
        return Failure(str(item), str(exc))
    if image_sink is not None:
        image_sink.write(result, image)
    return result


def _progress(disable: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[progress.percentage]{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        disable=disable,
        transient=True,
    )


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
