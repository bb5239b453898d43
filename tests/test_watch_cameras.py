"""``yolo-ov watch`` against real RTSP cameras and the shared yolov8n IR (issue 22 items 2 and 5).

The issue's config, with its two cameras served by GStreamer's RTSP server
(:mod:`tests.rtsp_support`, one server process per camera so one can go away
alone): a camera stopped for 5 s comes back live within 3 s while the other
keeps its processed rate; a camera that dies for good is a ``failed`` event
and the other goes on; SIGTERM mid-run drains and exits 0. Each test is
bounded (well under a minute) and prints what it measured.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.rtsp_support import RtspCamera
from yolo_ov.watch.config import parse_watch_config
from yolo_ov.watch.service import WatchService

ROOT = Path(__file__).resolve().parents[1]
CAMERA = "test:640x360@25"

CONFIG = """\
model: {model}
cameras:
  road:
    url: {road}
    lines:
      northbound: [[0, 300], [960, 300]]{road_extra}
  hall:
    url: {hall}
    zones:
      entrance: [[0, 0], [640, 0], [640, 720], [0, 720]]
outputs:
  jsonl: events.jsonl
"""


@pytest.fixture(scope="module")
def detector(shared: Any, rtsp: None) -> Any:
    from yolo_ov import Detector

    with Detector(shared.fp32_model, mode="throughput") as det:
        yield det


def write_config(folder: Path, model: Path, road: str, hall: str, road_extra: str = "") -> Path:
    path = folder / "cameras.yaml"
    path.write_text(CONFIG.format(model=model, road=road, hall=hall, road_extra=road_extra), encoding="utf-8")
    return path


class Health:
    """Notes each camera's health changes (an observer of the run)."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def on_health(self, camera: str, change: Any) -> None:
        with self.lock:
            self.changes.append((camera, change))

    def of(self, camera: str) -> list[Any]:
        with self.lock:
            return [c for n, c in self.changes if n == camera]

    def __getattr__(self, name: str) -> Any:  # the other observer calls: nothing to note
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def wait_for(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def rate(service: WatchService, camera: str, seconds: float) -> float:
    """Frames of ``camera`` inferred per second over the next ``seconds``."""
    start, t0 = service.stats()[camera].inferred, time.monotonic()
    time.sleep(seconds)
    return (service.stats()[camera].inferred - start) / (time.monotonic() - t0)


def events(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text(encoding="utf-8").splitlines()]


def test_a_camera_stopped_for_5_s_is_live_within_3_s_and_the_other_keeps_its_rate(detector, shared, tmp_path):
    with RtspCamera({"road": CAMERA}) as road, RtspCamera({"hall": CAMERA}) as hall:
        cfg = parse_watch_config(write_config(tmp_path, shared.fp32_model, road.url("road"), hall.url("hall"))
                                 .read_text(encoding="utf-8"), tmp_path / "cameras.yaml")
        health = Health()
        with WatchService(cfg, detector, observers=[health]) as service:
            assert wait_for(lambda: all(s.inferred >= 20 for s in service.stats().values()), 30), service.stats()
            before = rate(service, "hall", 3.0)
            road.stop()
            during = rate(service, "hall", 5.0)
            road.start()
            back = time.time()
            assert wait_for(lambda: any(c.state == "live" and c.time > back for c in health.of("road")), 10), \
                [(c.state, c.reason) for c in health.of("road")]
            recovery = next(c.time for c in health.of("road") if c.state == "live" and c.time > back) - back
            inferred = service.stats()["road"].inferred
            assert wait_for(lambda: service.stats()["road"].inferred >= inferred + 10, 10)
            stats = service.stats()
    print(f"\nroad live again {recovery:.2f} s after its server came back; hall processed {before:.1f} fps "
          f"before, {during:.1f} fps during the outage (ratio {during / before:.2f}); stats {stats}")
    assert recovery < 3.0
    # the device no longer shares itself with road during the outage: hall gains, it never loses (ratios,
    # not wall-clock figures: measured here 1.1x-1.8x, the top set by hall's own 25 fps, with other work on the machine)
    assert during >= 0.9 * before
    states = [c.state for c in health.of("road")]
    assert "stalled" in states or "reconnecting" in states
    assert stats["road"].reconnects >= 1 and stats["road"].state == "live" and stats["hall"].state == "live"
    road_events = [e["state"] for e in events(tmp_path) if e["camera"] == "road" and e["type"] == "camera"]
    assert road_events[:2] == ["connecting", "live"] and road_events[-1] == "live" and "reconnecting" in road_events


def test_a_camera_dying_for_good_is_a_failed_event_and_the_other_goes_on(detector, shared, tmp_path):
    with RtspCamera({"road": CAMERA}) as road, RtspCamera({"hall": CAMERA}) as hall:
        extra = "\n    reconnect: {attempts: 3, first_delay_s: 0.2, max_delay_s: 0.5}\n    open_timeout_s: 2"
        path = write_config(tmp_path, shared.fp32_model, road.url("road"), hall.url("hall"), extra)
        cfg = parse_watch_config(path.read_text(encoding="utf-8"), path)
        with WatchService(cfg, detector) as service:
            assert wait_for(lambda: all(s.inferred >= 10 for s in service.stats().values()), 30)
            road.stop()
            failed_within = time.monotonic()
            assert wait_for(lambda: service.stats()["road"].state == "failed", 30), service.stats()
            failed_within = time.monotonic() - failed_within
            after = service.stats()["hall"].inferred
            assert wait_for(lambda: service.stats()["hall"].inferred >= after + 20, 15), "hall stopped too"
    print(f"\nroad given up on {failed_within:.1f} s after it went away (3 attempts); hall went on")
    road_states = [e for e in events(tmp_path) if e["camera"] == "road" and e["type"] == "camera"]
    assert road_states[-1]["state"] == "failed" and "gave up after 3" in road_states[-1]["reason"]
    assert not [e for e in events(tmp_path) if e["camera"] == "hall" and e.get("state") == "failed"]


def test_sigterm_mid_run_drains_and_exits_0_with_the_events_flushed(rtsp, shared, tmp_path):
    with RtspCamera({"road": CAMERA}) as road, RtspCamera({"hall": CAMERA}) as hall:
        path = write_config(tmp_path, shared.fp32_model, road.url("road"), hall.url("hall"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        proc = subprocess.Popen([sys.executable, "-m", "yolo_ov", "watch", str(path), "--log-level", "info"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def both_live() -> bool:
                if not (tmp_path / "events.jsonl").exists():
                    return False
                live = {e["camera"] for e in events(tmp_path) if e.get("state") == "live"}
                return live == {"road", "hall"}

            assert wait_for(both_live, 45), "the cameras did not go live"
            time.sleep(2.0)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
            drained_in = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"\nSIGTERM -> exit {proc.returncode} in {drained_in:.2f} s")
    assert proc.returncode == 0, err[-2000:]
    assert "stopped (SIGTERM), drained" in err and "Traceback" not in err
    assert "road: live" in err and "hall: live" in err  # the per-camera summary
    got = events(tmp_path)  # every line whole
    assert not [e for e in got if e.get("state") == "failed"]
