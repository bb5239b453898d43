"""``yolo-ov predict``: detect objects in images, folders, globs, videos and streams.

Which runner: ``--mode latency`` answers one input at a time with one
synchronous request; ``--mode throughput`` (or ``cumulative_throughput``)
runs the async pipeline. Default: ``latency`` for a single image file,
``throughput`` for everything else (folders, globs, several files, videos,
cameras and URLs).
"""

from __future__ import annotations

import dataclasses
import glob
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import DetectConfig, Mode
from ..errors import ConfigError
from ..io.capture import CaptureConfig, reconnect_option
from ..io.health import HealthChange
from ..io.signals import deferred
from ..io.sinks import (
    AnnotatedImageSink,
    CocoJsonSink,
    JsonlSink,
    Sinks,
    VideoSink,
    check_output_dir,
    check_output_file,
)
from ..io.sources import FrameSource, SourceItem, is_live, is_video_file, open_source, set_capture_defaults, video_fps
from ..results import Detections, Failure
from ..track import Trails
from . import _options
from ._app import EXIT_OK, EXIT_PARTIAL, app, err, esc, guarded
from ._options import (
    AgnosticOpt,
    ConfigOpt,
    DeviceOpt,
    FastDecodeOpt,
    FullPassOpt,
    ImgszOpt,
    IouOpt,
    ModelOpt,
    NoCacheOpt,
    NoMmapOpt,
    OverlapOpt,
    SliceAgnosticOpt,
    SliceMergeOpt,
    SliceMetricOpt,
    SliceOpt,
    SliceThresholdOpt,
    WorkersOpt,
    build_runtime,
    parse_classes,
    pipeline_config,
    refuse_missing_inputs,
    resolve_classes,
    slice_config,
    tuned_model,
)
from ._ray import RAY_HELP, RAY_OPTION, predict_on_ray, ray_address

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
    iou: IouOpt = 0.7,
    max_det: Annotated[int, typer.Option("--max-det", help="most detections per image")] = 300,
    classes: Annotated[
        str | None, typer.Option(help="keep only these classes: ids or names, e.g. 0,2 or person,car")
    ] = None,
    agnostic: AgnosticOpt = False,
    fast_decode: FastDecodeOpt = False,
    slice_size: SliceOpt = None,
    overlap: OverlapOpt = 0.2,
    full_pass: FullPassOpt = True,
    slice_merge: SliceMergeOpt = "greedynmm",
    slice_metric: SliceMetricOpt = "ios",
    slice_threshold: SliceThresholdOpt = 0.5,
    slice_agnostic: SliceAgnosticOpt = False,
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
                     "Default: on for videos/cameras only (boxes differ slightly from the square input), off for "
                     "images so each image gets the same answer in every mode; --specialize also buckets image "
                     "folders (faster); --no-specialize keeps the model's own square input everywhere"),
    ] = None,
    requests: Annotated[
        int | None, typer.Option("--requests", help="inference requests in flight (default: OpenVINO's optimal)")
    ] = None,
    workers: WorkersOpt = None,
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
    tracker: Annotated[
        str | None, typer.Option("--tracker", help="track objects through videos/streams: bytetrack | botsort | an "
                                 "Ultralytics-format YAML file (track_id per detection; counting: 'yolo-ov track')")
    ] = None,
    detect_every: Annotated[
        int, typer.Option("--detect-every", help="with --tracker: run the detector on every Nth frame of each "
                          "stream, the tracker predicts the rest (\"predicted\": true)")
    ] = 1,
    save_polygons: Annotated[
        bool, typer.Option("--save-polygons", help="with --save-json, segmentation models: add each mask's largest "
                           "outer contour as \"polygon\": [[x, y], ...]")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    reconnect: Annotated[
        str, typer.Option("--reconnect", help="a camera or stream that drops or stalls: auto (reconnect for ever, "
                          "with back-off), off (give up: exit 1), or N attempts; docs/cameras.md")
    ] = "auto",
    ray: Annotated[str | None, typer.Option(RAY_OPTION, metavar="[ADDRESS]", help=RAY_HELP)] = None,
    actors: Annotated[
        int | None, typer.Option("--actors", help="with --ray: Ray actors, each owning one Detector (default: one "
                                 "per node, whose streams use all its cores)")
    ] = None,
    save_parquet: Annotated[
        str | None, typer.Option("--save-parquet", help="with --ray: also write the records as Parquet to this "
                                 "folder or URI (Ray Data's writer)")
    ] = None,
) -> None:
    """Detect objects; print a summary, optionally save JSONL, COCO JSON, annotated images or video.

    Exit code 1 when any input failed (each failure is reported and, with
    --save-json, recorded as {"source": ..., "error": ...}); 2 when no input
    exists or an output cannot be written; 130 on Ctrl-C and 143 on SIGTERM,
    after every output is flushed and closed.
    """
    model = tuned_model(model, config)  # tune --models writes the model it picked into its --config file
    slicing = slice_config(slice_size, overlap=overlap, full_pass=full_pass, merge=slice_merge, metric=slice_metric,
                           threshold=slice_threshold, agnostic=slice_agnostic)
    if ray is not None:  # the same records from a pool of Ray actors (yolo_ov.ray)
        raise typer.Exit(predict_on_ray(
            sources=sources, model=model, address=ray_address(ray),
            runtime=build_runtime(mode=mode, device=device, imgsz=imgsz, config=config, no_cache=no_cache,
                                  no_mmap=no_mmap, default_mode="throughput", num_requests=requests,
                                  **({"batch": batch} if batch != 1 else {})),
            detect=DetectConfig(conf=conf, iou=iou, max_det=max_det, agnostic=agnostic, fast_decode=fast_decode),
            classes=parse_classes(classes), specialize=specialize, save_json=save_json, save_parquet=save_parquet,
            actors=actors, quiet=quiet,
            unsupported={"--save-coco": save_coco, "--save-dir": save_dir, "--save-video": save_video,
                         "--tracker": tracker, "--detect-every": detect_every != 1, "--workers": workers,
                         "--save-polygons": save_polygons},
            slicing=slicing,
        ))
    if actors is not None or save_parquet is not None:
        raise ConfigError("--actors and --save-parquet go with --ray")
    sources = _expand(sources)
    set_capture_defaults(CaptureConfig(reconnect=reconnect_option(reconnect)), on_health=say_health)  # cameras.md
    default_mode = "latency" if _single_image(sources) else "throughput"
    extra: dict[str, Any] = {"num_requests": requests}
    if batch != 1:
        extra["batch"] = batch
    runtime = build_runtime(
        mode=mode, device=device, imgsz=imgsz, config=config, no_cache=no_cache, no_mmap=no_mmap,
        default_mode=default_mode, **extra,
    )
    wanted_classes = parse_classes(classes)
    detect = DetectConfig(conf=conf, iou=iou, max_det=max_det, agnostic=agnostic, fast_decode=fast_decode)
    pipe_cfg = pipeline_config(specialize, workers)
    _check_outputs(save_json, save_coco, save_dir, save_video)  # before the model loads: fail fast, say why
    source = _open(sources)
    tally = _Tally(noun="frames" if source.video else "images")
    sinks: Sinks | None = None  # set once opened: the summary on an interruption reports what they hold
    try:
        with _options.open_detector(model, runtime=runtime, detect=detect) as det:
            if wanted_classes is not None:  # names and ids are known once the model is loaded
                detect = dataclasses.replace(detect, classes=resolve_classes(wanted_classes, det.names))
            with _open_sinks(save_json, save_coco, coco91, save_dir, save_video, video_fps(sources),
                             polygons=save_polygons) as sinks:
                want_images = sinks.needs_images  # images kept (and decoded in full) only for sinks that draw
                tally.start()
                if tracker is not None or detect_every != 1:  # yolo_ov.track: a tracker per stream, same sinks
                    with det.track(sources[0] if len(sources) == 1 else sources, tracker=tracker or "bytetrack",
                                   detect_every=detect_every, detect=detect, with_images=True, config=pipe_cfg,
                                   slicing=slicing) as run:
                        tally.stats = run.stats
                        _consume(Trails().annotate(run), source, sinks, tally, quiet)
                elif runtime.mode is Mode.LATENCY and not specialize:  # one synchronous request per input, in order
                    pairs = det.iter_predict(source, detect=detect, with_images=want_images, slicing=slicing)
                    _consume(pairs if want_images else ((r, None) for r in pairs), source, sinks, tally, quiet)
                else:
                    with det.stream(source, with_images=want_images, config=pipe_cfg, detect=detect,
                                    slicing=slicing) as run:
                        tally.stats = run.stats
                        _consume(iter(run) if want_images else ((r, None) for r in run), source, sinks, tally, quiet)
                tally.stop()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the sinks are closed by now; say what they hold
        if sinks is not None:
            tally.stop()
            err.print("stopped: " + _summary(tally, runtime, source, sinks), soft_wrap=True)
        raise
    err.print(_summary(tally, runtime, source, sinks), soft_wrap=True)
    raise typer.Exit(EXIT_PARTIAL if tally.failed else EXIT_OK)


def _open_sinks(jsonl: Path | None, coco: Path | None, coco91: bool, save_dir: Path | None, video: Path | None,
                fps: float, *, polygons: bool = False) -> Sinks:
    """The outputs asked for, in the order the summary names them (each file is created here)."""
    from ..runtime.coco_names import COCO80_TO_COCO91

    return Sinks.opening(
        lambda: JsonlSink(jsonl, polygons=polygons) if jsonl else None,
        lambda: CocoJsonSink(coco, category_ids=COCO80_TO_COCO91 if coco91 else None) if coco else None,
        lambda: AnnotatedImageSink(save_dir) if save_dir else None,
        lambda: VideoSink(video, fps=fps) if video else None,
    )


@dataclasses.dataclass
class _Tally:
    """What a run has done so far, for the progress bar and the summary."""

    noun: str
    done: int = 0
    failed: int = 0
    detections: int = 0
    stats: Any = None
    t0: float | None = None
    elapsed: float = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        if self.t0 is not None:
            self.elapsed = time.perf_counter() - self.t0

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


def _consume(results: Iterator[Any], source: FrameSource, sinks: Sinks, tally: _Tally, quiet: bool) -> None:
    total = getattr(source, "total", None)
    t0 = last = tally.t0 or time.perf_counter()
    with _progress(quiet or total == 1, tally.noun) as progress:
        task = progress.add_task("predict", total=total, rate=0.0)
        for record, image in results:
            with deferred():  # the record and its count go together
                sinks.write(record, image)
                if isinstance(record, Failure):
                    tally.failed += 1
                else:
                    tally.done += 1
                    tally.detections += len(record) if isinstance(record, Detections) else 0
            if isinstance(record, Failure):
                err.print(f"[yellow]skipped:[/] {esc(record.error)}", soft_wrap=True)
            now = time.perf_counter()
            if now - last > 0.25:
                last = now
                progress.update(task, completed=tally.done + tally.failed, rate=tally.done / (now - t0))
            else:
                progress.advance(task)


def _summary(tally: _Tally, runtime: Any, source: FrameSource, sinks: Sinks | None) -> str:
    failed = f", {tally.failed} failed" if tally.failed else ""
    runner = runtime.mode.value
    shapes = getattr(tally.stats, "shapes", None)
    if shapes:
        runner += ", pipeline " + ", ".join(f"{k}:{v}" for k, v in sorted(shapes.items()))
    if tally.stats is not None and source.total_skipped:
        runner += f", {source.total_skipped} frames skipped (latest)"
    return (
        f"{tally.done} {tally.noun}{failed}, {tally.detections} detections, {tally.rate:.1f} {tally.noun}/s "
        f"({runner}, {runtime.device})" + (sinks.describe() if sinks is not None else "")
    )


def _expand(sources: list[str]) -> list[str]:
    """Expand glob patterns here (images and videos alike) and refuse a run where no input exists.

    A pattern that matches nothing, or a list of sources none of which
    exists, is a usage error (exit 2) found before the model loads; a
    missing file among existing ones is recorded as a failed input instead.
    """
    expanded: list[str] = []
    missing: list[str] = []
    for spec in sources:
        if is_live(spec) or Path(spec).expanduser().exists():
            expanded.append(spec)
        elif set("*?[") & set(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise ConfigError(f"{spec}: the pattern matched no files")
            expanded.extend(matches)
        else:
            missing.append(spec)
            expanded.append(spec)
    refuse_missing_inputs(missing, len(sources))
    return expanded


def _check_outputs(jsonl: Path | None, coco: Path | None, save_dir: Path | None, video: Path | None) -> None:
    """Every output location must be writable before any work starts (OutputError names the reason)."""
    if jsonl is not None:
        check_output_file(jsonl, "JSONL output")
    if coco is not None:
        check_output_file(coco, "COCO results")
    if save_dir is not None:
        check_output_dir(save_dir, "annotated images")
    if video is not None:
        VideoSink.check(video)


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


def say_health(change: HealthChange) -> None:
    """One stderr line when a live source stalls, reconnects or is back (not for its first connection)."""
    if change.state == "failed":
        return  # the "skipped:" line of its error record says it
    if change.previous not in (None, "connecting") or change.state not in ("connecting", "live"):
        err.print(f"[yellow]camera:[/] {esc(change.source)}: {change.state} ({esc(change.reason)})", soft_wrap=True)


def _open(sources: list[str]) -> FrameSource:
    src = open_source(sources)
    if src.video or src.live:
        return src
    return _Counted(list(src))


def _progress(disable: bool, noun: str = "images") -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} " + noun + "/s"),
        TimeElapsedColumn(),
        console=err,
        disable=disable,
        transient=True,
    )
