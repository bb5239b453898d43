"""Soak of the watch service (issue 22, "done means"): N real RTSP cameras for M minutes, one restarted every minute.

``yolo-ov watch`` is meant to run for weeks next to its cameras, so what
matters is what does not change: memory, threads, cameras that stay up.
This runs the :class:`~yolo_ov.watch.service.WatchService` in-process on
``--cameras`` real RTSP cameras (GStreamer's RTSP server, one server process
per camera so one can go away alone: :mod:`tests.rtsp_support`; synthetic
live cameras by default, or the shared clip, played again on each
reconnection, with ``--clip``) and the shared FP32 yolov8n IR, throughput
mode. Every ``--restart-every`` seconds one camera (in turn) is stopped for
``--outage`` seconds and started again.

Measured and checked:

* RSS (``VmRSS``) sampled every 5 s; growth = the last minute's median
  minus the median of the minute after warm-up (compile, first frames and
  the first restart excluded): must stay under 50 MB;
* threads (Python's and the OS's) before the service starts (after a 3 s
  run of one camera, so the pools OpenCV and FFmpeg keep for the process
  exist) and after it closes: none left behind;
* every restart: the time from the camera's server coming back to the
  camera being ``live`` again; a camera not live within 15 s is stuck;
* at the end: every camera live and inferring (frames in the last 30 s).

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/soak_watch.py [--minutes 10] [--cameras 4]
Writes benchmarks/results/soak_watch.json and soak_watch.md; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, write_results
from tests.assets import shared_assets
from tests.rtsp_support import RtspCamera, rtsp_available

RSS_LIMIT_MB = 50.0
STUCK_S = 15.0


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mb() -> float:
    return _status("VmRSS") / 1024.0


def os_threads() -> int:
    return _status("Threads")


class Health:
    """Each camera's health changes with their times (an observer of the run)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changes: list[tuple[str, str, float]] = []

    def on_health(self, camera: str, change: Any) -> None:
        with self.lock:
            self.changes.append((camera, change.state, change.time))

    def live_after(self, camera: str, t: float) -> float | None:
        with self.lock:
            return next((ts for c, s, ts in self.changes if c == camera and s == "live" and ts > t), None)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def config_text(model: Path, urls: dict[str, str]) -> str:
    cams = "".join(f"  {name}:\n    url: {url}\n    zones:\n      all: [[0, 0], [640, 0], [640, 360], [0, 360]]\n"
                   for name, url in urls.items())
    return f"model: {model}\ncameras:\n{cams}outputs:\n  jsonl: events.jsonl\n"


def soak(args: argparse.Namespace) -> dict[str, Any]:
    from yolo_ov import Detector
    from yolo_ov.watch.config import parse_watch_config
    from yolo_ov.watch.service import WatchService

    assets = shared_assets()
    source = str(assets.video("walking_720p.mp4")) if args.clip else "test:640x360@25"
    names = [f"cam{k}" for k in range(args.cameras)]
    servers = {n: RtspCamera({n: source}).start() for n in names}
    work = Path(tempfile.mkdtemp(prefix="soak-watch-"))
    text = config_text(assets.fp32_model, {n: s.url(n) for n, s in servers.items()})
    config = parse_watch_config(text, work / "cameras.yaml")
    health = Health()
    samples: list[tuple[float, float, int, int]] = []  # (t, rss MB, python threads, os threads)
    restarts: list[dict[str, Any]] = []
    try:
        with Detector(assets.fp32_model, mode="throughput") as det:
            # a short run first, so the pools the libraries keep for the process (OpenCV's, FFmpeg's) exist
            # before the baseline: what the soak checks is threads left behind by the service, not those pools
            warm = parse_watch_config(config_text(assets.fp32_model, {names[0]: servers[names[0]].url(names[0])}),
                                      work / "warm.yaml")
            with WatchService(warm, det, outputs={}) as first:
                first.wait(3.0)
            time.sleep(1.0)
            threads_before = (threading.active_count(), os_threads())
            service = WatchService(config, det, observers=[health])
            start = time.monotonic()
            service.start()
            end = start + args.minutes * 60
            next_restart = start + args.restart_every
            next_sample = start
            turn = 0
            inferred_at: list[tuple[float, dict[str, int]]] = []
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_sample:
                    samples.append((now - start, rss_mb(), threading.active_count(), os_threads()))
                    inferred_at.append((now - start, {n: s.inferred for n, s in service.stats().items()}))
                    next_sample += 5.0
                if now >= next_restart and now + args.outage + STUCK_S < end:
                    name = names[turn % len(names)]
                    turn += 1
                    servers[name].stop()
                    time.sleep(args.outage)
                    servers[name].start()
                    back = time.time()
                    deadline = time.monotonic() + STUCK_S
                    while time.monotonic() < deadline and health.live_after(name, back) is None:
                        time.sleep(0.05)
                    live = health.live_after(name, back)
                    restarts.append({"camera": name, "at_s": round(time.monotonic() - start, 1),
                                     "recovery_s": None if live is None else round(live - back, 2)})
                    print(f"[{time.monotonic() - start:6.0f} s] {name} restarted: live again in "
                          f"{restarts[-1]['recovery_s']} s, RSS {rss_mb():.0f} MB", flush=True)
                    next_restart += args.restart_every
                time.sleep(0.2)
            stats = {n: vars_of(s) for n, s in service.stats().items()}
            last = inferred_at[-1][1]
            earlier = next((c for t, c in reversed(inferred_at) if t <= inferred_at[-1][0] - 30), inferred_at[0][1])
            service.close()
            elapsed = time.monotonic() - start
        time.sleep(1.0)  # reader threads that were joined with a time-out finish their last read
        threads_after = (threading.active_count(), os_threads())
    finally:
        for server in servers.values():
            server.stop()
    warm = [r for t, r, *_ in samples if args.restart_every + 5 <= t <= args.restart_every + 65] or \
        [r for _, r, *_ in samples[len(samples) // 4: len(samples) // 2]]
    tail = [r for t, r, *_ in samples if t >= samples[-1][0] - 60]
    growth = statistics.median(tail) - statistics.median(warm)
    stuck = [r for r in restarts if r["recovery_s"] is None]
    idle = [n for n in names if last[n] - earlier[n] <= 0 or stats[n]["state"] != "live"]
    checks = {
        "rss_growth_under_50_mb": growth < RSS_LIMIT_MB,
        "no_thread_left_behind": threads_after[0] <= threads_before[0] and threads_after[1] <= threads_before[1],
        "no_stuck_camera": not stuck and not idle,
    }
    return {
        "machine": machine_info(),
        "settings": {"minutes": args.minutes, "cameras": args.cameras, "restart_every_s": args.restart_every,
                     "outage_s": args.outage, "source": source, "model": str(assets.fp32_model),
                     "mode": "throughput"},
        "elapsed_s": round(elapsed, 1),
        "rss_mb": {"warm_median": round(statistics.median(warm), 1),
                   "last_minute_median": round(statistics.median(tail), 1), "growth": round(growth, 1),
                   "max": round(max(r for _, r, *_ in samples), 1)},
        "threads": {"before": threads_before, "after": threads_after,
                    "max_python": max(s[2] for s in samples), "max_os": max(s[3] for s in samples)},
        "restarts": restarts,
        "recovery_s": {"median": statistics.median([r["recovery_s"] for r in restarts if r["recovery_s"]] or [0]),
                       "max": max([r["recovery_s"] for r in restarts if r["recovery_s"]] or [0])},
        "cameras": stats,
        "idle_cameras": idle,
        "rss_samples": [(round(t, 1), round(r, 1)) for t, r, *_ in samples],
        "checks": checks,
    }


def vars_of(stats: Any) -> dict[str, Any]:
    return {k: getattr(stats, k) for k in ("state", "frames_read", "inferred", "dropped", "reconnects", "events")}


def markdown(result: dict[str, Any]) -> str:
    s, rss, th = result["settings"], result["rss_mb"], result["threads"]
    rows = "\n".join(f"| {n} | {c['state']} | {c['frames_read']} | {c['inferred']} | {c['dropped']} | "
                     f"{c['reconnects']} | {c['events']} |" for n, c in result["cameras"].items())
    checks = "\n".join(f"- {'PASS' if ok else 'FAIL'}: {name.replace('_', ' ')}"
                       for name, ok in result["checks"].items())
    clip = "" if str(s["source"]).startswith("test:") else " --clip"
    command = f"python benchmarks/soak_watch.py --minutes {s['minutes']} --cameras {s['cameras']}{clip}"
    title = f"{s['cameras']} RTSP cameras for {s['minutes']} min, one restarted every {s['restart_every_s']} s"
    return f"""# Watch soak: {title}

{machine_line(result['machine'])}

Command: `flock /tmp/yolo-ov-bench.lock {command}`
(source `{s['source']}`, yolov8n FP32 IR, throughput mode, {s['outage_s']} s outages).

{checks}

| | |
|---|---|
| RSS after warm-up (median) | {rss['warm_median']} MB |
| RSS, last minute (median) | {rss['last_minute_median']} MB |
| RSS growth | {rss['growth']} MB (limit {RSS_LIMIT_MB:.0f}) |
| threads before / after (Python, OS) | {th['before'][0]}, {th['before'][1]} / {th['after'][0]}, {th['after'][1]} |
| restarts | {len(result['restarts'])} |
| recovery after a restart (median / max) | {result['recovery_s']['median']} s / {result['recovery_s']['max']} s |

| camera | state | frames read | inferred | dropped | reconnects | events |
|---|---|---|---|---|---|---|
{rows}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--restart-every", type=float, default=60.0, help="seconds between camera restarts")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds a restarted camera stays away")
    parser.add_argument("--clip", action="store_true", help="serve the shared clip instead of a synthetic camera")
    parser.add_argument("--name", default="soak_watch", help="results/<name>.json and .md")
    args = parser.parse_args()
    reason = rtsp_available()
    if reason is not None:
        raise SystemExit(reason)
    result = soak(args)
    json_path, md_path = write_results(args.name, result, markdown(result))
    print(markdown(result))
    print(f"wrote {json_path} and {md_path}")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
