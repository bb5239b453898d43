"""Before and after a change, in one run: the same measurements on two source trees, interleaved.

A refactor (or a numerical fix) must leave latency, throughput and serving where they were. Comparing with a
figure measured weeks ago on another machine says little on a 2-core machine whose load drifts; this script
checks out ``--base`` (a git revision) into a temporary worktree and measures it and the working tree
alternately, round after round, each measurement in a fresh process that imports only that tree's
``yolo_ov`` (``PYTHONPATH``), through the public API every version has:

* **latency**: ``Detector(mode="latency")(array)`` on decoded coco96 images, median ms per call;
* **throughput**: ``Detector(mode="throughput").stream(folder)`` over the coco96 JPEG folder, images/s;
* **submit**: 8 caller threads on ``Detector.submit``, images/s;
* **serve**: ``yolo-ov serve`` of that tree on a free 127.0.0.1 port, 8 client threads posting JPEGs to
  ``/predict``, requests/s and median latency;
* **video**: a fresh ``Detector(mode="throughput").stream(video)`` over the shared 341-frame 1280x720 clip,
  frames/s from the call to the last result (compiling its 384x640 shape from a warm model cache included: what
  one ``yolo-ov predict clip.mp4`` costs), and the frames run at each shape.

Figures are medians over rounds; the ratio is after/before. Machine, load and inference precision are printed
and written with them (``benchmarks/results/before_after.{json,md}``).

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_before_after.py --base bd03b45 [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, machine_info, machine_line, median, write_results
from tests.assets import shared_assets

#: The child: measures one tree (its yolo_ov on PYTHONPATH) and prints one JSON line.
CHILD = r'''
import json, os, socket, statistics, subprocess, sys, threading, time, urllib.request
from pathlib import Path
import cv2
from yolo_ov import Detector
kind, model, folder, seconds, tree = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
video = sys.argv[6]
paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
out = {}
if kind == "latency":
    images = [cv2.imread(str(p)) for p in paths]
    with Detector(model, mode="latency") as det:
        for img in images[:5]:
            det(img)
        times, i, end = [], 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            det(images[i % len(images)])
            times.append((time.perf_counter() - t0) * 1e3)
            i += 1
        out = {"median_ms": statistics.median(times), "calls": len(times),
               "precision": det.compiled_info.inference_precision}
elif kind == "throughput":
    with Detector(model, mode="throughput") as det:
        sum(1 for _ in det.stream(str(folder)))
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            n += sum(1 for _ in det.stream(str(folder)))
        out = {"images_per_s": n / (time.perf_counter() - t0), "precision": det.compiled_info.inference_precision}
elif kind == "submit":
    data = [p.read_bytes() for p in paths]
    with Detector(model, mode="throughput") as det:
        [f.result() for f in [det.submit(d) for d in data[:16]]]
        count, lock, stop = [0], threading.Lock(), time.perf_counter() + seconds
        def caller(k):
            i = k
            while time.perf_counter() < stop:
                det.submit(data[i % len(data)]).result(); i += 8
                with lock:
                    count[0] += 1
        t0 = time.perf_counter()
        threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
        [t.start() for t in threads]; [t.join() for t in threads]
        out = {"images_per_s": count[0] / (time.perf_counter() - t0),
               "precision": det.compiled_info.inference_precision}
elif kind == "serve":
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    env = {**os.environ, "PYTHONPATH": tree}
    server = subprocess.Popen([sys.executable, "-c", "from yolo_ov.cli import main; main()", "serve", "--model", model,
                               "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if urllib.request.urlopen(url + "/v2/health/ready", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        data = [p.read_bytes() for p in paths]
        def post(body):
            req = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": "image/jpeg"})
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
        for d in data[:8]:
            post(d)
        lat, lock, stop = [], threading.Lock(), time.perf_counter() + seconds
        def client(k):
            i = k
            while time.perf_counter() < stop:
                t0 = time.perf_counter(); post(data[i % len(data)]); dt = (time.perf_counter() - t0) * 1e3; i += 8
                with lock:
                    lat.append(dt)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        [t.start() for t in threads]; [t.join() for t in threads]
        out = {"requests_per_s": len(lat) / (time.perf_counter() - t0), "median_ms": statistics.median(lat)}
    finally:
        server.terminate(); server.wait(30)
elif kind == "video":
    with Detector(model, mode="throughput") as det:
        t0 = time.perf_counter()
        run = det.stream(video)
        frames = sum(1 for _ in run)
        out = {"frames_per_s": frames / (time.perf_counter() - t0), "frames": frames,
               "shapes": dict(run.stats.shapes), "precision": det.compiled_info.inference_precision}
print("RESULT " + json.dumps(out))
'''

KINDS = {"latency": "median_ms", "throughput": "images_per_s", "submit": "images_per_s", "serve": "requests_per_s",
         "video": "frames_per_s"}
#: What a run measures unless --kinds says otherwise (video is asked for by name).
DEFAULT_KINDS = "latency,throughput,submit,serve"


def measure(tree: Path, kind: str, model: Path, folder: Path, seconds: float, video: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, str(model), str(folder), str(seconds), str(tree / "src"),
                           str(video)],
                          env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", check=False,
                          timeout=seconds * 4 + 300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{kind} on {tree} failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision measured as 'before'")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--kinds", default=DEFAULT_KINDS,
                        help="comma-separated: " + ", ".join(KINDS))
    parser.add_argument("--name", default="before_after", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    assets = shared_assets()
    model, folder, video = assets.fp32_model, assets.coco96 / "images", assets.video("walking_720p.mp4")
    kinds = [k for k in args.kinds.split(",") if k]
    info = machine_info()
    print(machine_line(info))
    rows: dict[str, dict[str, list[float]]] = {k: {"before": [], "after": []} for k in kinds}
    precision = None
    shape_runs: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="yolo-ov-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base], check=True,
                       capture_output=True)
        try:
            for r in range(args.rounds):
                for kind in kinds:
                    order = [("before", base), ("after", REPO)] if r % 2 == 0 else [("after", REPO), ("before", base)]
                    for label, tree in order:
                        res = measure(tree, kind, model, folder, args.seconds, video)
                        precision = res.get("precision", precision)
                        rows[kind][label].append(res[KINDS[kind]])
                        if kind == "video":
                            shape_runs[label].append(res["shapes"])
                        print(f"round {r + 1} {kind:10s} {label:6s} {res}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    table = {}
    for kind in kinds:
        before, after = median(rows[kind]["before"]), median(rows[kind]["after"])
        table[kind] = {"metric": KINDS[kind], "before": before, "after": after, "ratio": after / before,
                       "rounds": rows[kind]}
    data = {"machine": info, "base": args.base, "precision": precision, "seconds": args.seconds,
            "rounds": args.rounds, "model": str(model.name), "results": table, "video_shapes": shape_runs}
    lines = [f"# Before and after: `{args.base}` vs the working tree", "",
             f"{machine_line(info).rstrip('.')}; model `{model.name}`, inference precision {precision}; "
             f"{args.rounds} interleaved rounds of {args.seconds:g} s each (a video measurement: the whole clip), "
             "medians.", "",
             "| measurement | metric | before | after | after / before |", "|---|---|---|---|---|"]
    for kind, row in table.items():
        lines.append(f"| {kind} | {row['metric']} | {row['before']:.2f} | {row['after']:.2f} | {row['ratio']:.3f} |")
    if "video" in rows:
        lines += ["", "Frames at each shape, per video run: " + "; ".join(
            f"{label}: " + ", ".join(str(s) for s in runs) for label, runs in shape_runs.items())]
    extra = "" if args.kinds == DEFAULT_KINDS else f" --kinds {args.kinds}"
    extra += "" if args.name == "before_after" else f" --name {args.name}"
    lines += ["", "Command: `flock /tmp/yolo-ov-bench.lock python benchmarks/bench_before_after.py "
              f"--base {args.base} --rounds {args.rounds} --seconds {args.seconds:g}{extra}`"]
    write_results(args.name, data, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
