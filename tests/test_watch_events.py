"""Events from synthetic tracks (issue 22 item 3): lines, zones, appear/disappear with dwell, ids, snapshots."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

from yolo_ov.io.health import Health
from yolo_ov.results import Detections
from yolo_ov.watch.events import EventDetector, camera_event, snapshot

NAMES = {0: "person", 1: "car"}


def frame(*objects: tuple[int, float, float], conf: float = 0.9, cls: int = 0) -> Detections:
    """Tracked objects ``(track_id, centre x, centre y)`` as 20x20 boxes."""
    xyxy = np.array([[x - 10, y - 10, x + 10, y + 10] for _, x, y in objects], np.float32).reshape(-1, 4)
    n = len(objects)
    return Detections(xyxy, np.full(n, conf, np.float32), np.full(n, cls, np.int32), NAMES, (480, 640),
                      data={"track_id": np.array([t for t, _, _ in objects], np.int64)})


def run(det: EventDetector, path: list[tuple[float, float]], track_id: int = 1, start: int = 0,
        fps: float = 10.0) -> list[dict]:
    events = []
    for k, (x, y) in enumerate(path):
        events += det.update(frame((track_id, x, y)), time=1000.0 + (start + k) / fps, frame=start + k)
    return events


def kinds(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_a_track_crossing_a_line_down_is_left_to_right_and_up_is_right_to_left():
    det = EventDetector("road", lines={"north": ((0, 300), (640, 300))})
    down = run(det, [(100, 280), (100, 295), (100, 310)])
    assert kinds(down) == ["appear", "line_cross"]
    cross = down[1]
    assert cross["direction"] == "left_to_right" and cross["line"] == "north" and cross["track_id"] == 1
    assert cross["time"] == pytest.approx(1000.2) and cross["box"] == [90.0, 300.0, 110.0, 320.0]
    assert cross["camera"] == "road" and cross["class_name"] == "person"
    up = run(det, [(200, 320), (200, 290)], track_id=2, start=3)
    assert [(e["type"], e.get("direction")) for e in up] == [("appear", None), ("line_cross", "right_to_left")]


def test_the_direction_follows_the_line_as_drawn():
    det = EventDetector("road", lines={"south": ((640, 300), (0, 300))})  # drawn right to left
    assert run(det, [(100, 280), (100, 320)])[-1]["direction"] == "right_to_left"


def test_a_track_crosses_a_line_once_per_direction_and_only_across_the_segment():
    det = EventDetector("road", lines={"gate": ((100, 300), (300, 300))})
    jitter = run(det, [(200, 290), (200, 310), (200, 290), (200, 310), (200, 290)])
    assert [e.get("direction") for e in jitter if e["type"] == "line_cross"] == ["left_to_right", "right_to_left"]
    beside = run(det, [(500, 290), (500, 310)], track_id=2, start=10)  # across the line's extension only
    assert kinds(beside) == ["appear"]


def test_zone_enter_and_exit_with_the_box_centre():
    square = [(100, 100), (300, 100), (300, 300), (100, 300)]
    det = EventDetector("hall", zones={"door": square})
    events = run(det, [(50, 200), (95, 200), (105, 200), (200, 200), (320, 200)])
    assert [(e["type"], e.get("zone")) for e in events] == [
        ("appear", None), ("zone_enter", "door"), ("zone_exit", "door")]
    assert events[1]["time"] == pytest.approx(1000.2) and events[2]["time"] == pytest.approx(1000.4)


def test_a_track_first_seen_inside_a_zone_enters_it_and_exits_when_it_disappears():
    det = EventDetector("hall", zones={"all": [(0, 0), (640, 0), (640, 480), (0, 480)]}, lost_after=3)
    events = run(det, [(100, 100), (110, 100), (120, 100)])
    assert kinds(events) == ["appear", "zone_enter"]
    later = det.update(frame(), time=1000.7, frame=7)  # not seen for 5 frames > lost_after
    assert [(e["type"], e.get("zone")) for e in later] == [("zone_exit", "all"), ("disappear", None)]
    assert later[1]["dwell_s"] == pytest.approx(0.2) and later[1]["box"] == [110.0, 90.0, 130.0, 110.0]
    assert det.active == 0


def test_disappear_waits_for_lost_after_frames_and_a_track_seen_again_goes_on():
    det = EventDetector("road", lost_after=5)
    run(det, [(10, 10)])
    assert det.update(frame(), time=1000.5, frame=5) == []  # 5 frames unseen: not yet
    assert kinds(det.update(frame((1, 12, 10)), time=1000.5, frame=5)) == []  # seen again: the same object
    gone = det.update(frame(), time=1001.1, frame=11)
    assert kinds(gone) == ["disappear"] and gone[0]["dwell_s"] == pytest.approx(0.5)
    assert kinds(run(det, [(10, 10)], start=12)) == ["appear"]  # an id back after aging out is a new object


def test_objects_below_conf_or_of_other_classes_make_no_events():
    det = EventDetector("road", conf=0.5, classes={1})
    assert det.update(frame((1, 10, 10), conf=0.9, cls=0), time=0.0, frame=0) == []
    assert det.update(frame((2, 10, 10), conf=0.3, cls=1), time=0.0, frame=0) == []
    got = det.update(frame((3, 10, 10), conf=0.6, cls=1), time=0.0, frame=0)
    assert kinds(got) == ["appear"] and got[0]["class_name"] == "car"


def test_a_frame_without_track_ids_makes_no_object_events():
    det = EventDetector("road")
    plain = Detections(np.array([[0, 0, 5, 5]], np.float32), np.array([0.9], np.float32), np.array([0]), NAMES,
                       (10, 10))
    assert det.update(plain, time=0.0, frame=0) == []


def test_every_event_has_a_unique_id_and_is_json():
    det = EventDetector("road", lines={"l": ((0, 50), (100, 50))}, zones={"z": [(0, 0), (100, 0), (100, 40)]},
                        lost_after=1)
    events = []
    for t in range(200):
        events += run(det, [(50, 30), (50, 70)], track_id=t, start=4 * t)
    events += det.update(frame(), time=2000.0, frame=10_000)
    assert len(events) >= 200 * 3
    assert len({e["id"] for e in events}) == len(events)
    assert all(len(e["id"]) == 32 for e in events)
    for e in events:
        assert json.loads(json.dumps(e)) == e
        assert {"id", "camera", "time", "type", "track_id", "class_name", "box"} <= e.keys()
    assert det.counts["appear"] == 200 and det.counts["disappear"] == 200 and det.counts["line_cross"] == 200


def test_a_health_change_is_a_camera_event():
    health = Health("rtsp://cam/1", 0)
    seen = []
    health.subscribe(lambda change: seen.append(camera_event("road", change)))
    health.set("live", "first frame")
    health.set("stalled", "no frame for 5.0 s")
    assert [(e["type"], e["state"], e["previous"], e["reason"]) for e in seen] == [
        ("camera", "live", None, "first frame"), ("camera", "stalled", "live", "no frame for 5.0 s")]
    assert seen[0]["camera"] == "road" and seen[0]["id"] != seen[1]["id"] and seen[1]["time"] >= seen[0]["time"]


def test_snapshots_are_base64_jpegs_of_the_frame_or_the_crop():
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:30, 20:50] = 255
    whole = cv2.imdecode(np.frombuffer(base64.b64decode(snapshot(image)), np.uint8), cv2.IMREAD_COLOR)
    assert whole.shape == (60, 80, 3)
    crop = cv2.imdecode(np.frombuffer(base64.b64decode(snapshot(image, [20, 10, 50, 30])), np.uint8),
                        cv2.IMREAD_COLOR)
    assert crop.shape == (20, 30, 3) and crop.mean() > 240
    assert snapshot(image, [100, 100, 120, 120]) is None  # outside the frame


@pytest.mark.parametrize("module", ["yolo_ov.watch.config", "yolo_ov.watch.events", "yolo_ov.watch.outputs"])
def test_the_docstring_examples_run(module: str):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
