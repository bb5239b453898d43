"""When does compiling a video's own input shape pay for itself?

Shape specialisation compiles the model once more for a video's letterbox
(1280x720 -> 384x640) in the background; until it is ready, frames go to the
model's own 640x640 shape. The compile costs CPU time the pipeline would have
used, so a short clip can end slower than at the square shape. This script
measures, for both shared YOLOv8n models, in fresh processes:

* **compile**: the wall and CPU time of compiling the extra 384x640 shape with
  an empty OpenVINO cache and with the cache the first compile left;
* **rates**: frames/s of the throughput pipeline over ``walking_720p.mp4`` at
  the square shape and at the specialised one (shape compiled beforehand);
* **break-even**: the first N frames of the clip, decoded from the file, run
  once specialised (the shape compiling in the background from the first
  frame, warm cache, as a user's second run) and once at the square shape, each
  in a fresh process, for several N.

``yolo_ov.pipeline.payoff.COMPILE_COST_FRAMES`` comes from these figures.

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_shape_payoff.py [--quick]
Writes benchmarks/results/shape_payoff.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, median, write_results
from tests.assets import shared_assets

SHAPE = (384, 640)
CLIP = "walking_720p.mp4"


def _child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    import cv2

    from yolo_ov import Detector, PipelineConfig, RuntimeConfig
    from yolo_ov.io.sources import FrameSource, SourceItem

    runtime = RuntimeConfig(mode="throughput", cache_dir=args.cache)
    if args.child == "compile":
        t0 = time.perf_counter()
        det = Detector(args.model, runtime=runtime)
        load_s = time.perf_counter() - t0
        w0, c0 = time.perf_counter(), time.process_time()
        engine = det._compile_shape(SHAPE)
        out = {"load_s": load_s, "compile_wall_s": time.perf_counter() - w0, "compile_cpu_s": time.process_time() - c0}
        engine.close()
        det.close()
        print(json.dumps(out))
        return

    def frames(n: int) -> FrameSource:
        def items():
            cap = cv2.VideoCapture(args.clip)
            try:
                for i in range(n):
                    ok, frame = cap.read()
                    if not ok:
                        return
                    yield SourceItem(frame, args.clip, 0, i)
            finally:
                cap.release()
        return FrameSource(items(), video=True)

    on, off = PipelineConfig(specialize="on"), PipelineConfig(specialize="off")
    with Detector(args.model, runtime=runtime) as det:
        if args.child == "rates":
            out = {}
            for name, cfg in (("square_fps", off), ("special_fps", on)):
                if cfg is on:
                    list(det.stream(frames(8), config=on))
                    det.pipeline(on).wait_compiled()
                t0 = time.perf_counter()
                n = sum(1 for _ in det.stream(frames(10_000), config=cfg))
                out[name] = n / (time.perf_counter() - t0)
            print(json.dumps(out))
            return
        cfg = on if args.child == "special" else off
        t0 = time.perf_counter()
        run = det.stream(frames(args.frames), config=cfg)
        n = sum(1 for _ in run)
        print(json.dumps({"frames": n, "seconds": time.perf_counter() - t0, "shapes": run.stats.shapes}))


def _run(*argv: str) -> dict:
    cmd = [sys.executable, __file__, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True,
            encoding="utf-8", errors="replace", check=False, env={**os.environ})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["compile", "rates", "special", "square"])
    parser.add_argument("--model")
    parser.add_argument("--cache")
    parser.add_argument("--clip")
    parser.add_argument("--frames", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one repeat, fewer clip lengths (to check the script)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    assets = shared_assets()
    clip = str(assets.video(CLIP))
    lengths = (50, 341) if args.quick else (25, 50, 100, 200, 341)
    repeats = 1 if args.quick else args.repeats
    load_before = os.getloadavg()
    rows = []
    for name, model in (("INT8", assets.int8_model), ("FP32", assets.fp32_model)):
        row: dict = {"model": name}
        with tempfile.TemporaryDirectory(prefix="yolo-ov-payoff-") as cache:
            common = ["--model", str(model), "--cache", cache, "--clip", clip]
            cold = [_run("--child", "compile", *common)]  # the first compile fills this cache
            cached = [_run("--child", "compile", *common) for _ in range(repeats)]
            row["compile_cold_wall_s"] = cold[0]["compile_wall_s"]
            row["compile_cold_cpu_s"] = cold[0]["compile_cpu_s"]
            row["compile_cached_wall_s"] = median([c["compile_wall_s"] for c in cached])
            row["compile_cached_cpu_s"] = median([c["compile_cpu_s"] for c in cached])
            rates = [_run("--child", "rates", *common) for _ in range(repeats)]
            row["square_fps"] = median([r["square_fps"] for r in rates])
            row["special_fps"] = median([r["special_fps"] for r in rates])
            row["cost_frames_cached"] = row["compile_cached_wall_s"] * row["square_fps"]
            row["break_even"] = []
            for n in lengths:
                sq, sp = [], []
                for _ in range(repeats):  # interleaved, so drifting load hits both
                    sq.append(_run("--child", "square", *common, "--frames", str(n))["seconds"])
                    sp.append(_run("--child", "special", *common, "--frames", str(n))["seconds"])
                row["break_even"].append({"frames": n, "square_s": median(sq), "special_s": median(sp),
                                          "speedup": median(sq) / median(sp)})
                print(name, row["break_even"][-1], flush=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    info = machine_info()
    info["load_average_before"] = list(load_before)
    info["load_average_after"] = list(os.getloadavg())
    lines = [
        "# Shape specialisation: compile cost and break-even",
        "",
        machine_line(info),
        f"Load average before/after: {load_before[0]:.1f} / {info['load_average_after'][0]:.1f}.",
        "Command: `flock /tmp/yolo-ov-bench.lock python benchmarks/bench_shape_payoff.py`",
        "",
        "| model | compile 384x640, empty cache (wall / CPU s) | compile, cached (wall / CPU s) | square fps | "
        "384x640 fps | cost in square frames (cached wall x square fps) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['compile_cold_wall_s']:.2f} / {r['compile_cold_cpu_s']:.2f} | "
            f"{r['compile_cached_wall_s']:.2f} / {r['compile_cached_cpu_s']:.2f} | {r['square_fps']:.1f} | "
            f"{r['special_fps']:.1f} | {r['cost_frames_cached']:.0f} |")
    lines += ["", "First N frames of the clip, fresh process, warm cache: specialised (compiling in the background) "
              "vs square; speed-up > 1 means the shape paid for itself.", "",
              "| model | frames | square s | specialised s | speed-up |", "|---|---|---|---|---|"]
    for r in rows:
        for b in r["break_even"]:
            lines.append(f"| {r['model']} | {b['frames']} | {b['square_s']:.2f} | {b['special_s']:.2f} | "
                         f"{b['speedup']:.2f} |")
    _, md_path = write_results("shape_payoff", {"machine": info, "rows": rows}, "\n".join(lines))
    print(md_path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
