"""The camera benchmark's arithmetic and report (benchmarks/bench_cameras.py) on made-up timelines: no model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from benchmarks.bench_cameras import Timeline, markdown, window


def test_window_counts_fps_drops_and_latency_per_camera() -> None:
    timeline = Timeline(2)
    for k in range(20):  # camera 0: 10 results/s, 100 ms old; camera 1: 5 results/s, 300 ms old
        timeline.add(100.0 + k * 0.1, 0, 0.1)
    for k in range(10):
        timeline.add(100.0 + k * 0.2, 1, 0.3)
    timeline.add(102.5, 0, 9.9)  # outside the window: not counted
    got = window(SimpleNamespace(timeline=timeline), 100.0, 102.0, [0, 0], [50, 50])
    assert got["fps"] == [10.0, 5.0]
    assert got["total_fps"] == 15.0
    assert got["read_fps"] == [25.0, 25.0]
    assert got["dropped"] == [30, 40]
    assert got["latency_ms"]["samples"] == 30
    assert got["latency_ms"]["p50"] == pytest.approx(100.0)
    assert got["latency_ms"]["p95"] == pytest.approx(300.0)


def test_first_after_and_every_camera_seen() -> None:
    timeline = Timeline(2)
    timeline.add(1.0, 0, None)
    assert not timeline.every_camera_seen()
    timeline.add(2.0, 1, None)
    timeline.add(5.0, 0, None)
    assert timeline.every_camera_seen()
    assert timeline.first_after(0, 1.5) == 5.0
    assert timeline.first_after(1, 2.0) is None


def _step(side: str, total: float, restart: dict[str, object]) -> dict[str, object]:
    steady = {"seconds": 20.0, "fps": [total / 2, total / 2], "total_fps": total, "read_fps": [25.0, 25.0],
              "dropped": [100, 100], "latency_ms": {"p50": 80.0, "p95": 120.0, "samples": 10}}
    base = {"outage_s": 5.0, "others_fps_before": [total / 2], "others_fps_during": [], "blank_frames": 0}
    return {"side": side, "cameras": 2, "load": {"steady": 2.5, "outage": 2.6}, "steady": steady,
            "restart": {**base, **restart}}


def test_report_states_the_ratio_the_recovery_and_a_run_that_ended() -> None:
    result = {
        "machine": {"cpu": "Test CPU", "cores": 2, "python": "3.11", "openvino": "2026.4.1", "cpu_precision": "bf16",
                    "date": "2026-12-07 00:00 UTC"},
        "settings": {"cameras": [2], "seconds": 20.0, "warmup_s": 3.0, "outage_s": 5.0, "recovery_limit_s": 40.0,
                     "model": "/m/yolov8n_openvino_model", "source": "clip", "yolo_ov": "watch",
                     "ultralytics": "track"},
        "steps": [_step("yolo-ov", 40.0, {"recovery_s": 1.4}),
                  _step("Ultralytics", 20.0, {"recovery_s": None, "run_ended": {"after_stop_s": 0.2,
                                                                                  "how": "the generator ended"}})],
    }
    text = markdown(result)
    assert "| 2 | yolo-ov | 20.0, 20.0 | 40.0 | 80.0 / 120.0 | 200 / 1000 | 2.00x | 2.5 |" in text
    assert "live again 1.4 s after the restart" in text
    assert "the whole run ended 0.2 s after the camera stopped (the generator ended)" in text
    assert "CPU inference precision bf16" in text
