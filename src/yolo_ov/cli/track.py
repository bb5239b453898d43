"""``yolo-ov track``: persistent object ids on videos and live streams, with counting.

Thin: parses options, builds the configs, runs :func:`yolo_ov.track.track`
and writes what it yields. One tracker per stream; ``--detect-every N``
infers every Nth frame and lets the tracker predict the rest.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from ..config import DetectConfig
from ..errors import ConfigError
from ..io.capture import CaptureConfig, reconnect_option
from ..io.sinks import JsonlSink, Sinks, VideoSink, check_output_file
from ..io.sources import is_live, set_capture_defaults, video_fps
from ..results import Failure
from ..track import Counters, Trails, load_tracker_config
from ..track.counters import parse_line, parse_zone
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
from .predict import say_health


@app.command()
@guarded
def track(
    sources: Annotated[
        list[str],
        typer.Argument(help="video files, camera indices (0) or rtsp:// / http:// URLs (several run at once, "
                       "one tracker each); an image folder is tracked as one sequence"),
    ],
    model: ModelOpt = None,
    tracker: Annotated[
        str, typer.Option("--tracker", help="bytetrack | botsort (Ultralytics' default settings for each)")
    ] = "bytetrack",
    tracker_config: Annotated[
        Path | None,
        typer.Option("--tracker-config", help="tracker settings in Ultralytics' bytetrack.yaml/botsort.yaml format "
                     "(overrides --tracker)"),
    ] = None,
    detect_every: Annotated[
        int, typer.Option("--detect-every", help="run the detector on every Nth frame of each stream; the tracker "
                          "predicts the frames between (marked \"predicted\": true)")
    ] = 1,
    conf: Annotated[
        float, typer.Option(help="minimum detection confidence (0.1, as Ultralytics' track: ByteTrack's second "
                            "pass uses the low-score detections)")
    ] = 0.1,
    iou: IouOpt = 0.7,
    max_det: Annotated[int, typer.Option("--max-det", help="most detections per frame")] = 300,
    classes: Annotated[
        str | None, typer.Option(help="track only these classes: ids or names, e.g. 0,2 or person,car")
    ] = None,
    agnostic: AgnosticOpt = False,
    line: Annotated[
        list[str] | None,
        typer.Option("--line", help="count tracks crossing x1,y1,x2,y2 (pixels; 'in' = from the left of the line "
                     "as drawn from its first point to its right); repeatable"),
    ] = None,
    zone: Annotated[
        list[str] | None,
        typer.Option("--zone", help="count tracks inside the polygon x1,y1,x2,y2,x3,y3,... (pixels); repeatable"),
    ] = None,
    imgsz: ImgszOpt = None,
    device: DeviceOpt = None,
    mode: Annotated[str | None, typer.Option("--mode", help="latency | throughput (default) | "
                                             "cumulative_throughput")] = None,
    config: ConfigOpt = None,
    no_cache: NoCacheOpt = False,
    no_mmap: NoMmapOpt = False,
    specialize: Annotated[
        bool | None,
        typer.Option("--specialize/--no-specialize",
                     help="compile for the video's own letterbox (default on: e.g. 384x640 for 16:9, faster; "
                     "--no-specialize keeps the model's square input, as Ultralytics' track does)"),
    ] = None,
    fast_decode: FastDecodeOpt = False,
    requests: Annotated[int | None, typer.Option("--requests", help="inference requests in flight")] = None,
    workers: WorkersOpt = None,
    save_json: Annotated[
        Path | None, typer.Option("--save-json", help="write one JSON object per frame (track_id per detection, "
                                  "counts) to this .jsonl file")
    ] = None,
    save_video: Annotated[
        Path | None, typer.Option("--save-video", help="write frames with ids, trails and counters to this "
                                  ".mp4/.avi (one file per stream)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress line")] = False,
    slice_size: SliceOpt = None,
    overlap: OverlapOpt = 0.2,
    full_pass: FullPassOpt = True,
    slice_merge: SliceMergeOpt = "greedynmm",
    slice_metric: SliceMetricOpt = "ios",
    slice_threshold: SliceThresholdOpt = 0.5,
    slice_agnostic: SliceAgnosticOpt = False,
    reconnect: Annotated[
        str, typer.Option("--reconnect", help="a camera or stream that drops or stalls: auto (reconnect for ever, "
                          "with back-off), off (give up: exit 1), or N attempts; docs/cameras.md")
    ] = "auto",
) -> None:
    """Track objects: a persistent id per object and stream, optional line/zone counts, JSONL and video out.

    Exit code 1 when an input failed (each failure is reported and recorded).
    """
    runtime = build_runtime(mode=mode, device=device, imgsz=imgsz, config=config, no_cache=no_cache,
                            no_mmap=no_mmap, default_mode="throughput", num_requests=requests)
    tracker_cfg = load_tracker_config(tracker_config if tracker_config is not None else tracker)
    set_capture_defaults(CaptureConfig(reconnect=reconnect_option(reconnect)), on_health=say_health)  # cameras.md
    if detect_every < 1:
        raise ConfigError(f"--detect-every {detect_every}: expected a positive number of frames")
    wanted = parse_classes(classes)
    detect = DetectConfig(conf=conf, iou=iou, max_det=max_det, agnostic=agnostic, fast_decode=fast_decode)
    slicing = slice_config(slice_size, overlap=overlap, full_pass=full_pass, merge=slice_merge, metric=slice_metric,
                           threshold=slice_threshold, agnostic=slice_agnostic)
    counters = Counters(lines=[parse_line(t, f"line{i + 1}") for i, t in enumerate(line or [])],
                        zones=[parse_zone(t, f"zone{i + 1}") for i, t in enumerate(zone or [])])
    pipe_cfg = pipeline_config(specialize, workers)
    refuse_missing_inputs([s for s in sources if not is_live(s) and not Path(s).expanduser().exists()], len(sources))
    if save_json is not None:  # before the model loads: fail fast, say why
        check_output_file(save_json, "JSONL output")
    if save_video is not None:
        VideoSink.check(save_video)
    source: Any = sources[0] if len(sources) == 1 else sources
    frames = failed = tracks = 0  # ids come from one counter per run (1, 2, 3, ...): the largest is the count
    model = tuned_model(model, config)
    trails = Trails()
    with _options.open_detector(model, runtime=runtime, detect=detect) as det, Sinks.opening(
        lambda: JsonlSink(save_json) if save_json is not None else None,
        lambda: VideoSink(save_video, fps=video_fps(sources)) if save_video is not None else None,
    ) as outs:
        if wanted is not None:
            detect = dataclasses.replace(detect, classes=resolve_classes(wanted, det.names))
        t0 = time.perf_counter()
        with det.track(source, tracker=tracker_cfg, detect_every=detect_every, detect=detect,
                       with_images=outs.needs_images, config=pipe_cfg,
                       slicing=slicing) as run, _progress(quiet) as progress:
            task = progress.add_task("track", frames=0, tracks=0, rate=0.0)
            for record, image in _pairs(run, outs.needs_images):
                if isinstance(record, Failure):
                    failed += 1
                    err.print(f"[yellow]skipped:[/] {esc(record.error)}", soft_wrap=True)
                    outs.write(record)
                    continue
                frames += 1
                tracks = max(tracks, int(record.data["track_id"].max(initial=0)))
                counts = counters.update(record) if counters else None
                if image is not None:
                    trails.draw(image, record)
                    if counters:
                        counters.draw(image, record.stream or 0)
                outs.write(record, image, extra={"counts": counts} if counts is not None else None)
                progress.update(task, frames=frames, tracks=tracks,
                                rate=frames / max(time.perf_counter() - t0, 1e-9))
            skipped = sum(run.skipped.values())
            inferred, by_tracker = run.inferred, run.predicted
    elapsed = time.perf_counter() - t0
    rate = frames / elapsed if elapsed > 0 else 0.0
    parts = [f"{frames} frames" + (f", {failed} failed" if failed else ""),
             f"{tracks} tracks ({tracker_cfg.tracker_type})", f"{rate:.1f} frames/s"]
    if detect_every > 1:
        parts.append(f"{inferred} inferred, {by_tracker} predicted (--detect-every {detect_every})")
    if skipped:
        parts.append(f"{skipped} frames skipped (latest)")
    if counters:
        parts.append(_summary(counters))
    err.print(", ".join(parts) + outs.describe(), soft_wrap=True)
    raise typer.Exit(EXIT_PARTIAL if failed else EXIT_OK)


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}: {task.fields[frames]} frames, {task.fields[tracks]} tracks, "
                               "{task.fields[rate]:.1f} frames/s"), TimeElapsedColumn(), console=err,
                    disable=quiet, transient=True)


def _pairs(run: Any, with_images: bool) -> Any:
    for got in run:
        yield got if with_images else (got, None)


def _summary(counters: Counters) -> str:
    streams = counters.streams or [0]
    out = []
    for s in streams:
        c = counters.counts(s)
        prefix = f"stream {s} " if len(streams) > 1 else ""
        out += [f"{prefix}{n}: in {v['in']} out {v['out']}" for n, v in c["lines"].items()]
        out += [f"{prefix}{n}: entered {v['entered']}" for n, v in c["zones"].items()]
    return "; ".join(out)
