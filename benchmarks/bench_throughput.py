"""Throughput engine vs OpenVINO's benchmark_app and Ultralytics' own predict, side by side.

Measures, in one run, with interleaved rounds and medians:

1. **In-memory frames**: pre-decoded, 640x640-letterboxed coco96 frames ->
   detections (post-processing included) through ``Detector(mode="throughput").stream``,
   against ``benchmark_app -hint throughput`` FPS for the same IR (which feeds
   its own random data and does no pre/post-processing). FP32 and INT8.
2. **JPEG folder**: coco96 (96 JPEGs) end to end, model load included:
   ``Detector(model, mode="throughput")`` + ``stream(folder)`` (what
   ``yolo-ov predict --mode throughput`` runs; the CLI's own reported rate is
   recorded too) against ``YOLO(<openvino folder>).predict(folder, stream=True)``
   timed over its full loop (run in a subprocess so torch's threads cannot
   disturb our timings). FP32 and INT8.
3. **16:9 video**: a 1280x720 video written from coco96 images (temp dir),
   shape-specialised (384x640) vs the 640x640 path.

Plus the measurements behind the defaults: host worker threads x requests in
flight, explicit batching vs streams, and folder specialisation on vs off.

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_throughput.py [--rounds 3] [--seconds 8]
Writes benchmarks/results/throughput.json and throughput.md.
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, median, run_benchmark_app, ultralytics_predict, write_results
from tests.assets import shared_assets

from yolo_ov import Detector, RuntimeConfig
from yolo_ov.imaging.letterbox import letterbox
from yolo_ov.pipeline import PipelineConfig

OFF = PipelineConfig(specialize="off")
#: The 96-frame clip is too short for `auto` to specialise (yolo_ov.pipeline.payoff): the specialised column forces it.
ON = PipelineConfig(specialize="on")


# -- our side ------------------------------------------------------------------
def ours_in_memory(det: Detector, frames: list, n: int, config: PipelineConfig = OFF) -> float:
    list(det.stream(frames[:8], config=config))  # warm the queues
    t0 = time.perf_counter()
    count = sum(1 for _ in det.stream(itertools.islice(itertools.cycle(frames), n), config=config))
    return count / (time.perf_counter() - t0)


def ours_folder(model_dir: Path, folder: Path, config: PipelineConfig | None = None) -> dict[str, float]:
    t0 = time.perf_counter()
    with Detector(model_dir, mode="throughput") as det:
        t1 = time.perf_counter()
        run = det.stream(str(folder), config=config)
        count = sum(1 for r in run if len(r) >= 0)
        t2 = time.perf_counter()
    return {"images": count, "total_s": t2 - t0, "load_s": t1 - t0, "loop_s": t2 - t1,
            "fps_end_to_end": count / (t2 - t0), "shapes": dict(run.stats.shapes)}


def ours_cli(model_dir: Path, folder: Path) -> dict[str, float]:
    exe = Path(sys.executable).parent / "yolo-ov"
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), "predict", str(folder), "-m", str(model_dir), "--mode", "throughput", "-q"],
                          capture_output=True, text=True, encoding="utf-8", errors="replace", check=False)
    wall = time.perf_counter() - t0
    m = re.search(r"([\d.]+) images/s", proc.stderr + proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"yolo-ov predict failed: {proc.stderr[-1000:]}")
    return {"reported_fps": float(m.group(1)), "process_wall_s": wall}


def ours_video(model_dir: Path, video: Path, config: PipelineConfig | None) -> dict[str, Any]:
    with Detector(model_dir, mode="throughput") as det:
        list(det.stream(str(video), config=config))  # compile/warm the shape
        t0 = time.perf_counter()
        run = det.stream(str(video), config=config)
        count = sum(1 for _ in run)
        dt = time.perf_counter() - t0
    return {"frames": count, "fps": count / dt, "shapes": dict(run.stats.shapes)}


# -- inputs ----------------------------------------------------------------------
def write_video(images: list[Path], path: Path, size: tuple[int, int] = (1280, 720), fps: int = 30) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for p in images:
        writer.write(cv2.resize(cv2.imread(str(p)), size, interpolation=cv2.INTER_LINEAR))
    writer.release()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8, help="benchmark_app time and our in-memory run length")
    parser.add_argument("--skip-grid", action="store_true", help="skip the workers x requests / batch grid")
    args = parser.parse_args()

    assets = shared_assets()
    folder = assets.coco96 / "images"
    paths = assets.coco96_images
    boxed = [letterbox(cv2.imread(str(p)), (640, 640))[0] for p in paths]
    info = machine_info()
    models = {"FP32": assets.fp32_model, "INT8": assets.int8_model}
    data: dict[str, Any] = {"machine": info, "rounds": args.rounds, "seconds": args.seconds}

    # 1. in-memory frames vs benchmark_app -------------------------------------
    mem: dict[str, Any] = {}
    for name, model_dir in models.items():
        bench, ours = [], []
        with Detector(model_dir, mode="throughput") as det:
            compiled = det.compiled_info
            requests = det.pipeline(OFF).num_requests
            n_frames = None
            for _ in range(args.rounds):
                b = run_benchmark_app(model_dir / "yolov8n.xml", "throughput", args.seconds)
                bench.append(b)
                n_frames = n_frames or max(int(b["fps"] * args.seconds), 200)
                ours.append(ours_in_memory(det, boxed, n_frames))
                print(f"in-memory {name}: benchmark_app {b['fps']:.1f} FPS, ours {ours[-1]:.1f} FPS", flush=True)
        mem[name] = {
            "benchmark_app_fps": median([b["fps"] for b in bench]),
            "benchmark_app_requests": bench[0].get("nireq"),
            "ours_fps": median(ours),
            "ours_requests": requests,
            "streams": compiled.num_streams,
            "precision": compiled.inference_precision,
            "frames_per_run": n_frames,
            "rounds": {"benchmark_app": [b["fps"] for b in bench], "ours": ours},
        }
        mem[name]["ratio"] = mem[name]["ours_fps"] / mem[name]["benchmark_app_fps"]
    data["in_memory"] = mem

    # 2. JPEG folder vs Ultralytics ---------------------------------------------
    fold: dict[str, Any] = {}
    for name, model_dir in models.items():
        ours, ultra, cli = [], [], []
        for _ in range(args.rounds):
            ours.append(ours_folder(model_dir, folder))
            u = ultralytics_predict(model_dir, folder)
            if u:
                ultra.append(u)
            cli.append(ours_cli(model_dir, folder))
            print(f"folder {name}: ours {ours[-1]['fps_end_to_end']:.1f} img/s, "
                  f"ultralytics {u['fps_end_to_end'] if u else float('nan'):.1f} img/s, "
                  f"cli reported {cli[-1]['reported_fps']:.1f}", flush=True)
        fold[name] = {
            "ours_fps": median([o["fps_end_to_end"] for o in ours]),
            "ours_load_s": median([o["load_s"] for o in ours]),
            "ours_shapes": ours[-1]["shapes"],
            "cli_reported_fps": median([c["reported_fps"] for c in cli]),
            "cli_process_wall_s": median([c["process_wall_s"] for c in cli]),
            "ultralytics_fps": median([u["fps_end_to_end"] for u in ultra]) if ultra else None,
            "rounds": {"ours": ours, "ultralytics": ultra, "cli": cli},
        }
        if ultra:
            fold[name]["speedup"] = fold[name]["ours_fps"] / fold[name]["ultralytics_fps"]
    data["folder"] = fold

    # 3. 16:9 video: specialised vs 640x640 ------------------------------------
    vid: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(paths, Path(tmp) / "coco96_1280x720.mp4")
        for name, model_dir in models.items():
            spec, square = [], []
            for _ in range(args.rounds):
                spec.append(ours_video(model_dir, video, ON))
                square.append(ours_video(model_dir, video, OFF))
                print(f"video {name}: specialised {spec[-1]['fps']:.1f} FPS {spec[-1]['shapes']}, "
                      f"640x640 {square[-1]['fps']:.1f} FPS", flush=True)
            vid[name] = {"specialised_fps": median([s["fps"] for s in spec]),
                         "square_fps": median([s["fps"] for s in square]),
                         "shape": list(spec[-1]["shapes"]), "frames": spec[-1]["frames"]}
            vid[name]["ratio"] = vid[name]["specialised_fps"] / vid[name]["square_fps"]
    data["video"] = vid

    # 4. defaults: workers x requests, batching, folder specialisation (FP32) ----
    grid: dict[str, Any] = {}
    if not args.skip_grid:
        n = mem["FP32"]["frames_per_run"]
        with Detector(assets.fp32_model, mode="throughput") as det:
            for workers, requests in itertools.product((1, 2, 3), (2, 3, 4)):
                cfg_mem = PipelineConfig(specialize="off", workers=workers, num_requests=requests)
                cfg_dir = PipelineConfig(workers=workers, num_requests=requests)
                f_mem = [ours_in_memory(det, boxed, n, cfg_mem) for _ in range(args.rounds)]
                f_dir = []
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    count = sum(1 for _ in det.stream(str(folder), config=cfg_dir))
                    f_dir.append(count / (time.perf_counter() - t0))
                grid[f"w{workers}_r{requests}"] = {"workers": workers, "requests": requests,
                                                   "in_memory_fps": median(f_mem), "folder_fps": median(f_dir)}
                print(f"workers {workers} requests {requests}: in-memory {median(f_mem):.1f}, "
                      f"folder {median(f_dir):.1f}", flush=True)
            for spec in ("on", "off"):
                fps = []
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    count = sum(1 for _ in det.stream(str(folder), config=PipelineConfig(specialize=spec)))
                    fps.append(count / (time.perf_counter() - t0))
                grid[f"folder_specialize_{spec}"] = {"folder_fps": median(fps)}
                print(f"folder specialisation {spec}: {median(fps):.1f}", flush=True)
        n = mem["FP32"]["frames_per_run"]
        for batch in (1, 2, 4):
            for mode in ("throughput", "latency"):
                with Detector(assets.fp32_model, runtime=RuntimeConfig(mode=mode, batch=batch)) as det:
                    fps = median([ours_in_memory(det, boxed, n) for _ in range(args.rounds)])
                    grid[f"batch{batch}_{mode}"] = {"batch": batch, "mode": mode, "in_memory_fps": fps,
                                                    "streams": det.compiled_info.num_streams,
                                                    "requests": det.pipeline().num_requests}
                print(f"batch {batch} {mode}: {fps:.1f} FPS", flush=True)
    data["defaults"] = grid

    md = render(data, args)
    write_results("throughput", data, md)
    print(md)


def render(data: dict[str, Any], args: argparse.Namespace) -> str:
    mem, fold, vid, grid = data["in_memory"], data["folder"], data["video"], data["defaults"]
    lines = [
        "### Throughput",
        "",
        f"Medians of {args.rounds} interleaved rounds; FPS = images (frames) per second, end to end.",
        "",
        "**In-memory frames** (640x640 letterboxed arrays in, detections out, NMS included) vs "
        f"`benchmark_app -hint throughput -t {args.seconds}` (model only, random input):",
        "",
        "| model | precision | streams | benchmark_app FPS (requests) | yolo-ov pipeline FPS (requests) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in mem.items():
        lines.append(f"| {name} | {m['precision']} | {m['streams']} | {m['benchmark_app_fps']:.1f} "
                     f"({m['benchmark_app_requests'] or '?'}) | {m['ours_fps']:.1f} ({m['ours_requests']}) "
                     f"| {m['ratio']:.2f}x |")
    lines += [
        "",
        "**coco96 JPEG folder** (96 images, model load included) vs Ultralytics "
        "`YOLO(<openvino folder>).predict(folder, stream=True, imgsz=640)`:",
        "",
        "| model | yolo-ov throughput img/s | compiled shapes used | Ultralytics img/s | speed-up "
        "| `yolo-ov predict` reported img/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in fold.items():
        u = f"{f['ultralytics_fps']:.1f}" if f.get("ultralytics_fps") else "n/a"
        s = f"{f['speedup']:.2f}x" if f.get("speedup") else "n/a"
        shapes = ", ".join(f"{k}:{v}" for k, v in sorted(f["ours_shapes"].items()))
        lines.append(f"| {name} | {f['ours_fps']:.1f} | {shapes} | {u} | {s} | {f['cli_reported_fps']:.1f} |")
    lines += [
        "",
        "**16:9 video** (1280x720 mp4, 96 frames), shape specialisation (`specialize=\"on\"`: `auto` keeps a clip "
        "this short square) vs the 640x640 path:",
        "",
        "| model | specialised shape | specialised FPS | 640x640 FPS | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, v in vid.items():
        lines.append(f"| {name} | {', '.join(v['shape'])} | {v['specialised_fps']:.1f} | {v['square_fps']:.1f} "
                     f"| {v['ratio']:.2f}x |")
    if grid:
        lines += [
            "",
            "**Host threads vs requests in flight** (FP32; in-memory 640x640 frames / coco96 folder, img/s):",
            "",
            "| workers \\ requests | 2 | 3 | 4 |",
            "|---|---|---|---|",
        ]
        for w in (1, 2, 3):
            cells = [f"{grid[f'w{w}_r{r}']['in_memory_fps']:.1f} / {grid[f'w{w}_r{r}']['folder_fps']:.1f}"
                     for r in (2, 3, 4)]
            lines.append(f"| {w} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Folder shape specialisation (FP32, warm): on {grid['folder_specialize_on']['folder_fps']:.1f} img/s, "
            f"off {grid['folder_specialize_off']['folder_fps']:.1f} img/s.",
            "",
            "**Explicit batching vs streams** (FP32, in-memory 640x640 frames, FPS):",
            "",
            "| batch | throughput hint (streams, requests) | latency hint (streams, requests) |",
            "|---|---|---|",
        ]
        for b in (1, 2, 4):
            t, lat = grid[f"batch{b}_throughput"], grid[f"batch{b}_latency"]
            lines.append(f"| {b} | {t['in_memory_fps']:.1f} ({t['streams']}, {t['requests']}) "
                         f"| {lat['in_memory_fps']:.1f} ({lat['streams']}, {lat['requests']}) |")
    lines += ["", machine_line(data["machine"]),
              "Command: `flock /tmp/yolo-ov-bench.lock python benchmarks/bench_throughput.py`"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
