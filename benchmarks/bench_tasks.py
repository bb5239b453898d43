"""Segmentation and pose: yolo-ov vs Ultralytics' own predict and vs benchmark_app, in one run (issue 10).

For ``yolo11n-seg_int8_openvino_model`` and ``yolov8n-pose_int8_openvino_model``:

1. **Folder throughput, end to end**: the coco96 JPEG folder (96 images,
   model load included) through ``Detector(mode="throughput").stream(folder)``
   (as ``yolo-ov predict folder`` runs it: shape specialisation on, masks /
   keypoints decoded) against ``YOLO(model, task=...).predict(folder,
   stream=True, imgsz=640)`` in a fresh process. Target: >= 1.3x.
2. **Latency**: the latency path's median time per image (decoded image in,
   letterbox + inference + NMS + masks/keypoints out) against
   ``benchmark_app -hint latency`` on the same IR at 1x3x640x640 (model only).
   Target: within 5 ms.

Rounds are interleaved; medians reported. Writes ``results/bench_tasks.json``
and ``results/bench_tasks.md``; states the CPU and the load average before
the run (other processes on a shared machine make every figure noisier).

    python benchmarks/bench_tasks.py [--rounds 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    machine_info,
    machine_line,
    median,
    percentile,
    run_benchmark_app,
    ultralytics_predict,
    write_results,
)
from tests.assets import shared_assets

from yolo_ov import Detector

MODELS = {"segment": "yolo11n-seg_int8_openvino_model", "pose": "yolov8n-pose_int8_openvino_model"}


def ours_folder(model_dir: Path, folder: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    with Detector(model_dir, mode="throughput") as det:
        t1 = time.perf_counter()
        run = det.stream(str(folder))
        count = objects = 0
        for r in run:
            count += 1
            objects += len(r)
        t2 = time.perf_counter()
    return {"images": count, "objects": objects, "total_s": t2 - t0, "load_s": t1 - t0,
            "fps_end_to_end": count / (t2 - t0), "shapes": dict(run.stats.shapes)}


def ultralytics_folder(model_dir: Path, folder: Path, task: str) -> dict[str, Any]:
    out = ultralytics_predict(model_dir, folder, task=task)
    if out is None:
        raise RuntimeError("Ultralytics predict failed: ultralytics is not installed (pip install 'yolo-ov[export]')")
    return out


def ours_latency(model_dir: Path, images: list, seconds: float) -> dict[str, Any]:
    with Detector(model_dir, mode="latency") as det:
        for img in images[:5]:
            det(img)
        per_call: list[float] = []
        stages: dict[str, list[float]] = {"preprocess_ms": [], "inference_ms": [], "postprocess_ms": []}
        end, i = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            result = det(images[i % len(images)])
            per_call.append((time.perf_counter() - t0) * 1e3)
            for key in stages:
                stages[key].append(getattr(result.timing, key))
            i += 1
        precision = det.compiled_info.inference_precision
    return {"median_ms": median(per_call), "p90_ms": percentile(per_call, 90), "iterations": len(per_call),
            "precision": precision, **{f"{k}_median": median(v) for k, v in stages.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="latency measurement length per round and side")
    args = parser.parse_args()
    shared = shared_assets()
    folder = shared.coco96 / "images"
    images = [cv2.imread(str(p)) for p in shared.coco96_images]
    load_before = os.getloadavg()
    info = machine_info()
    data: dict[str, Any] = {"machine": info, "load_average_before": list(load_before), "rounds": args.rounds,
                            "seconds": args.seconds, "models": {}}
    for task, name in MODELS.items():
        model_dir = shared.task_model(name)
        xml = next(model_dir.glob("*.xml"))
        rounds: dict[str, list[Any]] = {"ours_folder": [], "ultra_folder": [], "ours_latency": [], "bench_latency": []}
        for r in range(args.rounds):
            rounds["ours_folder"].append(ours_folder(model_dir, folder))
            rounds["ultra_folder"].append(ultralytics_folder(model_dir, folder, task))
            rounds["ours_latency"].append(ours_latency(model_dir, images, args.seconds))
            rounds["bench_latency"].append(run_benchmark_app(xml, "latency", args.seconds, "-shape", "[1,3,640,640]"))
            print(f"{task} round {r + 1}: folder ours {rounds['ours_folder'][-1]['fps_end_to_end']:.1f} img/s, "
                  f"Ultralytics {rounds['ultra_folder'][-1]['fps_end_to_end']:.1f} img/s; latency ours "
                  f"{rounds['ours_latency'][-1]['median_ms']:.2f} ms, benchmark_app "
                  f"{rounds['bench_latency'][-1]['latency_median_ms']:.2f} ms", flush=True)
        entry = {
            "ours_folder_fps": median([x["fps_end_to_end"] for x in rounds["ours_folder"]]),
            "ultralytics_folder_fps": median([x["fps_end_to_end"] for x in rounds["ultra_folder"]]),
            "ours_latency_ms": median([x["median_ms"] for x in rounds["ours_latency"]]),
            "benchmark_app_latency_ms": median([x["latency_median_ms"] for x in rounds["bench_latency"]]),
            "stages_ms": {k: median([x[f"{k}_median"] for x in rounds["ours_latency"]])
                          for k in ("preprocess_ms", "inference_ms", "postprocess_ms")},
            "precision": rounds["ours_latency"][0]["precision"],
            "shapes": rounds["ours_folder"][0]["shapes"],
            "objects": {"ours": rounds["ours_folder"][0]["objects"],
                        "ultralytics": rounds["ultra_folder"][0]["objects"]},
            "rounds": rounds,
        }
        entry["folder_speedup"] = entry["ours_folder_fps"] / entry["ultralytics_folder_fps"]
        entry["latency_overhead_ms"] = entry["ours_latency_ms"] - entry["benchmark_app_latency_ms"]
        data["models"][name] = entry
    data["load_average_after"] = list(os.getloadavg())
    md = render(data, args)
    write_results("bench_tasks", data, md)
    print(md)


def render(data: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"Segmentation and pose, medians of {args.rounds} interleaved rounds.",
        "",
        "**coco96 JPEG folder** (96 images, model load included) vs Ultralytics "
        "`YOLO(<openvino folder>, task=...).predict(folder, stream=True, imgsz=640)`:",
        "",
        "| model | yolo-ov throughput img/s | shapes used | Ultralytics img/s | speed-up (target >= 1.3x) "
        "| objects (yolo-ov / Ultralytics) |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in data["models"].items():
        shapes = ", ".join(f"{k}:{v}" for k, v in sorted(m["shapes"].items()))
        lines.append(f"| {name} | {m['ours_folder_fps']:.1f} | {shapes} | {m['ultralytics_folder_fps']:.1f} "
                     f"| {m['folder_speedup']:.2f}x | {m['objects']['ours']} / {m['objects']['ultralytics']} |")
    lines += [
        "",
        f"**Latency** (median ms per image, decoded image in, results out; {args.seconds} s per round) vs "
        "`benchmark_app -hint latency -shape [1,3,640,640]` (model only):",
        "",
        "| model | precision | benchmark_app ms | yolo-ov latency ms (pre + infer + post) "
        "| overhead ms (target <= 5) |",
        "|---|---|---|---|---|",
    ]
    for name, m in data["models"].items():
        s = m["stages_ms"]
        lines.append(f"| {name} | {m['precision']} | {m['benchmark_app_latency_ms']:.2f} | {m['ours_latency_ms']:.2f} "
                     f"({s['preprocess_ms']:.2f} + {s['inference_ms']:.2f} + {s['postprocess_ms']:.2f}) "
                     f"| {m['latency_overhead_ms']:+.2f} |")
    la, lb = data["load_average_before"], data["load_average_after"]
    lines += ["", machine_line(data["machine"]),
              f"Load average before / after the run: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} / "
              f"{lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f} (2 cores; above 2 means other processes shared the CPU).",
              "Command: `python benchmarks/bench_tasks.py`"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
