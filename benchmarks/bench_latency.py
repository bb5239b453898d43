"""Latency path vs OpenVINO's benchmark_app (LATENCY hint) and Ultralytics' own predict.

Issue 2's check: per-image time of ``Detector(mode="latency")`` with a decoded
array in and detections out (letterbox + inference + NMS + rescale) must be
within 3 ms of the median model-only latency ``benchmark_app -hint latency``
reports for the same IR on the same machine. Ultralytics' own
``YOLO(<openvino folder>).predict(array)`` runs beside them (when the export
extra is installed) as the competitor.

Rounds interleave the three so drift on a noisy machine hits them alike;
figures are medians over rounds.

Run:  python benchmarks/bench_latency.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, median, percentile, run_benchmark_app, write_results
from tests.assets import shared_assets

from yolo_ov import Detector


def time_ours(model_dir: Path, images: list, seconds: float) -> dict[str, float]:
    with Detector(model_dir, mode="latency") as det:
        for img in images[:5]:
            det(img)
        per_call: list[float] = []
        stages = {"preprocess_ms": [], "inference_ms": [], "postprocess_ms": []}
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            img = images[i % len(images)]
            t0 = time.perf_counter()
            result = det(img)
            per_call.append((time.perf_counter() - t0) * 1e3)
            for key in stages:
                stages[key].append(getattr(result.timing, key))
            i += 1
        precision = det.compiled_info.inference_precision
    return {
        "median_ms": median(per_call),
        "p90_ms": percentile(per_call, 90),
        "min_ms": min(per_call),
        "iterations": len(per_call),
        "precision": precision,
        **{f"{k}_median": median(v) for k, v in stages.items()},
    }


def time_ultralytics(model_dir: Path, images: list, seconds: float) -> dict[str, float] | None:
    try:
        from ultralytics import YOLO
    except ImportError:
        return None
    model = YOLO(str(model_dir), task="detect")
    for img in images[:5]:
        model.predict(img, imgsz=640, verbose=False)
    per_call: list[float] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        img = images[i % len(images)]
        t0 = time.perf_counter()
        model.predict(img, imgsz=640, verbose=False)
        per_call.append((time.perf_counter() - t0) * 1e3)
        i += 1
    return {"median_ms": median(per_call), "p90_ms": percentile(per_call, 90), "iterations": len(per_call)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="measuring time per tool per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    assets = shared_assets()
    images = [cv2.imread(str(p)) for p in assets.coco96_images]
    info = machine_info()
    rows, data = [], {"machine": info, "seconds": args.seconds, "rounds": args.rounds, "models": {}}
    for name, model_dir in (("FP32", assets.fp32_model), ("INT8", assets.int8_model)):
        bench, ours, ultra = [], [], []
        for _ in range(args.rounds):
            bench.append(run_benchmark_app(model_dir / "yolov8n.xml", "latency", args.seconds))
            ours.append(time_ours(model_dir, images, args.seconds))
            u = time_ultralytics(model_dir, images, args.seconds)
            if u:
                ultra.append(u)
        entry = {
            "benchmark_app_median_ms": median([b["latency_median_ms"] for b in bench]),
            "ours_median_ms": median([o["median_ms"] for o in ours]),
            "ours_preprocess_ms": median([o["preprocess_ms_median"] for o in ours]),
            "ours_inference_ms": median([o["inference_ms_median"] for o in ours]),
            "ours_postprocess_ms": median([o["postprocess_ms_median"] for o in ours]),
            "ours_p90_ms": median([o["p90_ms"] for o in ours]),
            "ultralytics_median_ms": median([u["median_ms"] for u in ultra]) if ultra else None,
            "precision": ours[0]["precision"],
            "rounds": {"benchmark_app": bench, "ours": ours, "ultralytics": ultra},
        }
        entry["overhead_ms"] = entry["ours_median_ms"] - entry["benchmark_app_median_ms"]
        entry["within_3ms"] = entry["overhead_ms"] <= 3.0
        data["models"][name] = entry
        u_text = f"{entry['ultralytics_median_ms']:.2f}" if ultra else "n/a"
        speedup = f"{entry['ultralytics_median_ms'] / entry['ours_median_ms']:.2f}x" if ultra else "n/a"
        rows.append(
            f"| {name} ({entry['precision']}) | {entry['benchmark_app_median_ms']:.2f} | {entry['ours_median_ms']:.2f} "
            f"({entry['ours_preprocess_ms']:.2f} + {entry['ours_inference_ms']:.2f} + "
            f"{entry['ours_postprocess_ms']:.2f}) | {entry['overhead_ms']:+.2f} | {u_text} | {speedup} |"
        )
        print(rows[-1], flush=True)
    md = "\n".join(
        [
            "### Latency path (one image at a time)",
            "",
            "Median per-image milliseconds, array in -> detections out, on the coco96 images; "
            f"medians of {args.rounds} interleaved rounds of {args.seconds} s each.",
            "",
            "| model | benchmark_app -hint latency (model only) | yolo-ov latency (pre + infer + post) "
            "| yolo-ov overhead | Ultralytics predict | yolo-ov speed-up vs Ultralytics |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            machine_line(info),
            "Command: `python benchmarks/bench_latency.py" + (f" --rounds {args.rounds}" if args.rounds != 3 else "")
            + "`",
        ]
    )
    write_results("latency", data, md)
    print(md)


if __name__ == "__main__":
    main()
