"""N real RTSP cameras through ``yolo-ov watch`` next to Ultralytics' own thread-per-stream tracking (issue 22).

What a person with cameras wants to know: how many frames per second each
camera gets, how old a result is when it arrives, and what happens when one
camera goes away and comes back. Both sides get the same cameras, the same
IR and the same tracker (ByteTrack), one side at a time:

* the cameras: GStreamer's RTSP server (:mod:`tests.rtsp_support`, one
  server process per camera so one can go away alone), each playing the
  shared ``walking_720p.mp4`` scaled to **640x360** and looped 8 times
  (about 109 s, made once with GStreamer into a temporary folder), in real
  time at 25 fps;
* **yolo-ov**: :class:`~yolo_ov.watch.service.WatchService` in this process
  (what ``yolo-ov watch`` runs), throughput mode, with an observer that
  notes every result and its newest-frame latency (capture -> result);
* **Ultralytics**: ``YOLO(<IR folder>).track(source=<.streams file>,
  stream=True)`` in a child process: its documented multi-stream mode
  (``LoadStreams``, a reader thread per stream, one batch of the newest
  frame of every stream per step). Its ``cv2.VideoCapture`` is wrapped to
  note when each frame was grabbed, so its latency is measured the same way.

Each step (N cameras, one side): wait for the first frame of every camera,
measure ``--seconds`` (fps per camera, latency p50/p95, frames read but not
inferred = dropped), then stop camera 0's server for ``--outage`` seconds,
start it again and measure the time from the restart to that camera's next
real frame (up to ``--recovery-limit`` seconds), and the other cameras' fps
while it was away. The 1-minute load average is noted at every phase: the
machine may be shared.

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_cameras.py [--cameras 1,2,4,8] [--seconds 30]
Writes benchmarks/results/cameras.json and cameras.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, percentile, write_results
from tests.assets import shared_assets
from tests.rtsp_support import SYSTEM_PYTHON, RtspCamera, rtsp_available

WIDTH, HEIGHT, FPS, LOOPS = 640, 360, 25, 8
CLIP = "walking_720p.mp4"
CACHE = Path(tempfile.gettempdir()) / "yolo-ov-bench-cameras"
FIRST_FRAME_LIMIT_S = 120.0

_ENCODE = ("import sys, gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); "
           "p = Gst.parse_launch(sys.argv[1]); p.set_state(Gst.State.PLAYING); "
           "m = p.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR); "
           "p.set_state(Gst.State.NULL); sys.exit(0 if m.type == Gst.MessageType.EOS else 1)")


def looped_clip(clip: Path) -> Path:
    """The clip scaled to 640x360 and looped LOOPS times as one H.264 mp4 (made once, then reused).

    One long file, because GStreamer's ``filesrc ! qtdemux`` plays an mp4 once
    per session, and Ultralytics' reader stops at the frame count the stream
    announces: the file must outlast a step.
    """
    import cv2

    out = CACHE / f"{clip.stem}_{WIDTH}x{HEIGHT}_x{LOOPS}.mp4"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part.mp4")
    pipeline = (f"fdsrc fd=0 blocksize={WIDTH * HEIGHT * 3} ! rawvideoparse width={WIDTH} height={HEIGHT} "
                f"format=bgr framerate={FPS}/1 ! videoconvert ! x264enc speed-preset=ultrafast key-int-max={FPS} "
                f"! mp4mux ! filesink location={part}")
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA).tobytes())
    cap.release()
    proc = subprocess.Popen([SYSTEM_PYTHON, "-c", _ENCODE, pipeline], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for _ in range(LOOPS):
        for frame in frames:
            proc.stdin.write(frame)
    proc.stdin.close()
    if proc.wait(timeout=300) != 0:
        raise SystemExit(f"could not encode the looped clip {part} with GStreamer")
    part.rename(out)
    return out


class Timeline:
    """Every result of a run: (wall time, camera index, latency s or None, frames read by then or None)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.lock = threading.Lock()
        self.frames: list[tuple[float, int, float | None, int | None]] = []
        self.blank: list[tuple[float, int]] = []
        self.ended: tuple[float, str] | None = None

    def add(self, t: float, cam: int, latency: float | None, read: int | None = None) -> None:
        with self.lock:
            self.frames.append((t, cam, latency, read))

    def first_after(self, cam: int, t: float) -> float | None:
        with self.lock:
            return next((ft for ft, c, *_ in self.frames if c == cam and ft > t), None)

    def every_camera_seen(self) -> bool:
        with self.lock:
            return len({c for _, c, *_ in self.frames}) == self.n

    def window(self, t0: float, t1: float) -> list[tuple[float, int, float | None, int | None]]:
        with self.lock:
            return [f for f in self.frames if t0 <= f[0] < t1]


class _Probe:
    """The watch service's observer: notes each result and its latency (quick, never blocks)."""

    def __init__(self, timeline: Timeline, index: dict[str, int]) -> None:
        self.timeline, self.index = timeline, index

    def on_frame(self, camera: str, record: Any, image: Any, *, latency_s: float) -> None:
        self.timeline.add(time.time(), self.index[camera], latency_s)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


# -- the two sides ---------------------------------------------------------------------------------------------


class YoloOvSide:
    """``WatchService`` over the cameras, in this process."""

    name = "yolo-ov"

    def __init__(self, detector: Any, model: Path, urls: list[str], work: Path) -> None:
        from yolo_ov.watch.config import parse_watch_config
        from yolo_ov.watch.service import WatchService

        self.timeline = Timeline(len(urls))
        cams = "".join(f"  cam{k}:\n    url: {url}\n" for k, url in enumerate(urls))
        config = parse_watch_config(f"model: {model}\ncameras:\n{cams}", work / "cameras.yaml")
        probe = _Probe(self.timeline, {f"cam{k}": k for k in range(len(urls))})
        self.service = WatchService(config, detector, outputs={}, observers=[probe])

    def start(self) -> None:
        self.service.start()

    def reads(self) -> list[int]:
        stats = self.service.stats()
        return [stats[f"cam{k}"].frames_read for k in range(self.timeline.n)]

    def drops(self) -> list[int]:
        stats = self.service.stats()
        return [stats[f"cam{k}"].dropped for k in range(self.timeline.n)]

    def alive(self) -> bool:
        return not self.service.wait(0)

    def stop(self) -> str:
        self.service.close()
        return ""


_ULTRALYTICS = r'''
import json, sys, time
import cv2

_real = cv2.VideoCapture
CAPS = []


class Timed:
    """cv2.VideoCapture as Ultralytics' stream threads use it, noting when each frame was grabbed."""

    def __init__(self, *args):
        self._cap = _real(*args)
        self._grabbed = time.time()
        self.reads = 0
        self.times = {}
        CAPS.append(self)

    def grab(self):
        ok = self._cap.grab()
        self._grabbed = time.time()
        self.reads += bool(ok)
        return ok

    def retrieve(self, *a):
        ok, im = self._cap.retrieve(*a)
        if ok and im is not None:
            self.times[id(im)] = self._grabbed
            while len(self.times) > 64:
                self.times.pop(next(iter(self.times)), None)
        return ok, im

    def read(self, *a):
        return self.retrieve(*a) if self.grab() else (False, None)

    def __getattr__(self, name):
        return getattr(self._cap, name)


cv2.VideoCapture = Timed
from ultralytics import YOLO

model_dir, streams = sys.argv[1], sys.argv[2]
n = len(open(streams, encoding="utf-8").read().split())
model = YOLO(model_dir, task="detect")
k = 0
try:
    for r in model.track(source=streams, stream=True, imgsz=640, conf=0.25, iou=0.7, verbose=False,
                         tracker="bytetrack.yaml"):
        i, k = k % n, k + 1
        now = time.time()
        cap = CAPS[i] if i < len(CAPS) else None
        taken = cap.times.pop(id(r.orig_img), None) if cap is not None else None
        print("@@" + json.dumps({"t": now, "s": i, "lat": None if taken is None else now - taken,
                                 "read": cap.reads if cap else None, "blank": not r.orig_img.any()}), flush=True)
    print("@@" + json.dumps({"end": "the track() generator ended", "t": time.time()}), flush=True)
except BaseException as exc:
    print("@@" + json.dumps({"end": f"{type(exc).__name__}: {exc}", "t": time.time()}), flush=True)
    raise
'''


class UltralyticsSide:
    """``YOLO(folder).track(source=<.streams>, stream=True)`` in a child process."""

    name = "Ultralytics"

    def __init__(self, model: Path, urls: list[str], work: Path) -> None:
        self.timeline = Timeline(len(urls))
        self.streams = work / "cameras.streams"
        self.streams.write_text("\n".join(urls) + "\n", encoding="utf-8")
        self.model = model
        self.proc: subprocess.Popen[str] | None = None
        self.last_read = [0] * len(urls)
        self.log: list[str] = []

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _ULTRALYTICS, str(self.model), str(self.streams)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     encoding="utf-8", errors="replace")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("@@"):
                self.log.append(line.rstrip())
                continue
            rec = json.loads(line[2:])
            if "end" in rec:
                self.timeline.ended = (rec["t"], rec["end"])
            elif rec["blank"]:
                self.timeline.blank.append((rec["t"], rec["s"]))
            else:
                self.timeline.add(rec["t"], rec["s"], rec["lat"], rec["read"])
        if self.timeline.ended is None:
            self.timeline.ended = (time.time(), f"the process exited ({self.proc.wait()})")

    def reads(self) -> list[int]:
        with self.timeline.lock:
            for _, c, _, read in self.timeline.frames:
                if read is not None:
                    self.last_read[c] = max(self.last_read[c], read)
        return list(self.last_read)

    def drops(self) -> list[int]:
        return [0] * self.timeline.n  # read - inferred instead (see window())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.timeline.ended is None

    def stop(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        warnings = [line for line in self.log if "WARNING" in line or "ERROR" in line or "Error" in line]
        return "\n".join(warnings[-5:])


# -- one step -----------------------------------------------------------------------------------------------------


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def window(side: Any, t0: float, t1: float, reads0: list[int], reads1: list[int]) -> dict[str, Any]:
    frames = side.timeline.window(t0, t1)
    span = max(t1 - t0, 1e-9)
    n = side.timeline.n
    inferred = [sum(1 for _, c, *_ in frames if c == k) for k in range(n)]
    lats = [lat for _, _, lat, _ in frames if lat is not None]
    read = [b - a for a, b in zip(reads0, reads1, strict=True)]
    return {
        "seconds": round(span, 1),
        "fps": [round(x / span, 2) for x in inferred],
        "total_fps": round(sum(inferred) / span, 2),
        "read_fps": [round(x / span, 2) for x in read],
        "dropped": [max(0, r - i) for r, i in zip(read, inferred, strict=True)],
        "latency_ms": {"p50": round(percentile(lats, 50) * 1000, 1) if lats else None,
                       "p95": round(percentile(lats, 95) * 1000, 1) if lats else None, "samples": len(lats)},
    }


def step(side: Any, servers: list[RtspCamera], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"side": side.name, "cameras": len(servers), "load": {"start": load1()}}
    began = time.time()
    side.start()
    deadline = time.monotonic() + FIRST_FRAME_LIMIT_S
    while time.monotonic() < deadline and side.alive() and not side.timeline.every_camera_seen():
        time.sleep(0.2)
    if not side.timeline.every_camera_seen():
        out["error"] = f"not every camera gave a frame within {FIRST_FRAME_LIMIT_S:.0f} s"
        out["log"] = side.stop()
        return out
    out["first_frames_s"] = round(time.time() - began, 1)
    time.sleep(args.warmup)
    t0, r0, d0 = time.time(), side.reads(), side.drops()
    time.sleep(args.seconds)
    t1, r1, d1 = time.time(), side.reads(), side.drops()
    out["steady"] = window(side, t0, t1, r0, r1)
    out["load"]["steady"] = load1()
    if side.name == "yolo-ov":  # its own count of frames the newest-frame policy replaced
        out["steady"]["policy_drops"] = [b - a for a, b in zip(d0, d1, strict=True)]

    # camera 0 goes away for --outage seconds and comes back
    servers[0].stop()
    stopped, rs = time.time(), side.reads()
    time.sleep(args.outage)
    servers[0].start()
    back = time.time()
    limit = time.monotonic() + args.recovery_limit
    while time.monotonic() < limit and side.alive() and side.timeline.first_after(0, back) is None:
        time.sleep(0.05)
    live = side.timeline.first_after(0, back)
    out["load"]["outage"] = load1()
    others = window(side, stopped, back, rs, side.reads()) if len(servers) > 1 else None
    ended = side.timeline.ended
    restart: dict[str, Any] = {
        "outage_s": round(back - stopped, 1),
        "recovery_s": None if live is None else round(live - back, 2),
        "others_fps_before": out["steady"]["fps"][1:],
        "others_fps_during": others["fps"][1:] if others else [],
        "camera0_frames_after_stop": len([f for f in side.timeline.window(stopped, back) if f[1] == 0]),
        "blank_frames": len([b for b in side.timeline.blank if b[0] >= stopped]),
    }
    if ended is not None:
        restart["run_ended"] = {"after_stop_s": round(ended[0] - stopped, 2), "how": ended[1]}
    if live is None:
        restart["note"] = (f"camera 0 not back within {args.recovery_limit:.0f} s of the restart"
                           if ended is None else "the whole run had ended: no camera gave a frame after it")
    if ended is None and len(servers) > 1:  # did the others go on after camera 0 came back?
        restart["others_frames_after_restart"] = [len([f for f in side.timeline.window(back, time.time())
                                                       if f[1] == k]) for k in range(1, len(servers))]
    out["restart"] = restart
    out["log"] = side.stop()
    out["load"]["end"] = load1()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from yolo_ov import Detector

    assets = shared_assets()
    model = Path(args.model) if args.model else assets.fp32_model
    clip = looped_clip(assets.video(CLIP))
    steps: list[dict[str, Any]] = []
    with Detector(model, mode="throughput") as detector:
        for n in args.cameras:
            for make in (lambda urls, work: YoloOvSide(detector, model, urls, work),
                         lambda urls, work: UltralyticsSide(model, urls, work)):
                servers = [RtspCamera({f"cam{k}": str(clip)}).start() for k in range(n)]
                try:
                    work = Path(tempfile.mkdtemp(prefix="bench-cameras-"))
                    side = make([s.url(f"cam{k}") for k, s in enumerate(servers)], work)
                    print(f"[{time.strftime('%H:%M:%S')}] {side.name}, {n} camera(s), load {load1()}", flush=True)
                    result = step(side, servers, args)
                finally:
                    for server in servers:
                        server.stop()
                print(json.dumps({k: v for k, v in result.items() if k != "log"}), flush=True)
                steps.append(result)
                time.sleep(2.0)
    return {
        "machine": machine_info(),
        "settings": {"cameras": args.cameras, "seconds": args.seconds, "warmup_s": args.warmup,
                     "outage_s": args.outage, "recovery_limit_s": args.recovery_limit, "model": str(model),
                     "source": f"{CLIP} scaled to {WIDTH}x{HEIGHT}, looped, {FPS} fps, H.264 over RTSP (GStreamer)",
                     "yolo_ov": "WatchService, throughput mode, ByteTrack, newest-frame policy",
                     "ultralytics": "YOLO(folder).track(source=<.streams file>, stream=True, imgsz=640, conf=0.25, "
                                    "iou=0.7, tracker='bytetrack.yaml')"},
        "steps": steps,
    }


# -- the report ---------------------------------------------------------------------------------------------------


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values) if values else "-"


def _restart_text(s: dict[str, Any]) -> str:
    r = s.get("restart")
    if r is None:
        return s.get("error", "-")
    if r.get("recovery_s") is not None:
        text = f"live again {r['recovery_s']:.1f} s after the restart"
    elif "run_ended" in r:
        text = (f"the whole run ended {r['run_ended']['after_stop_s']:.1f} s after the camera stopped "
                f"({r['run_ended']['how']})")
    else:
        text = r.get("note", "not back")
    if "run_ended" in r and r["others_fps_before"]:
        text += f"; the other cameras ({_fmt(r['others_fps_before'])} fps before) got no frame after it"
    elif r["others_fps_during"]:
        text += f"; others during the outage {_fmt(r['others_fps_during'])} fps (before {_fmt(r['others_fps_before'])})"
    return text


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    by_n: dict[int, dict[str, dict[str, Any]]] = {}
    for st in result["steps"]:
        by_n.setdefault(st["cameras"], {})[st["side"]] = st
    rows, restarts = [], []
    for n, sides in sorted(by_n.items()):
        yo, ul = sides.get("yolo-ov", {}), sides.get("Ultralytics", {})
        for name, st in (("yolo-ov", yo), ("Ultralytics", ul)):
            w = st.get("steady")
            if not w:
                rows.append(f"| {n} | {name} | - | - | - | - | - | {st.get('load', {}).get('steady', '-')} |")
                continue
            lat = w["latency_ms"]
            rows.append(f"| {n} | {name} | {_fmt(w['fps'])} | {w['total_fps']:.1f} | "
                        f"{lat['p50'] if lat['p50'] is not None else '-'} / "
                        f"{lat['p95'] if lat['p95'] is not None else '-'} | "
                        f"{sum(w['dropped'])} / {sum(int(x * w['seconds']) for x in w['read_fps'])} | "
                        f"{_ratio(yo, ul) if name == 'yolo-ov' else ''} | {st['load'].get('steady', '-')} |")
            restarts.append(f"| {n} | {name} | {_restart_text(st)} | {st['load'].get('outage', '-')} |")
    command = (f"python benchmarks/bench_cameras.py --cameras {','.join(map(str, s['cameras']))} "
               f"--seconds {s['seconds']:g}")
    return f"""# N RTSP cameras: yolo-ov watch against Ultralytics' thread-per-stream tracking

{machine_line(result['machine'])}

Command: `flock /tmp/yolo-ov-bench.lock {command}`.
Cameras: {s['source']}, one GStreamer RTSP server per camera on 127.0.0.1 (each decodes and re-encodes
its clip with x264 on the same CPU: both sides pay it).
Model `{Path(s['model']).name}` on both sides, one side at a time.
yolo-ov: {s['yolo_ov']}.
Ultralytics: `{s['ultralytics']}`.
Each step: {s['warmup_s']:g} s after every camera's first frame, {s['seconds']:g} s measured, then camera 0's server
is stopped for {s['outage_s']:g} s and started again. Latency: from the frame's grab to its result. Dropped: frames
read but never inferred (a newer frame replaced them). Load: the 1-minute load average while measuring (the
machine is shared).

| cameras | runner | fps per camera | total fps | latency p50 / p95 ms | dropped / read | yolo-ov / Ultralytics | load |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Camera 0 restarted ({s['outage_s']:g} s outage; recovery = from the server's restart to that camera's next frame):

| cameras | runner | what happened | load |
|---|---|---|---|
{chr(10).join(restarts)}
"""


def _ratio(yo: dict[str, Any], ul: dict[str, Any]) -> str:
    a, b = (yo.get("steady") or {}).get("total_fps"), (ul.get("steady") or {}).get("total_fps")
    return f"{a / b:.2f}x" if a and b else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", default="1,2,4,8", help="camera counts, comma-separated (default 1,2,4,8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per step (default 30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the first frames, not measured")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds camera 0's server stays away")
    parser.add_argument("--recovery-limit", type=float, default=40.0,
                        help="seconds to wait for camera 0 after its restart (default 40)")
    parser.add_argument("--model", help="an OpenVINO IR folder (default the shared FP32 yolov8n)")
    parser.add_argument("--name", default="cameras", help="results/<name>.json and .md")
    args = parser.parse_args()
    try:
        args.cameras = [int(x) for x in args.cameras.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--cameras {args.cameras}: expected counts like 1,2,4")
    if not args.cameras or min(args.cameras) < 1:
        parser.error("--cameras: expected counts of at least 1, like 1,2,4")
    if args.model and not Path(args.model).exists():
        parser.error(f"--model {args.model}: no such model folder")
    reason = rtsp_available()
    if reason is not None:
        raise SystemExit(reason)
    result = run(args)
    json_path, md_path = write_results(args.name, result, markdown(result))
    print(markdown(result))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
