"""``yolo-ov track``: persistent object ids on videos and live streams, with counting.

Thin: parses options, builds the configs, runs :func:`yolo_ov.track.track`
and writes what it yields. One tracker per stream; ``--detect-every N``
infers every Nth frame and lets the tracker predict the rest.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Any

import cv2
import typer
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from ..config import DetectConfig
from ..detector import Detector
from ..errors import ConfigError
from ..io.sinks import JsonlSink, VideoSink, check_output_file
from ..io.sources import is_live, is_video_file
from ..pipeline import PipelineConfig, Specialize
from ..results import Detections, Failure
from ..track import Counters, Trails, load_tracker_config
from ..track.counters import parse_line, parse_zone
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
    resolve_classes,
    tuned_model,
)
from .signals import deferred


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
    iou: Annotated[float, typer.Option(help="NMS IoU threshold")] = 0.7,
    max_det: Annotated[int, typer.Option("--max-det", help="most detections per frame")] = 300,
    classes: Annotated[
        str | None, typer.Option(help="track only these classes: ids or names, e.g. 0,2 or person,car")
    ] = None,
    agnostic: Annotated[bool, typer.Option("--agnostic-nms", help="NMS across classes")] = False,
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
    fast_decode: Annotated[bool, typer.Option(
        "--fast-decode", help="decode large JPEGs at 1/2, 1/4 or 1/8 size when the letterbox needs no more "
        "(12 MP photos, 4K frames: much faster; outputs differ slightly from Ultralytics' full decode)")] = False,
    requests: Annotated[int | None, typer.Option("--requests", help="inference requests in flight")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="host threads for decode/NMS (default: 1, and 2 once an image has 4 MP or more)")] = None,
    save_json: Annotated[
        Path | None, typer.Option("--save-json", help="write one JSON object per frame (track_id per detection, "
                                  "counts) to this .jsonl file")
    ] = None,
    save_video: Annotated[
        Path | None, typer.Option("--save-video", help="write frames with ids, trails and counters to this "
                                  ".mp4/.avi (one file per stream)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress line")] = False,
) -> None:
    """Track objects: a persistent id per object and stream, optional line/zone counts, JSONL and video out.

    Exit code 1 when an input failed (each failure is reported and recorded).
    """
    runtime = build_runtime(mode=mode, device=device, imgsz=imgsz, config=config, no_cache=no_cache,
                            no_mmap=no_mmap, default_mode="throughput", num_requests=requests)
    tracker_cfg = load_tracker_config(tracker_config if tracker_config is not None else tracker)
    if detect_every < 1:
        raise ConfigError(f"--detect-every {detect_every}: expected a positive number of frames")
    wanted = parse_classes(classes)
    detect = DetectConfig(conf=conf, iou=iou, max_det=max_det, agnostic=agnostic, fast_decode=fast_decode)
    counters = Counters(lines=[parse_line(t, f"line{i + 1}") for i, t in enumerate(line or [])],
                        zones=[parse_zone(t, f"zone{i + 1}") for i, t in enumerate(zone or [])])
    pipe_cfg = PipelineConfig(specialize=Specialize.parse(specialize),
                              **({"workers": workers} if workers is not None else {}))
    missing = [s for s in sources if not is_live(s) and not Path(s).expanduser().exists()]
    if missing and len(missing) == len(sources):  # nothing to track: a usage error before the model loads
        raise ConfigError(f"{missing[0]}: no such file or folder" if len(missing) == 1
                          else f"none of the inputs exist: {', '.join(missing)}")
    if save_json is not None:  # before the model loads: fail fast, say why
        check_output_file(save_json, "JSONL output")
    if save_video is not None:
        VideoSink.check(save_video)
    source: Any = sources[0] if len(sources) == 1 else sources
    frames = failed = tracks = 0  # ids come from one counter per run (1, 2, 3, ...): the largest is the count
    model = tuned_model(model, config)
    with Detector(model, runtime=runtime, detect=detect) as det, _Outputs(save_json, save_video, sources) as outs:
        if wanted is not None:
            detect = dataclasses.replace(detect, classes=resolve_classes(wanted, det.names))
        t0 = time.perf_counter()
        with det.track(source, tracker=tracker_cfg, detect_every=detect_every, detect=detect,
                       with_images=save_video is not None, config=pipe_cfg) as run, _progress(quiet) as progress:
            task = progress.add_task("track", frames=0, tracks=0, rate=0.0)
            for record, image in _pairs(run, save_video is not None):
                if isinstance(record, Failure):
                    failed += 1
                    err.print(f"[yellow]skipped:[/] {_esc(record.error)}", soft_wrap=True)
                    outs.write(record, None, None)
                    continue
                frames += 1
                tracks = max(tracks, int(record.data["track_id"].max(initial=0)))
                counts = counters.update(record) if counters else None
                if image is not None:
                    outs.trails.draw(image, record)
                    if counters:
                        counters.draw(image, record.stream or 0)
                outs.write(record, counts, image)
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
        parts.append(f"{skipped} frames dropped (latest)")
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


@dataclasses.dataclass(frozen=True)
class _CountedRecord:
    """A record and its stream's counts so far: one JSONL line (``JsonlSink`` writes ``to_json()``)."""

    record: Detections | Failure
    counts: dict[str, Any] | None

    def to_json(self) -> str:
        row = self.record.to_dict()
        if self.counts is not None:
            row["counts"] = self.counts
        return json.dumps(row, separators=(",", ":"))


class _Outputs:
    """The JSONL file (records with ``counts``) and the annotated videos of a tracking run."""

    def __init__(self, jsonl: Path | None, video: Path | None, sources: list[str]) -> None:
        self.trails = Trails()
        self._jsonl = self._video = None
        try:
            self._jsonl = JsonlSink(jsonl) if jsonl is not None else None
            self._video = VideoSink(video, fps=_video_fps(sources)) if video is not None else None
        except BaseException:
            self.close()
            raise

    def write(self, record: Detections | Failure, counts: dict[str, Any] | None, image: Any) -> None:
        """One record to every output; Ctrl-C/SIGTERM wait until it is in all of them."""
        with deferred():
            if self._jsonl is not None:
                self._jsonl.write(_CountedRecord(record, counts))  # type: ignore[arg-type]
            if self._video is not None and isinstance(record, Detections) and image is not None:
                self._video.write(record, image)

    def describe(self) -> str:
        parts = []
        if self._jsonl is not None:
            parts.append(f"; JSONL: {self._jsonl.path} ({self._jsonl.count} lines)")
        if self._video is not None:
            parts.append(f"; video: {', '.join(str(p) for p in self._video.paths.values()) or self._video.path}")
        return "".join(parts)

    def close(self) -> None:
        for sink in (self._jsonl, self._video):
            if sink is not None:
                sink.close()

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _video_fps(sources: list[str]) -> float:
    for s in sources:
        if is_video_file(s) and Path(s).is_file():
            cap = cv2.VideoCapture(s)
            fps = cap.get(cv2.CAP_PROP_FPS)
            cap.release()
            if fps and fps > 0:
                return float(fps)
    return 30.0


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
