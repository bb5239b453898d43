"""Stream density: how many real-time camera streams one machine serves (issue 13 item 4, issue 15 item 2).

N simulated IP cameras (N = 1, 2, 4, 8) stream a shared clip, looped, at its
own frame rate: a loopback HTTP server sends multipart MJPEG (what IP cameras
serve; OpenCV's FFmpeg reads it, for both tools), one connection per camera,
each camera starting at a different point of the clip. Like a real camera, a
camera here never waits for a slow client: a frame due while its connection
is full is lost (small socket buffers on both ends, ``SEND_BUFFER`` and
``RECV_BUFFER``), so no backlog builds up in the network. The server records
when each frame was due and which frames it delivered; the answer to a frame
is traced back to it by yolo-ov's frame index (the k-th frame read) or, for
Ultralytics, by the clip index stamped as 16 black/white blocks in the
frame's top-left corner and read back from ``result.orig_img``. So the
capture-to-result latency of every answered frame is measured the same way
on both sides.

Side by side, same run, same cameras, same OpenVINO model (the shared FP32 IR),
conf 0.25, iou 0.7:

* ``yolo-ov``: one throughput-mode ``Detector``, ``det.stream([url, ...])``:
  the live ``latest`` policy (a reader per camera keeps the newest frame),
  requests in flight shared by all streams, shape specialisation on (the
  default for cameras: 384x640 for 16:9).
* ``ultralytics``: its documented multi-stream way: one thread per stream,
  each with its own ``YOLO(model_dir)`` and ``predict(url, stream=True)``
  (``LoadStreams`` keeps the newest frame too).
* ``track-N``: yolo-ov tracking (ByteTrack) with ``detect_every=N`` (1, 2, 3):
  the detector sees every Nth frame offered by each camera, the tracker
  answers the others; an answered frame is an inferred or a predicted one.

Each configuration runs in a fresh process for ``--warmup`` seconds (model
compile, first requests; not measured) and then ``--seconds`` measured. Per
configuration: answered frames/s in total and per stream, the share of frames
sent in the window that got no answer (dropped), fairness (fewest / most
answered frames of any stream), and the latency from a frame's sending to its
answer (median, p95; for tracking also over inferred frames only).

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_density.py [--streams 1,2,4,8] [--seconds 15] [--rounds 2]
Writes benchmarks/results/density.json and density.md (about 10 minutes per round with the defaults).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import resource
import select
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, median, percentile, write_results

STAMP_BITS = 16
STAMP_BLOCK = 12
#: Socket buffers of the cameras (server side) and of OpenCV's FFmpeg reader (client side, both
#: tools alike): about one 720p JPEG each, so frames wait in a camera's connection, not pile up there.
SEND_BUFFER = 64 * 1024
RECV_BUFFER = 128 * 1024
METHODS = ("yolo-ov", "ultralytics", "track-1", "track-2", "track-3")


# -- frame stamps ---------------------------------------------------------------------------------
def stamp(image: np.ndarray, number: int) -> np.ndarray:
    out = image.copy()
    for bit in range(STAMP_BITS):
        value = 255 if (number >> bit) & 1 else 0
        out[:STAMP_BLOCK, bit * STAMP_BLOCK:(bit + 1) * STAMP_BLOCK] = value
    return out


def read_stamp(image: np.ndarray) -> int:
    number = 0
    for bit in range(STAMP_BITS):
        block = image[2:STAMP_BLOCK - 2, bit * STAMP_BLOCK + 2:(bit + 1) * STAMP_BLOCK - 2]
        if block.mean() > 127:
            number |= 1 << bit
    return number


# -- the cameras -----------------------------------------------------------------------------------
def encode_clip(clip: list[np.ndarray]) -> list[bytes]:
    """Each clip frame as a JPEG (quality 90) stamped with its index in the clip, encoded once."""
    return [cv2.imencode(".jpg", stamp(f, k), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for k, f in enumerate(clip)]


class Cameras:
    """``n`` MJPEG cameras on one loopback HTTP server, each looping the clip at ``fps`` from its own offset.

    Like a real camera, a camera here never waits for its client: a frame whose
    turn comes while the connection cannot take it (the client is behind, its
    small socket buffer full) is lost, not queued, so a slow client sees fresh
    frames with gaps rather than an ever older backlog. ``produced[cam][seq]``
    is when frame ``seq`` was due (``time.monotonic``: one clock for every
    process on the machine); ``delivered[cam]`` lists the frames written, in
    order (the k-th frame a client reads is ``delivered[cam][k]``).
    """

    def __init__(self, jpegs: list[bytes], n: int, fps: float) -> None:
        self.fps = fps
        self.n = n
        self.length = len(jpegs)
        self.offsets = [len(jpegs) * k // n for k in range(n)]
        self.produced: dict[int, list[float]] = {k: [] for k in range(n)}
        self.delivered: dict[int, list[int]] = {k: [] for k in range(n)}
        self.stopping = threading.Event()
        cameras = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                cam = int(self.path.strip("/").split(".")[0].removeprefix("cam"))
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                produced, delivered = cameras.produced[cam], cameras.delivered[cam]
                produced.clear()
                delivered.clear()
                start, seq = time.monotonic(), 0
                try:
                    while not cameras.stopping.is_set():
                        delay = start + seq / fps - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        produced.append(start + seq / fps)
                        if select.select([], [self.connection], [], 0)[1]:  # else: lost, as on a real camera
                            data = jpegs[(cameras.offsets[cam] + seq) % len(jpegs)]
                            head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                            delivered.append(seq)
                            self.wfile.write(head.encode() + data + b"\r\n")
                        seq += 1
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, *args: object) -> None:
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.urls = [f"http://127.0.0.1:{port}/cam{k}.mjpg" for k in range(n)]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def sequence(self, cam: int, number: int, answered_at: float) -> int | None:
        """The camera frame behind an answer: ``number >= 0`` is the client's frame index (the k-th
        frame it read); ``number < 0`` is ``-1 - clip index`` read from the stamp (the latest
        delivered frame showing it before the answer: the clip loops)."""
        delivered = self.delivered[cam]
        if number >= 0:
            return delivered[number] if number < len(delivered) else None
        clip_index = -1 - number
        produced = self.produced[cam]
        for seq in reversed(delivered):
            if produced[seq] <= answered_at and (self.offsets[cam] + seq) % self.length == clip_index:
                return seq
        return None

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


# -- one configuration, in a child process ------------------------------------------------------------
def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(method: str, urls: list[str], model: str, warmup: float, seconds: float, out: Path) -> None:
    records: list[tuple[int, int, float, bool]] = []  # (stream, sequence number, answered at, predicted)
    lock = threading.Lock()
    cpu: dict[str, float] = {}
    start = ready = time.monotonic()

    def window_started() -> None:
        cpu["start"] = _cpu_s()

    if method == "ultralytics":
        # Ultralytics' documented thread-safe way: each thread builds its own model and predicts its stream.
        from ultralytics import YOLO

        first = [threading.Event() for _ in urls]
        stop = threading.Event()

        def one(k: int) -> None:
            model_k = YOLO(model, task="detect")
            for r in model_k.predict(urls[k], stream=True, conf=0.25, iou=0.7, verbose=False):
                now = time.monotonic()
                first[k].set()
                with lock:  # the stamp is the clip index: the parent finds which loop of the clip it was
                    records.append((k, -1 - read_stamp(r.orig_img), now, False))
                if stop.is_set():
                    break

        threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(len(urls))]
        for t in threads:
            t.start()
        for event in first:  # the window starts once every stream has its model compiled and answering
            event.wait(timeout=max(0.0, start + 120 - time.monotonic()))
        ready = time.monotonic()
        threading.Timer(warmup, window_started).start()
        time.sleep(warmup + seconds)
        stop.set()
    else:
        from yolo_ov import DetectConfig, Detector

        det = Detector(model, mode="throughput", detect=DetectConfig(conf=0.25, iou=0.7))
        ready = time.monotonic()
        deadline = ready + warmup + seconds
        threading.Timer(warmup, window_started).start()
        if method == "yolo-ov":
            run: Any = det.stream(urls)
        else:
            run = det.track(urls, detect_every=int(method.split("-")[1]))
        inferred = 0
        with run:
            for r in run:
                now = time.monotonic()
                # a tracking run counts the frames its detector answered: no increase, a predicted frame
                predicted = method != "yolo-ov" and run.inferred == inferred
                inferred = getattr(run, "inferred", 0)
                if r.frame is not None:
                    with lock:
                        records.append((int(r.stream or 0), int(r.frame), now, predicted))
                if now > deadline:
                    break
        det.close()
    cpu_window = _cpu_s() - cpu.get("start", 0.0)
    with lock:
        done = list(records)
    out.write_text(json.dumps({"ready": ready, "records": done, "cpu_s": cpu_window}), encoding="utf-8")
    sys.stdout.flush()
    os._exit(0)  # camera readers may still block on their sockets; the parent has what it needs


# -- what detect-every costs in agreement (the same clip, every frame in order) ----------------------------
def agreement(model: Path, clip_path: Path, reference_path: Path) -> list[dict[str, Any]]:
    """ByteTrack on our detections of every frame, updated on every Nth frame and predicted between,
    against every-frame tracking and against Ultralytics' own (when the reference is there)."""
    from yolo_ov import DetectConfig, Detector
    from yolo_ov.pipeline import PipelineConfig
    from yolo_ov.track import FrameTracks, Tracker, TrackerConfig, frame_agreement, idf1

    with Detector(model, mode="throughput", detect=DetectConfig(conf=0.25, iou=0.7)) as det, \
            det.stream(clip_path, config=PipelineConfig(specialize="off")) as run:
        detections = list(run)
    truth = None
    if reference_path.exists():
        frames = json.loads(reference_path.read_text(encoding="utf-8"))["trackers"]["bytetrack"]["frames"]
        truth = [FrameTracks.of(f["xyxy"], f["cls"], f["id"]) for f in frames]

    def tracked(every: int) -> list[FrameTracks]:
        tracker, out = Tracker(TrackerConfig.defaults("bytetrack")), []
        for k, d in enumerate(detections):
            objs = tracker.predict(frame=k) if k % every else tracker.update(d.xyxy, d.confidence, d.class_id,
                                                                              frame=k)
            out.append(FrameTracks.of(objs.xyxy, objs.class_id, objs.track_id))
        return out

    base = tracked(1)
    rows = []
    for every in (1, 2, 3):
        ours = tracked(every)
        row = {"detect_every": every, "idf1_vs_every_frame": idf1(base, ours),
               "objects_iou50": frame_agreement(ours, base, iou=0.5).both_ways,
               "objects_iou90": frame_agreement(ours, base, iou=0.9).both_ways,
               "ids": len({int(i) for f in ours for i in f.track_id})}
        if truth is not None:
            row["idf1_vs_ultralytics"] = idf1(truth, ours)
        rows.append(row)
    return rows


# -- the parent: cameras, children, figures ---------------------------------------------------------------
def run_config(method: str, n: int, jpegs: list[bytes], fps: float, args: argparse.Namespace) -> dict[str, Any]:
    cams = Cameras(jpegs, n, fps)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        cmd = [sys.executable, __file__, "--child", method, "--model", str(args.model), "--warmup",
               str(args.warmup), "--seconds", str(args.seconds), "--out", str(out), *cams.urls]
        env = {**os.environ, "OPENCV_FFMPEG_CAPTURE_OPTIONS": f"recv_buffer_size;{RECV_BUFFER}"}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                    encoding="utf-8", errors="replace", timeout=args.warmup + args.seconds + 240,
                                  env=env)
            error = None if proc.returncode == 0 and out.exists() else (proc.stderr or proc.stdout)[-6000:]
        except subprocess.TimeoutExpired:  # subprocess.run kills it; the run goes on with the next config
            error = f"no result within {args.warmup + args.seconds + 240:.0f} s (killed)"
        cams.close()
        if error is not None:
            print(f"{method} x{n} failed: {error}", flush=True)
            return {"method": method, "streams": n, "error": error, "answered_fps": float("nan"),
                    "load_average_after": [round(v, 2) for v in os.getloadavg()]}
        data = json.loads(out.read_text(encoding="utf-8"))
    t0 = data["ready"] + args.warmup
    t1 = t0 + args.seconds
    answered: dict[int, int] = dict.fromkeys(range(n), 0)
    inferred = 0
    latency, latency_inferred = [], []
    for stream, number, at, predicted in data["records"]:
        if not t0 <= at <= t1:
            continue
        seq = cams.sequence(stream, number, at)
        if seq is None:
            continue
        answered[stream] += 1
        lat = (at - cams.produced[stream][seq]) * 1e3
        latency.append(lat)
        if not predicted:
            inferred += 1
            latency_inferred.append(lat)
    sent = sum(sum(1 for t in cams.produced[k] if t0 <= t <= t1) for k in range(n))
    delivered = sum(sum(1 for q in cams.delivered[k] if t0 <= cams.produced[k][q] <= t1) for k in range(n))
    total = sum(answered.values())
    per_stream = [answered[k] / args.seconds for k in range(n)]
    return {
        "method": method,
        "streams": n,
        "answered_fps": total / args.seconds,
        "per_stream_fps": per_stream,
        "inferred_fps": inferred / args.seconds,
        "sent_fps": sent / args.seconds,
        "delivered_share": delivered / sent if sent else float("nan"),  # the rest the camera lost: client behind
        "dropped_share": max(0.0, 1 - total / sent) if sent else float("nan"),
        "fairness": min(per_stream) / max(per_stream) if max(per_stream) > 0 else 0.0,
        "latency_median_ms": median(latency) if latency else float("nan"),
        "latency_p95_ms": percentile(latency, 95),
        "inferred_latency_median_ms": median(latency_inferred) if latency_inferred else float("nan"),
        "inferred_latency_p95_ms": percentile(latency_inferred, 95),
        "cpu_s_per_answered_frame": data["cpu_s"] / max(total, 1),  # CPU of the process in the window
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }


def _coverage(row: dict[str, Any]) -> float:
    every = int(row["method"].split("-")[1]) if row["method"].startswith("track-") else 1
    return row["inferred_fps"] / (row["sent_fps"] / every) if row.get("sent_fps") else float("nan")


def markdown(rows: list[dict[str, Any]], agree: list[dict[str, Any]], info: dict[str, Any],
             args: argparse.Namespace, fps: float, load_before: list[float]) -> str:
    lines = [
        f"# Stream density: N live {args.clip.name} cameras ({fps:g} fps, looped) on one machine",
        "",
        machine_line(info),
        f"Load average before the run: {load_before} (1, 5, 15 min); each row's load after it is in the JSON. "
        f"Command: `python benchmarks/bench_density.py --streams {args.streams} --seconds {args.seconds:g} "
        f"--warmup {args.warmup:g} --rounds {args.rounds}` (each row: the round with the median answered fps).",
        "",
        "Answered = frames given a result (tracking: inferred or predicted). Dropped = share of the frames sent in "
        "the window that got none. Coverage = inferred frames / the frames the method means to infer (every "
        "frame; every Nth with `track-N`): below 1 the detector is behind, and a tracker's predictions reach "
        "further from its last detection, so answered frames alone overstate what a starved `track-N` serves. "
        "Fairness = fewest / most answered of any stream. Latency = from the camera sending a frame to its "
        "result (ms); for tracking, 'inferred' counts only frames the detector saw.",
        "",
        "| streams | method | answered fps (total) | per stream fps | inferred fps | coverage | dropped | fairness "
        "| latency median / p95 ms | inferred latency median / p95 ms | CPU ms per answered frame | load after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['streams']} | {r['method']} | failed: {r['error'].splitlines()[-1][:80]} "
                         "| | | | | | | | | |")
            continue
        lines.append(
            f"| {r['streams']} | {r['method']} | {r['answered_fps']:.1f} | {np.mean(r['per_stream_fps']):.1f} "
            f"| {r['inferred_fps']:.1f} | {_coverage(r):.2f} | {r['dropped_share']:.0%} | {r['fairness']:.2f} "
            f"| {r['latency_median_ms']:.0f} / {r['latency_p95_ms']:.0f} "
            f"| {r['inferred_latency_median_ms']:.0f} / {r['inferred_latency_p95_ms']:.0f} "
            f"| {r['cpu_s_per_answered_frame'] * 1e3:.1f} | {r['load_average_after'][0]:.1f} |"
        )
    by = {(r["streams"], r["method"]): r for r in rows}
    if agree:
        lines += ["", f"What `--detect-every N` costs (ByteTrack on {args.clip.name}, every frame in order, "
                  "against every-frame tracking; square 640 input as Ultralytics):", "",
                  "| N | IDF1 vs every frame | objects IoU>=0.5 | objects IoU>=0.9 | distinct ids "
                  "| IDF1 vs Ultralytics' every-frame ByteTrack |", "|---|---|---|---|---|---|"]
        for a in agree:
            vs_ul = f"{a['idf1_vs_ultralytics']:.3f}" if "idf1_vs_ultralytics" in a else "-"
            lines.append(f"| {a['detect_every']} | {a['idf1_vs_every_frame']:.3f} | {a['objects_iou50']:.3f} "
                         f"| {a['objects_iou90']:.3f} | {a['ids']} | {vs_ul} |")
    lines += ["", "Ratios against Ultralytics' thread-per-stream way (answered fps):", ""]
    for n in sorted({r["streams"] for r in rows}):
        base = by.get((n, "ultralytics"))
        if not base or "error" in base or not base["answered_fps"]:
            continue
        parts = [f"{m} {by[(n, m)]['answered_fps'] / base['answered_fps']:.2f}x" for m in METHODS
                 if m != "ultralytics" and (n, m) in by and "error" not in by[(n, m)]]
        lines.append(f"- {n} streams: " + ", ".join(parts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("urls", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--streams", default="1,2,4,8")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the median round is reported")
    parser.add_argument("--no-agreement", action="store_true", help="skip the detect-every agreement part")
    parser.add_argument("--from-json", type=Path, help="write density.md again from a results JSON")
    parser.add_argument("--name", default="density", help="results file name (benchmarks/results/NAME.json/.md)")
    args = parser.parse_args()
    if args.from_json:
        data = json.loads(args.from_json.read_text(encoding="utf-8"))
        args.clip = Path(data["clip"])
        args.seconds, args.warmup, args.rounds = data["seconds"], data["warmup"], data.get("rounds", 1)
        args.streams = ",".join(str(n) for n in sorted({r["streams"] for r in data["rows"]}))
        write_results(args.name, data, markdown(data["rows"], data["detect_every_agreement"], data["machine"], args,
                                                data["fps"], data["load_average_before"]))
        return
    if args.child:
        import faulthandler

        # a child still running well after its window prints every thread's stack and exits: the parent
        # records it as failed with that stack instead of waiting for its own timeout
        faulthandler.dump_traceback_later(args.warmup + args.seconds + 180, exit=True)
        child(args.child, args.urls, str(args.model), args.warmup, args.seconds, args.out)
        return

    from tests.assets import shared_assets

    shared = shared_assets()
    args.model = args.model or shared.fp32_model
    args.clip = args.clip or shared.root / "data" / "video" / "walking_720p.mp4"
    cap = cv2.VideoCapture(str(args.clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    clip = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        clip.append(frame)
    cap.release()
    jpegs = encode_clip(clip)
    del clip
    load_before = [round(v, 2) for v in os.getloadavg()]
    info = machine_info()
    print(machine_line(info), flush=True)  # the machine and the inference precision, before the figures
    agree = [] if args.no_agreement else agreement(
        args.model, args.clip, args.clip.parent / "tracking_reference_walking_720p.json")
    for a in agree:
        print(f"detect-every {a['detect_every']}: IDF1 vs every frame {a['idf1_vs_every_frame']:.3f}", flush=True)
    rows = []
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):  # rounds interleave the methods, so a busy spell hits all of them
        for n in [int(v) for v in args.streams.split(",")]:
            for method in args.methods.split(","):
                row = {**run_config(method, n, jpegs, fps, args), "round": round_ + 1}
                runs.append(row)
                if "error" in row:
                    continue
                print(f"round {round_ + 1}: {n} streams {method:12s} answered {row['answered_fps']:6.1f} fps, "
                      f"dropped {row['dropped_share']:.0%}, fairness {row['fairness']:.2f}, latency median "
                      f"{row['latency_median_ms']:.0f} ms p95 {row['latency_p95_ms']:.0f} ms, load "
                      f"{row['load_average_after'][0]}", flush=True)
    for n in [int(v) for v in args.streams.split(",")]:
        for method in args.methods.split(","):  # the round with the median answered fps stands for the config
            mine = sorted((r for r in runs if r["streams"] == n and r["method"] == method),
                          key=lambda r: (-1.0 if "error" in r else r["answered_fps"]))
            rows.append({**mine[len(mine) // 2], "answered_fps_rounds": [r["answered_fps"] for r in mine]})
    data = {"machine": info, "clip": str(args.clip.name), "fps": fps, "seconds": args.seconds,
            "warmup": args.warmup, "rounds": args.rounds, "load_average_before": load_before, "rows": rows,
            "runs": runs, "detect_every_agreement": agree,
            "load_average_after": [round(v, 2) for v in os.getloadavg()]}
    paths = write_results(args.name, data, markdown(rows, agree, info, args, fps, load_before))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
