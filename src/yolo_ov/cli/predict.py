"""``yolo-ov predict``: detect objects in images, folders, globs, videos and streams.

Which runner: ``--mode latency`` answers one input at a time with one
synchronous request; ``--mode throughput`` (or ``cumulative_throughput``)
runs the async pipeline. Default: ``latency`` for a single image file,
``throughput`` for everything else (folders, globs, several files, videos,
cameras and URLs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import cv2
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import DetectConfig, Mode
from ..detector import Detector
from ..errors import InputError
from ..images import load_image
from ..pipeline import PipelineConfig, Specialize
from ..results import Detections, Failure
from ..sinks import AnnotatedImageSink, CocoJsonSink, JsonlSink, VideoSink
from ..sources import FrameSource, SourceItem, is_live, is_video_file, open_source
from ._app import EXIT_OK, EXIT_PARTIAL, app, err, guarded
from ._options import (
    ConfigOpt,
    DeviceOpt,
    ImgszOpt,
    ModelOpt,
    NoCacheOpt,
    NoMmapOpt,
    build_runtime,
    parse_classes,
)

_MODE_HELP = (
    "latency | throughput | cumulative_throughput. Default: latency for a single image file, "
    "throughput (the async pipeline) for folders, globs, several files, videos and streams"
)


@app.command()
@guarded
def predict(
    sources: Annotated[
        list[str],
        typer.Argument(help="image files, folders (recursive), globs, video files, camera indices (0) or "
                       "rtsp:// / http:// URLs; several live streams run at once"),
    ],
    model: ModelOpt = None,
    conf: Annotated[float, typer.Option(help="minimum confidence")] = 0.25,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold")] = 0.7,
    max_det: Annotated[int, typer.Option("--max-det", help="most detections per image")] = 300,
    classes: Annotated[str | None, typer.Option(help="keep only these class ids, e.g. 0,2")] = None,
    agnostic: Annotated[bool, typer.Option("--agnostic-nms", help="NMS across classes")] = False,
    imgsz: ImgszOpt = None,
    device: DeviceOpt = None,
    mode: Annotated[str | None, typer.Option("--mode", help=_MODE_HELP)] = None,
    config: ConfigOpt = None,
    no_cache: NoCacheOpt = False,
    no_mmap: NoMmapOpt = False,
    specialize: Annotated[
        bool | None,
        typer.Option("--specialize/--no-specialize",
                     help="compile the model for the letterbox each source needs (e.g. 384x640 for 16:9 video). "
                     "Default: on for videos/cameras and, in throughput mode, for image folders; "
                     "--no-specialize keeps the model's own square input everywhere"),
    ] = None,
    requests: Annotated[
        int | None, typer.Option("--requests", help="inference requests in flight (default: OpenVINO's optimal)")
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="host threads for decode/NMS (default 1)")] = None,
    batch: Annotated[int, typer.Option("--batch", help="images per request (reshapes the model)")] = 1,
    save_json: Annotated[
        Path | None, typer.Option("--save-json", help="write one JSON object per image/frame to this .jsonl file")
    ] = None,
    save_coco: Annotated[
        Path | None, typer.Option("--save-coco", help="write COCO-format results (image_id, category_id, bbox xywh, "
                                  "score) to this .json file")
    ] = None,
    coco91: Annotated[
        bool, typer.Option("--coco91", help="with --save-coco: map the 80 class ids to COCO's original 91 ids")
    ] = False,
    save_dir: Annotated[Path | None, typer.Option("--save-dir", help="save annotated image copies here")] = None,
    save_video: Annotated[
        Path | None, typer.Option("--save-video", help="write annotated frames to this .mp4/.avi (one per stream)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Detect objects; print a summary, optionally save JSONL, COCO JSON, annotated images or video.

    Exit code 1 when any input failed (each failure is reported and, with
    --save-json, recorded as {"source": ..., "error": ...}).
    """
    default_mode = "latency" if _single_image(sources) else "throughput"
    extra: dict[str, Any] = {"num_requests": requests}
    if batch != 1:
        extra["batch"] = batch
    runtime = build_runtime(
        mode=mode, device=device, imgsz=imgsz, config=config, no_cache=no_cache, no_mmap=no_mmap,
        default_mode=default_mode, **extra,
    )
    detect = DetectConfig(conf=conf, iou=iou, max_det=max_det, classes=parse_classes(classes), agnostic=agnostic)
    pipe_cfg = PipelineConfig(
        specialize=Specialize.parse(specialize),
        **({"workers": workers} if workers is not None else {}),
    )
    source = _open(sources)
    want_images = save_dir is not None or save_video is not None
    n_images = n_failed = n_dets = 0
    with Detector(model, runtime=runtime, detect=detect) as det, _Sinks(
        save_json, save_coco, coco91, save_dir, save_video, _video_fps(sources)
    ) as sinks:
        t0 = time.perf_counter()
        if runtime.mode is Mode.LATENCY and not specialize:
            stats = None
            results: Iterator[Any] = _latency_results(det, source, want_images)
        else:
            run = det.stream(source, with_images=True, config=pipe_cfg)
            stats = run.stats
            results = iter(run)
        total = getattr(source, "total", None)
        with _progress(quiet or total == 1) as progress:
            task = progress.add_task("predict", total=total, rate=0.0)
            last = t0
            for record, image in results:
                if isinstance(record, Failure):
                    n_failed += 1
                    err.print(f"[yellow]skipped:[/] {_esc(record.error)}", soft_wrap=True)
                else:
                    n_images += 1
                    n_dets += len(record)
                sinks.write(record, image)
                now = time.perf_counter()
                if now - last > 0.25:
                    last = now
                    progress.update(task, completed=n_images + n_failed, rate=n_images / (now - t0))
                else:
                    progress.advance(task)
        elapsed = time.perf_counter() - t0
    rate = n_images / elapsed if elapsed > 0 else 0.0
    failed = f", {n_failed} failed" if n_failed else ""
    runner = runtime.mode.value
    if stats is not None:
        runner += ", pipeline " + ", ".join(f"{k}:{v}" for k, v in sorted(stats.shapes.items()))
        if source.total_skipped:
            runner += f", {source.total_skipped} frames skipped (latest)"
    err.print(
        f"{n_images} images{failed}, {n_dets} detections, {rate:.1f} images/s ({runner}, {runtime.device})"
        + sinks.describe(),
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_PARTIAL if n_failed else EXIT_OK)


def _single_image(sources: list[str]) -> bool:
    if len(sources) != 1:
        return False
    s = sources[0]
    return not is_live(s) and not is_video_file(s) and Path(s).is_file()


class _Counted(FrameSource):
    """An image source expanded up front, so the progress bar knows the total."""

    def __init__(self, items: list[SourceItem]) -> None:
        super().__init__(items)
        self.total = len(items)


def _open(sources: list[str]) -> FrameSource:
    src = open_source(sources)
    if src.video or src.live:
        return src
    return _Counted(list(src))


def _video_fps(sources: list[str]) -> float:
    for s in sources:
        if is_video_file(s) and Path(s).is_file():
            cap = cv2.VideoCapture(s)
            fps = cap.get(cv2.CAP_PROP_FPS)
            cap.release()
            if fps and fps > 0:
                return float(fps)
    return 30.0


def _latency_results(det: Detector, source: FrameSource, want_images: bool) -> Iterator[tuple[Any, Any]]:
    """The latency path: one synchronous request per input, in order."""
    for item in source:
        if isinstance(item.data, InputError):
            yield Failure(item.data.source or item.source, str(item.data), item.stream, item.frame), None
            continue
        try:
            image = load_image(item.data, item.source)
            result = det(image, source=item.source)
        except InputError as exc:
            yield Failure(item.source, str(exc), item.stream, item.frame), None
            continue
        result.stream, result.frame = item.stream, item.frame
        yield result, (image if want_images else None)


class _Sinks:
    def __init__(self, jsonl: Path | None, coco: Path | None, coco91: bool, save_dir: Path | None,
                 video: Path | None, fps: float) -> None:
        from ..coco import COCO80_TO_COCO91

        self._paths = [("JSONL", jsonl), ("COCO", coco), ("annotated", save_dir), ("video", video)]
        self.jsonl = JsonlSink(jsonl) if jsonl else None
        self.coco = CocoJsonSink(coco, category_ids=COCO80_TO_COCO91 if coco91 else None) if coco else None
        self.images = AnnotatedImageSink(save_dir) if save_dir else None
        self.video = VideoSink(video, fps=fps) if video else None

    def write(self, record: Detections | Failure, image: Any) -> None:
        if self.jsonl:
            self.jsonl.write(record)
        if self.coco:
            self.coco.write(record)
        if isinstance(record, Detections) and image is not None:
            if self.images:
                self.images.write(record, image)
            if self.video:
                self.video.write(record, image)

    def describe(self) -> str:
        return "".join(f"; {name}: {path}" for name, path in self._paths if path)

    def __enter__(self) -> _Sinks:
        return self

    def __exit__(self, *exc: object) -> None:
        for sink in (self.jsonl, self.coco, self.images, self.video):
            if sink is not None:
                sink.close()


def _progress(disable: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} images/s"),
        TimeElapsedColumn(),
        console=err,
        disable=disable,
        transient=True,
    )


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
