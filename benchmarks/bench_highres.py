"""High-resolution inputs: 4K JPEGs and 1080p/4K video, yolo-ov vs Ultralytics (issue 13, item 3).

Made in a temp folder (never committed):

* **coco96 at 4K**: each coco96 image upscaled (bicubic) to 3840 px on its long
  side, JPEG quality 90, with the coco96 labels (normalised, so unchanged);
* **videos**: the shared 1080p traffic clip played forwards and backwards to
  120 frames, and the same upscaled 2x to 3840x2160 (60 frames); H.264 through
  PyAV when it is installed, else MPEG-4 through OpenCV.

Measured:

* **JPEG folder**: images/s of ``Detector(model, mode="throughput").stream(folder)``
  with the full decode (default: automatic workers), with one worker (the
  previous default) and with ``fast_decode`` (JPEG DCT-domain reduction,
  ``--fast-decode``);
  Ultralytics' ``YOLO(<openvino folder>).predict(folder, stream=True)`` (fresh
  process, warmed on 4 images first); mAP50-95 of the full and the fast decode
  (conf 0.001, multi-label, faster-coco-eval);
* **video decoding alone**: frames/s of OpenCV's FFmpeg reader with its default
  threads (one per core), with ``CAP_PROP_N_THREADS=1``, and of PyAV with
  ``thread_type="AUTO"`` when installed;
* **video end to end**: ``stream(video)`` vs Ultralytics' ``predict(video, stream=True)``.

Target: 4K folder >= 2x Ultralytics' images/s with mAP held (fast decode within
0.002 of the full decode, else it stays opt-in).

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_highres.py [--quick]
Writes benchmarks/results/highres.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, median, ultralytics_predict, write_results
from tests.assets import shared_assets

from yolo_ov import DetectConfig, Detector, PipelineConfig
from yolo_ov.eval.dataset import load_dataset
from yolo_ov.eval.evaluate import evaluate


def ultralytics_fps(model: Path, source: Path) -> float | None:
    """Ultralytics' images/s over ``source`` after a first pass over 4 of its JPEGs (or all of a video)."""
    out = ultralytics_predict(model, source, warmup=4)
    return None if out is None else out["fps_end_to_end"]


def make_4k_set(src: Path, dst: Path, limit: int | None = None) -> Path:
    """coco96 upscaled to 3840 px on the long side, with its labels and data.yaml."""
    (dst / "images").mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / "labels", dst / "labels", dirs_exist_ok=True)
    shutil.copy(src / "data.yaml", dst / "data.yaml")
    for p in sorted((src / "images").glob("*.jpg"))[:limit]:
        img = cv2.imread(str(p))
        r = 3840 / max(img.shape[:2])
        big = cv2.resize(img, (round(img.shape[1] * r), round(img.shape[0] * r)), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(dst / "images" / p.name), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return dst


def _pyav():
    try:
        import av
    except ImportError:
        return None
    return av


def make_video(clip: Path, dst: Path, size: tuple[int, int], frames: int) -> tuple[Path, str]:
    """The clip played back and forth to ``frames`` frames at ``size`` (w, h); H.264 via PyAV, else MPEG-4."""
    cap = cv2.VideoCapture(str(clip))
    src = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        src.append(f if f.shape[1::-1] == size else cv2.resize(f, size, interpolation=cv2.INTER_CUBIC))
    cap.release()
    order = src + src[::-1]
    seq = [order[i % len(order)] for i in range(frames)]
    av = _pyav()
    if av is not None:
        out = av.open(str(dst), "w")
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for f in seq:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        out.close()
        return dst, "H.264 (PyAV libx264, crf 23)"
    dst = dst.with_suffix(".mp4")
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for f in seq:
        writer.write(f)
    writer.release()
    return dst, "MPEG-4 part 2 (OpenCV mp4v)"


def decode_fps(video: Path) -> dict[str, float]:
    """Frames/s of decoding alone: OpenCV default threads, one thread, PyAV (if installed)."""
    out: dict[str, float] = {}
    for name, params in (("opencv_default", []), ("opencv_1_thread", [cv2.CAP_PROP_N_THREADS, 1])):
        cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG, params)
        if name == "opencv_default":
            out["opencv_default_threads"] = cap.get(cv2.CAP_PROP_N_THREADS)
        t0, n = time.perf_counter(), 0
        while cap.read()[0]:
            n += 1
        out[name] = n / (time.perf_counter() - t0)
        cap.release()
    av = _pyav()
    if av is not None:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            t0, n = time.perf_counter(), 0
            for frame in container.decode(stream):
                frame.to_ndarray(format="bgr24")
                n += 1
            out["pyav_auto_threads"] = n / (time.perf_counter() - t0)
    return out


def stream_fps(det: Detector, source: Path, detect: DetectConfig, config: PipelineConfig) -> float:
    list(det.stream(source if source.is_file() else sorted(source.glob("*.jpg"))[:4], detect=detect, config=config))
    t0 = time.perf_counter()
    n = sum(1 for _ in det.stream(source, detect=detect, config=config))
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="INT8 only, 24 images, one round (checks the script)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    assets = shared_assets()
    models = {"INT8": assets.int8_model} if args.quick else {"INT8": assets.int8_model, "FP32": assets.fp32_model}
    load_before = os.getloadavg()
    full, fast = DetectConfig(), DetectConfig(fast_decode=True)
    square = PipelineConfig()  # the default: automatic workers (a second one for images of 4 MP or more)
    one = PipelineConfig(workers=1)
    with tempfile.TemporaryDirectory(prefix="yolo-ov-highres-") as tmp:
        root = Path(tmp)
        data = make_4k_set(assets.coco96, root / "coco96_4k", 24 if args.quick else None)
        folder = data / "images"
        clip = assets.video("traffic_1080p_20frames.mp4")
        v1080, codec = make_video(clip, root / "traffic_1080p.mp4", (1920, 1080), 60 if args.quick else 120)
        v4k, _ = make_video(clip, root / "traffic_4k.mp4", (3840, 2160), 30 if args.quick else 60)
        videos = {"1080p": v1080, "4K": v4k}
        decoding = {name: decode_fps(path) for name, path in videos.items()}
        print("decode:", decoding, flush=True)
        ds = load_dataset(data / "data.yaml")
        rows = []
        for name, model in models.items():
            row: dict = {"model": name}
            with Detector(model, mode="throughput") as det:
                val = DetectConfig(conf=0.001, multi_label=True)
                row["map_full"] = evaluate(ds, det.stream(ds.images, detect=val, config=square)).map50_95
                row["map_fast"] = evaluate(ds, det.stream(
                    ds.images, detect=DetectConfig(conf=0.001, multi_label=True, fast_decode=True),
                    config=square)).map50_95
                runs: dict[str, list[float]] = {"full": [], "full_1_worker": [], "fast": [], "ultralytics": []}
                video_runs: dict[str, list[float]] = {f"{v}_{w}": [] for v in videos for w in ("ours", "ultralytics")}
                for _ in range(rounds):  # interleaved
                    runs["full"].append(stream_fps(det, folder, full, square))
                    runs["full_1_worker"].append(stream_fps(det, folder, full, one))
                    runs["fast"].append(stream_fps(det, folder, fast, square))
                    u = ultralytics_fps(model, folder)
                    if u is not None:
                        runs["ultralytics"].append(u)
                    for v, path in videos.items():
                        video_runs[f"{v}_ours"].append(stream_fps(det, path, full, square))
                        u = ultralytics_fps(model, path)
                        if u is not None:
                            video_runs[f"{v}_ultralytics"].append(u)
            row["folder"] = {k: median(v) for k, v in runs.items() if v}
            row["video"] = {k: median(v) for k, v in video_runs.items() if v}
            row["rounds"] = {"folder": runs, "video": video_runs}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "rounds"}), flush=True)
    info = machine_info()
    info["load_average_before"] = list(load_before)
    info["load_average_after"] = list(os.getloadavg())
    n_images = len(ds.images)
    quick = " --quick" if args.quick else ""
    lines = [
        "# High-resolution inputs: 4K JPEG folder and 1080p/4K video, yolo-ov vs Ultralytics",
        "",
        machine_line(info),
        f"Load average (1 min) before/after: {load_before[0]:.1f} / {info['load_average_after'][0]:.1f}; "
        f"medians of {rounds} interleaved rounds.",
        f"Command: `flock /tmp/yolo-ov-bench.lock python benchmarks/bench_highres.py{quick}`",
        "",
        f"JPEG folder: {n_images} coco96 images upscaled to 3840 px on the long side (quality 90). "
        "mAP50-95: conf 0.001, multi-label NMS, faster-coco-eval.",
        "",
        "Default = full decode with the automatic workers (a second decoder once an image has 4 MP or more); "
        "`workers=1` is the previous default; `--fast-decode` (opt-in) decodes the JPEG at a half, quarter or "
        "eighth of its size in the DCT domain when the letterbox needs no more.",
        "",
        "| model | default img/s | full decode, 1 worker img/s | --fast-decode img/s | Ultralytics img/s | "
        "default / Ultralytics | --fast-decode / Ultralytics | mAP50-95 full | mAP50-95 fast | fast - full |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r["folder"]
        u = f.get("ultralytics")
        versus = (f"{u:.1f} | {f['full'] / u:.2f}x | {f['fast'] / u:.2f}x") if u else "n/a | n/a | n/a"
        lines.append(f"| {r['model']} | {f['full']:.1f} | {f['full_1_worker']:.1f} | {f['fast']:.1f} | {versus} | "
                     f"{r['map_full']:.4f} | {r['map_fast']:.4f} | {r['map_fast'] - r['map_full']:+.4f} |")
    lines += ["", f"Videos: the shared 1080p traffic clip played back and forth ({codec}); the 4K one upscaled 2x.",
              "", f"| video | OpenCV decode fps (default: {decoding['1080p'].get('opencv_default_threads', 0):.0f} "
              "threads) | OpenCV 1 thread | PyAV AUTO threads |",
              "|---|---|---|---|"]
    for v, d in decoding.items():
        pyav = f"{d['pyav_auto_threads']:.1f}" if "pyav_auto_threads" in d else "not installed"
        lines.append(f"| {v} | {d['opencv_default']:.1f} | {d['opencv_1_thread']:.1f} | {pyav} |")
    lines += ["", "| model | video | yolo-ov stream() fps | Ultralytics predict(stream=True) fps | ratio |",
              "|---|---|---|---|---|"]
    for r in rows:
        for v in videos:
            ours, ul = r["video"].get(f"{v}_ours"), r["video"].get(f"{v}_ultralytics")
            ratio = f"{ours / ul:.2f}x" if ours and ul else "n/a"
            lines.append(f"| {r['model']} | {v} | {ours:.1f} | {f'{ul:.1f}' if ul else 'n/a'} | {ratio} |")
    _, md = write_results("highres", {"machine": info, "decoding": decoding, "rows": rows, "video_codec": codec},
                          "\n".join(lines))
    print(md.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
