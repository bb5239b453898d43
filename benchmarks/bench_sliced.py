"""Sliced inference (issue 21, item 5): yolo-ov against SAHI's own ``get_sliced_prediction``, same model, same settings.

Both sides run the shared YOLOv8n FP32 OpenVINO IR at slice 512, overlap 0.2, conf 0.25, SAHI's default
merge (GREEDYNMM, IOS 0.5, per class) and the full-image pass, in one run, both warm:

* **SAHI 0.12.8** with its Ultralytics backend (Ultralytics' own OpenVINO runtime, one synchronous request
  per tile), in a child process of ``--sahi-python`` (a separate venv: SAHI must not be installed into
  yolo-ov's); also SAHI's ``batch_size`` option when its version has one;
* **yolo-ov**: ``Detector(model, mode="throughput").stream(folder, slicing=...)`` for the folder (the
  tiles of many images interleave through the pipeline), and ``det(image, slicing=...)`` for one image
  (its tiles in flight at once) on a latency-mode and a throughput-mode Detector;
* **benchmark_app** ``-hint throughput`` at the network's 640x640 input: the device's inferences/s, against
  the folder run's network inferences/s (tiles + full passes).

The folder: the images of ``../shared/data/sliced`` (aerial photos and 1080p traffic frames) repeated, and
4K frames (the traffic frames upscaled 2x to 3840x2160, bicubic, JPEG quality 90, made in a temp folder).
Beside it, what slicing buys: detections (conf >= 0.25) of the same folder with and without slicing (the
images have no labels, so no mAP).

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_sliced.py --sahi-python /work/sahi-venv/bin/python
Writes benchmarks/results/sliced.json and .md (short durations: it finishes in a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, median, run_benchmark_app, write_results
from tests.assets import shared_assets

from yolo_ov import Detector, SliceConfig

CFG = SliceConfig(size=512, overlap=0.2, full_pass=True, merge="greedynmm", metric="ios", threshold=0.5)
SAHI_SETTINGS = {"slice_height": 512, "slice_width": 512, "overlap_height_ratio": 0.2, "overlap_width_ratio": 0.2,
                 "perform_standard_pred": True, "postprocess_type": "GREEDYNMM", "postprocess_match_metric": "IOS",
                 "postprocess_match_threshold": 0.5, "postprocess_class_agnostic": False}
CONF = 0.25

#: What the SAHI child process runs (argv[1]: JSON arguments); it prints one ``SAHI_JSON {...}`` line.
_SAHI = r'''
import inspect, json, sys, time
args = json.loads(sys.argv[1])
try:
    import sahi
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction
except ImportError as exc:
    print("SAHI_JSON " + json.dumps({"error": f"SAHI is not installed in {sys.executable}: {exc}"}))
    sys.exit(0)
import ultralytics
model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=args["model"],
                                           confidence_threshold=args["conf"], image_size=640, device="cpu")
has_batch = "batch_size" in inspect.signature(get_sliced_prediction).parameters
out = {"sahi": sahi.__version__, "ultralytics": ultralytics.__version__, "has_batch_size": has_batch}

def run(path, batch=1):
    kw = dict(args["settings"], verbose=0)
    if batch > 1:
        kw["batch_size"] = batch
    return len(get_sliced_prediction(path, model, **kw).object_prediction_list)

run(args["warmup"])
for batch in [1] + ([args["batch"]] if has_batch and args["batch"] > 1 else []):
    key = f"folder_batch{batch}"
    try:
        run(args["warmup"], batch)
        t0 = time.perf_counter()
        dets = sum(run(p, batch) for p in args["folder"])
        seconds = time.perf_counter() - t0
        out[key] = {"images": len(args["folder"]), "seconds": seconds,
                    "images_per_s": len(args["folder"]) / seconds, "detections": dets}
    except Exception as exc:  # noqa: BLE001 - reported in the results, the run goes on
        out[key] = {"error": repr(exc)[:300]}
    print(key, out[key], file=sys.stderr, flush=True)
times = []
for _ in range(args["latency_runs"]):
    t0 = time.perf_counter()
    run(args["latency_image"])
    times.append(time.perf_counter() - t0)
out["latency_s"] = sorted(times)[len(times) // 2]
out["latency_runs_s"] = times
print("SAHI_JSON " + json.dumps(out))
'''


def make_4k(frames: list[Path], dst: Path) -> list[Path]:
    """The 1080p traffic frames upscaled 2x to 3840x2160 (bicubic), JPEG quality 90."""
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for p in frames:
        img = cv2.imread(str(p))
        big = cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
        path = dst / f"{p.stem}_4k.jpg"
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


def sahi_run(python: str, model: Path, folder: list[Path], latency_image: Path, *, batch: int,
             latency_runs: int) -> dict[str, Any]:
    """SAHI's figures from a child process of ``python`` (``{"error": ...}`` when SAHI is missing)."""
    if not Path(python).exists():
        return {"error": f"--sahi-python {python}: no such interpreter (make the SAHI venv first, see "
                         "tests/make_sahi_slicing_references.py)"}
    args = {"model": str(model), "conf": CONF, "settings": SAHI_SETTINGS, "folder": [str(p) for p in folder],
            "warmup": str(folder[0]), "batch": batch, "latency_image": str(latency_image),
            "latency_runs": latency_runs}
    proc = subprocess.run([python, "-c", _SAHI, json.dumps(args)], capture_output=True, text=True, encoding="utf-8",
                          errors="replace", check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("SAHI_JSON "):
            return json.loads(line[len("SAHI_JSON "):])
    return {"error": f"SAHI run failed (exit {proc.returncode}): {proc.stderr[-1500:]}"}


def inferences(result: Any) -> int:
    """Network inferences one sliced result cost: its tiles, plus the full pass when it ran."""
    return result.slices + (1 if CFG.full_pass and result.slices > 1 else 0)


def ours_folder(det: Detector, folder: list[Path]) -> dict[str, Any]:
    list(det.stream(folder[:2], slicing=CFG))  # warm: pipeline, workers
    t0 = time.perf_counter()
    results = list(det.stream(folder, slicing=CFG))
    seconds = time.perf_counter() - t0
    n_inf = sum(inferences(r) for r in results)
    return {"images": len(results), "seconds": seconds, "images_per_s": len(results) / seconds,
            "inferences": n_inf, "inferences_per_s": n_inf / seconds, "detections": sum(len(r) for r in results),
            "tiles": sum(r.slices for r in results)}


def ours_latency(det: Detector, image: Path, runs: int) -> list[float]:
    det(image, slicing=CFG)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        det(image, slicing=CFG)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sahi-python", default="/work/sahi-venv/bin/python",
                        help="a Python with sahi installed (SAHI runs there as a child process)")
    parser.add_argument("--repeat", type=int, default=1, help="times the sliced images appear in the folder")
    parser.add_argument("--frames-4k", type=int, default=2, help="4K frames (upscaled traffic frames) in the folder")
    parser.add_argument("--batch", type=int, default=4, help="SAHI's batch_size option to measure beside batch 1")
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6, help="benchmark_app duration")
    args = parser.parse_args()
    assets = shared_assets()
    model = assets.fp32_model
    sliced = assets.root / "data" / "sliced"
    images = sorted(p for p in sliced.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    latency_image = sliced / "terrain1.jpg"  # 2048x1365: 20 tiles + the full pass
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="yolo-ov-sliced-") as tmp:
        frames = make_4k(sorted(sliced.glob("traffic_1080p_*.jpg"))[:args.frames_4k], Path(tmp) / "4k")
        folder = images * args.repeat + frames
        print(f"folder: {len(folder)} images ({len(images)} x {args.repeat} + {len(frames)} 4K frames)", flush=True)
        ours: dict[str, Any] = {}
        loads: dict[str, float] = {}
        xml = model / f"{model.name.removesuffix('_openvino_model')}.xml" if model.is_dir() else model
        # Interleaved (the machine is shared, its load moves): yolo-ov's folder run before and after SAHI's,
        # benchmark_app right after each yolo-ov folder run; the figures are the mean of the two.
        runs: list[dict[str, Any]] = []
        apps: list[dict[str, float]] = []
        with Detector(model, mode="throughput", conf=CONF) as det:
            precision = det.compiled_info.inference_precision
            streams = det.compiled_info.num_streams
            requests = det.compiled_info.optimal_requests
            loads["yolo_ov_folder_1"] = os.getloadavg()[0]
            runs.append(ours_folder(det, folder))
            print("yolo-ov folder:", runs[-1], flush=True)
            apps.append(run_benchmark_app(xml, "throughput", args.seconds, "-shape", "[1,3,640,640]"))
            print("benchmark_app:", apps[-1].get("fps"), flush=True)
            loads["sahi"] = os.getloadavg()[0]
            sahi = sahi_run(args.sahi_python, model, folder, latency_image, batch=args.batch,
                            latency_runs=args.latency_runs)
            print("SAHI:", {k: v for k, v in sahi.items() if k != "latency_runs_s"}, flush=True)
            loads["yolo_ov_folder_2"] = os.getloadavg()[0]
            runs.append(ours_folder(det, folder))
            print("yolo-ov folder:", runs[-1], flush=True)
            apps.append(run_benchmark_app(xml, "throughput", args.seconds, "-shape", "[1,3,640,640]"))
            print("benchmark_app:", apps[-1].get("fps"), flush=True)
            plain = list(det.stream(folder))
            ours["folder_unsliced_detections"] = sum(len(r) for r in plain)
            loads["yolo_ov_latency"] = os.getloadavg()[0]
            ours["latency_throughput_compiled_s"] = ours_latency(det, latency_image, args.latency_runs)
        with Detector(model, mode="latency", conf=CONF) as det:
            ours["latency_latency_compiled_s"] = ours_latency(det, latency_image, args.latency_runs)
        print("yolo-ov latency:", ours["latency_throughput_compiled_s"], ours["latency_latency_compiled_s"],
              flush=True)
        ours["folder_runs"] = runs
        ours["folder"] = {**runs[0], "seconds": sum(r["seconds"] for r in runs) / len(runs),
                          "images_per_s": sum(r["images_per_s"] for r in runs) / len(runs),
                          "inferences_per_s": sum(r["inferences_per_s"] for r in runs) / len(runs)}
        bench_app = {**apps[0], "fps": sum(a["fps"] for a in apps) / len(apps), "runs_fps": [a["fps"] for a in apps]}
    load_after = os.getloadavg()
    info = machine_info()
    info.update(load_average_before=list(load_before), load_average_after=list(load_after), load_by_phase=loads,
                inference_precision=precision, streams=streams, optimal_requests=requests)
    lat_thr = median(ours["latency_throughput_compiled_s"])
    lat_lat = median(ours["latency_latency_compiled_s"])
    folder_fps = ours["folder"]["images_per_s"]
    ratios: dict[str, Any] = {"inferences_vs_benchmark_app": ours["folder"]["inferences_per_s"] / bench_app["fps"]}
    if "error" not in sahi and "error" not in sahi.get("folder_batch1", {"error": 1}):
        ratios["folder_vs_sahi"] = folder_fps / sahi["folder_batch1"]["images_per_s"]
        ratios["latency_vs_sahi_latency_compiled"] = sahi["latency_s"] / lat_lat
        ratios["latency_vs_sahi_throughput_compiled"] = sahi["latency_s"] / lat_thr
        best_sahi = max(v["images_per_s"] for k, v in sahi.items() if k.startswith("folder_") and "error" not in v)
        ratios["folder_vs_best_sahi"] = folder_fps / best_sahi
    data = {"machine": info, "settings": {"model": str(model), "conf": CONF, **SAHI_SETTINGS},
            "folder": {"images": len(folder), "repeat": args.repeat, "frames_4k": len(frames)},
            "yolo_ov": ours, "sahi": sahi, "benchmark_app": bench_app, "ratios": ratios}
    write_results("sliced", data, markdown(data, args))
    print(json.dumps(ratios, indent=2))


def markdown(data: dict[str, Any], args: argparse.Namespace) -> str:
    info, ours, sahi, bapp, ratios = data["machine"], data["yolo_ov"], data["sahi"], data["benchmark_app"], \
        data["ratios"]
    f = ours["folder"]
    lat_thr, lat_lat = median(ours["latency_throughput_compiled_s"]), median(ours["latency_latency_compiled_s"])
    lines = [
        "# Sliced inference: yolo-ov vs SAHI (same OpenVINO IR, same settings)",
        "",
        machine_line(info),
        f"Inference precision {info['inference_precision']}; throughput compile: {info['streams']} streams, "
        f"{info['optimal_requests']} requests. Load average (1 min) before/after: "
        f"{info['load_average_before'][0]:.1f} / {info['load_average_after'][0]:.1f}; at each phase: "
        + ", ".join(f"{k} {v:.1f}" for k, v in info["load_by_phase"].items())
        + (". The machine is shared with other engineers' runs: these are the figures of one run on a loaded "
           "machine, not of a quiet one." if max(info["load_by_phase"].values()) > 2.5 else
           ". A quiet machine (1-minute load below 2.5 in every phase).")
        + " yolo-ov's folder figure is the mean of a run before and a run after "
        "SAHI's, benchmark_app's the mean of the runs right after each.",
        f"Command: `flock /tmp/yolo-ov-bench.lock python benchmarks/bench_sliced.py --sahi-python "
        f"{args.sahi_python}`",
        "",
        f"Model: the shared YOLOv8n FP32 IR; slice 512, overlap 0.2, conf {CONF}, GREEDYNMM/IOS 0.5 per class, "
        f"full-image pass on. Folder: {data['folder']['images']} images (the 7 of `data/sliced` x "
        f"{data['folder']['repeat']}, and {data['folder']['frames_4k']} traffic frames upscaled to 3840x2160). "
        "One image: `terrain1.jpg` (2048x1365, 20 tiles + the full pass), median of "
        f"{len(ours['latency_latency_compiled_s'])} runs, decode included on both sides.",
        "",
        "| | images/s (folder) | network inferences/s | one image (s) | detections (folder) |",
        "|---|---|---|---|---|",
        "| yolo-ov `stream(folder, slicing=)` (throughput; runs: "
        + ", ".join(f"{r['images_per_s']:.2f}" for r in ours["folder_runs"])
        + f") | {f['images_per_s']:.2f} | {f['inferences_per_s']:.1f} "
        f"| {lat_thr:.3f} (`det(image, slicing=)`, throughput compile) | {f['detections']} |",
        f"| yolo-ov `det(image, slicing=)` (latency compile) | | | {lat_lat:.3f} | |",
    ]
    if "error" in sahi:
        lines.append(f"| SAHI | not measured: {sahi['error']} | | | |")
    else:
        for key, value in sahi.items():
            if not key.startswith("folder_"):
                continue
            label = f"SAHI {sahi['sahi']} `get_sliced_prediction` (Ultralytics {sahi['ultralytics']}), " \
                    f"batch_size={key.removeprefix('folder_batch')}"
            if "error" in value:
                lines.append(f"| {label} | failed: {value['error']} | | | |")
            else:
                one = f"{sahi['latency_s']:.3f}" if key == "folder_batch1" else ""
                lines.append(f"| {label} | {value['images_per_s']:.2f} | | {one} | {value['detections']} |")
    lines += [
        f"| benchmark_app `-hint throughput` 640x640 (runs: {', '.join(f'{v:.1f}' for v in bapp['runs_fps'])}) "
        f"| | {bapp['fps']:.1f} | | |",
        "",
        "Ratios (the issue's bars in brackets):",
        "",
    ]
    names = {"folder_vs_sahi": "folder images/s vs SAHI (batch 1) [>= 2x]",
             "folder_vs_best_sahi": "folder images/s vs SAHI's best batch_size",
             "inferences_vs_benchmark_app": "network inferences/s vs benchmark_app [>= 0.9x]",
             "latency_vs_sahi_latency_compiled": "one image vs SAHI, latency-compiled Detector [>= 1.8x]",
             "latency_vs_sahi_throughput_compiled": "one image vs SAHI, throughput-compiled Detector [>= 1.8x]"}
    lines += [f"- {names[k]}: {v:.2f}x" for k, v in ratios.items()]
    if "error" not in sahi and "folder_batch1" in sahi and "error" not in sahi["folder_batch1"]:
        # SAHI runs the same tiles and full passes: its inferences/s bound every ratio against it.
        sahi_inf = sahi["folder_batch1"]["images_per_s"] * f["inferences"] / data["folder"]["images"]
        lines += [
            "",
            f"The ceiling: SAHI (batch 1) ran the same {f['inferences']} network inferences at "
            f"{sahi_inf:.1f}/s; the device's own limit (benchmark_app) is {bapp['fps']:.1f}/s, so on this "
            f"machine no scheduler can be more than {bapp['fps'] / sahi_inf:.2f}x faster than SAHI per image or "
            "per folder at this model's input size. The issue's 2x and 1.8x bars assume a device about 2.4x "
            "faster than SAHI's sequential loop (60 against 25 frames/s); here SAHI's own loop reaches "
            f"{sahi_inf / bapp['fps']:.0%} of the device.",
        ]
    lines += [
        "",
        f"What slicing buys on this folder: {f['detections']} detections (conf >= {CONF}) sliced, "
        f"{ours['folder_unsliced_detections']} without slicing, for {f['inferences']} network inferences instead "
        f"of {data['folder']['images']} ({f['inferences'] / data['folder']['images']:.1f}x the work). The images "
        "have no labels: no mAP here.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if shutil.which("flock") is None:
        print("note: run under 'flock /tmp/yolo-ov-bench.lock' so benchmarks do not overlap", file=sys.stderr)
    main()
