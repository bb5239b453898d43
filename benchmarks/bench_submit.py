"""``submit()`` from 8 concurrent callers vs ``stream()`` over the same in-memory frames.

A server puts many independent callers on one compiled model; ``stream()`` is
the throughput engine's own best case (one feeder, results in order). Both
run on one throughput-mode ``Detector`` per model, over the same decoded
coco96 frames (BGR arrays: letterbox, inference and NMS are timed, JPEG
decoding is not), in interleaved rounds; medians are reported with the ratio.

Each of the 8 callers submits one image, waits for its result, submits the
next (a synchronous client per thread, as web handlers are).

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_submit.py [--rounds 5] [--images 384]
Writes benchmarks/results/submit.json and submit.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, median, write_results
from tests.assets import shared_assets

from yolo_ov import Detector

CALLERS = 8


def stream_rate(det: Detector, frames: list, n: int) -> float:
    t0 = time.perf_counter()
    count = sum(1 for _ in det.stream(itertools.islice(itertools.cycle(frames), n)))
    return count / (time.perf_counter() - t0)


def submit_rate(det: Detector, frames: list, n: int, callers: int = CALLERS) -> float:
    per_caller = n // callers
    start = threading.Barrier(callers + 1)

    def caller(k: int) -> None:
        start.wait()
        for i in range(per_caller):
            det.submit(frames[(k * per_caller + i) % len(frames)]).result(timeout=120)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(callers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return per_caller * callers / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=384, help="images per measurement")
    args = parser.parse_args()
    assets = shared_assets()
    frames = [cv2.imread(str(p)) for p in assets.coco96_images]
    info = machine_info()
    rows = []
    for name, model in (("FP32", assets.fp32_model), ("INT8", assets.int8_model)):
        with Detector(model, mode="throughput") as det:
            list(det.stream(frames[:16]))
            [det.submit(f).result() for f in frames[:16]]
            streams, submits = [], []
            for r in range(args.rounds):
                first, second = (stream_rate, submit_rate) if r % 2 == 0 else (submit_rate, stream_rate)
                a = first(det, frames, args.images)
                b = second(det, frames, args.images)
                (streams if first is stream_rate else submits).append(a)
                (submits if first is stream_rate else streams).append(b)
                print(f"{name} round {r + 1}: stream {streams[-1]:.1f} img/s, "
                      f"submit x{CALLERS} {submits[-1]:.1f} img/s", flush=True)
            stats = det.pipeline().submitter.stats
            rows.append({"model": name, "stream_ips": streams, "submit_ips": submits,
                         "stream_median": median(streams), "submit_median": median(submits),
                         "ratio": median(submits) / median(streams), "requests": det.pipeline().num_requests,
                         "submit_batch_sizes": dict(stats.batch_sizes)})
    md = [
        "# submit() from 8 callers vs stream(), same in-memory frames",
        "",
        machine_line(info),
        f"Command: `python benchmarks/bench_submit.py --rounds {args.rounds} --images {args.images}`; "
        f"medians of {args.rounds} interleaved rounds of {args.images} images (coco96 decoded to arrays).",
        "",
        "| model | stream() img/s | submit() x8 img/s | submit / stream | requests in flight |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        md.append(f"| {row['model']} | {row['stream_median']:.1f} | {row['submit_median']:.1f} | "
                  f"{row['ratio']:.2f}x | {row['requests']} |")
    json_path, md_path = write_results("submit", {"machine": info, "callers": CALLERS, "rounds": args.rounds,
                                                  "images": args.images, "rows": rows}, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
