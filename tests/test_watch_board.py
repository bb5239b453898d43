"""The cameras board and its web app, without a model: synthetic frames, records, health changes and events.

The board is fed from a thread as the watch service feeds it; the app runs
under a real uvicorn on a free 127.0.0.1 port (``serve_board``), its MJPEG
streams read part by part with ``http.client`` and decoded with OpenCV, its
metrics parsed with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

import http.client
import itertools
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from tests.fakes import fake_detector, uniform_image
from yolo_ov.errors import ConfigError
from yolo_ov.io.capture import open_capture
from yolo_ov.io.draw import palette_color
from yolo_ov.io.health import HealthChange
from yolo_ov.results import Detections
from yolo_ov.watch.board import BoardConfig, CameraBoard, UnknownCameraError
from yolo_ov.watch.observer import CameraInfo, CameraObserver

pytest.importorskip("fastapi")
parser = pytest.importorskip("prometheus_client.parser")

from yolo_ov.watch.web import serve_board  # noqa: E402  (needs the serve extra, checked above)

pytestmark = pytest.mark.timeout(60)

ROAD = CameraInfo("road", "rtsp://127.0.0.1:8554/road", lines={"northbound": [(140, 0), (140, 120)]})
HALL = CameraInfo("hall", "rtsp://127.0.0.1:8555/hall", zones={"entrance": [(0, 0), (80, 0), (80, 120), (0, 120)]})


def change(camera: str, state: str, previous: str | None, reason: str, reconnects: int = 0) -> HealthChange:
    return HealthChange(camera, None, state, previous, time.time(), reason, reconnects)


def tracked(box: tuple[float, float, float, float], track_id: int, cls: int = 2) -> Detections:
    return Detections([box], [0.9], [cls], names={2: "car"}, image_shape=(120, 160),
                      data={"track_id": np.array([track_id])})


def frame(value: int = 40, hw: tuple[int, int] = (120, 160)) -> np.ndarray:
    return np.full((*hw, 3), value, np.uint8)


def event(camera: str, kind: str, n: int, **fields: object) -> dict[str, object]:
    return {"id": f"{camera}-{kind}-{n}", "camera": camera, "time": time.time(), "type": kind, **fields}


def run_in_thread(fn) -> None:
    """Feed the board from another thread, as the service's result thread does."""
    t = threading.Thread(target=fn)
    t.start()
    t.join(20)
    assert not t.is_alive()


@pytest.fixture
def board() -> CameraBoard:
    b = CameraBoard()
    assert isinstance(b, CameraObserver)  # the contract the service calls
    b.on_start([ROAD, HALL])
    return b


# -- the board ---------------------------------------------------------------------------------


def test_board_keeps_frames_health_events_counts_and_outputs(board):
    def feed() -> None:
        board.on_health("road", change("road", "live", "connecting", "frames arriving"))
        for i in range(5):
            board.on_frame("road", tracked((10 + i, 10, 50 + i, 40), 7), frame(), latency_s=0.04 + i / 100)
        board.on_dropped("road", 3)
        board.on_health("hall", change("hall", "reconnecting", "stalled", "reconnect attempt 2 failed", 1))
        board.on_event(event("road", "line_cross", 1, line="northbound", direction="in", track_id=7,
                             class_name="car", box=[10, 10, 50, 40]))
        board.on_event(event("road", "line_cross", 2, line="northbound", direction="out", track_id=8))
        board.on_event(event("road", "line_cross", 3, line="northbound", direction="in", track_id=9))
        board.on_event(event("hall", "zone_enter", 1, zone="entrance", track_id=1))
        board.on_event(event("hall", "zone_enter", 2, zone="entrance", track_id=2))
        board.on_event(event("hall", "zone_exit", 3, zone="entrance", track_id=1, dwell_s=2.5))
        board.on_event(event("hall", "camera", 4, state="reconnecting", reason="no frame for 5.0 s"))
        board.on_outputs({"mqtt": {"queued": 4, "sent": 10, "dropped": 1, "retries": 2, "connected": 0}})

    run_in_thread(feed)
    status = board.status()
    road, hall = status["cameras"]
    assert [road["name"], hall["name"]] == ["road", "hall"] and road["url"] == ROAD.url
    assert road["state"] == "live" and road["reason"] == "frames arriving"
    assert road["frames"] == {"read": 8, "inferred": 5, "dropped": 3}
    assert road["latency_s"] == pytest.approx(0.08) and road["detections"] == 1 and road["frame_seq"] == 5
    assert road["events"] == {"line_cross": 3}
    assert road["counts"] == {"zones": {}, "lines": {"northbound": {"in": 2, "out": 1}}}
    assert [e["id"] for e in road["recent_events"]] == ["road-line_cross-3", "road-line_cross-2", "road-line_cross-1"]
    assert "box" not in road["recent_events"][-1]  # the page's list stays small
    assert hall["state"] == "reconnecting" and hall["reconnects"] == 1
    assert hall["reason"] == "reconnect attempt 2 failed"
    assert hall["counts"]["zones"] == {"entrance": {"inside": 1, "entered": 2, "exited": 1}}
    assert hall["events"] == {"zone_enter": 2, "zone_exit": 1, "camera": 1}
    assert hall["frame_seq"] == 0 and hall["latency_s"] is None
    assert status["outputs"] == {"mqtt": {"queued": 4, "sent": 10, "dropped": 1, "retries": 2, "connected": 0}}
    json.dumps(status)  # JSON-ready as it is


def test_fps_is_the_sliding_window_rate_and_falls_to_zero_when_frames_stop():
    board = CameraBoard(BoardConfig(fps_window_s=0.6))
    board.on_start([ROAD])
    image, record = frame(), Detections.empty()
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < 0.4:
        board.on_frame("road", record, image, latency_s=0.01)
        n += 1
        time.sleep(0.01)
    elapsed = time.monotonic() - start
    fps = board.camera_status("road")["fps"]
    assert fps == pytest.approx((n - 1) / elapsed, rel=0.3)
    time.sleep(0.7)  # a whole window without a frame
    assert board.camera_status("road")["fps"] == 0.0


def test_jpeg_is_drawn_lazily_once_per_frame_however_many_viewers_ask(board):
    image = frame(40)
    untouched = image.copy()
    board.on_frame("road", tracked((20, 20, 100, 90), 5), image, latency_s=0.01)
    assert board.encodes == 0  # nothing drawn until someone looks
    results: list[tuple[int, bytes] | None] = []
    threads = [threading.Thread(target=lambda: results.append(board.jpeg("road"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert board.encodes == 1 and len(results) == 8
    assert len(set(results)) == 1  # the same (seq, bytes) for all
    assert board.cached_jpeg("road") == results[0]
    seq, data = results[0]
    drawn = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert seq == 1 and drawn.shape == image.shape
    assert np.array_equal(image, untouched)  # the service's frame is never drawn on
    # The box's left edge in the colour of track 5 (io/draw's palette), the background left grey.
    edge = drawn[55, 19:22].astype(int).mean(axis=0)
    assert np.abs(edge - np.array(palette_color(5))).max() < 40, edge
    assert np.abs(drawn[110, 120].astype(int) - 40).max() < 10
    # The line is drawn in Counters' colour with the events' counts; a new frame is one more encode.
    board.on_frame("road", tracked((20, 20, 100, 90), 5), frame(40), latency_s=0.01)
    assert board.cached_jpeg("road") is None
    seq2, data2 = board.jpeg("road")
    assert (seq2, board.encodes) == (2, 2)
    line = cv2.imdecode(np.frombuffer(data2, np.uint8), cv2.IMREAD_COLOR)[80, 140].astype(int)
    assert np.abs(line - np.array((0, 220, 255))).max() < 40, line
    assert board.jpeg("road") == (seq2, data2) and board.encodes == 2


def test_real_records_from_the_fake_detector_are_drawn_with_their_class_names():
    board = CameraBoard(BoardConfig(max_width=80))
    board.on_start([CameraInfo("cam", "0")])
    with fake_detector() as det:
        image = uniform_image(100, (96, 128))
        record = det(image)
    assert len(record) == 1
    board.on_frame("cam", record, image, latency_s=0.02)
    _, data = board.jpeg("cam")
    drawn = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == (60, 80, 3)  # scaled down to max_width, aspect kept
    assert board.camera_status("cam")["detections"] == 1


def test_the_capture_layer_hands_out_a_new_array_per_frame(tmp_path):
    """The board keeps a reference to the newest frame (no copy): safe only because no frame is written into again."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for v in (30, 90, 150, 210):
        writer.write(np.full((48, 64, 3), v, np.uint8))
    writer.release()
    board = CameraBoard()
    with open_capture(str(path)) as cap:
        kept = []
        while (image := cap.read()) is not None:
            board.on_frame("clip", Detections.empty(), image, latency_s=0.0)
            kept.append((image, image.copy()))
    assert len(kept) == 4
    for (a, _), (b, _) in itertools.pairwise(kept):
        assert not np.shares_memory(a, b)
    assert all(np.array_equal(image, before) for image, before in kept)  # none overwritten by a later read
    assert board.frame_seq("clip") == 4


def test_unknown_cameras_are_named_and_late_cameras_are_added(board):
    with pytest.raises(UnknownCameraError, match=r"no camera named 'gate'; cameras: road, hall"):
        board.jpeg("gate")
    assert board.jpeg("hall") is None  # known, no frame yet
    board.on_frame("gate", Detections.empty(), frame(), latency_s=0.01)  # not announced at start: kept anyway
    assert board.names == ["road", "hall", "gate"] and board.frame_seq("gate") == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fps_window_s": 0}, "fps_window_s must be > 0"),
    ({"recent_events": -1}, "recent_events must be >= 0"),
    ({"jpeg_quality": 101}, "jpeg_quality must be in 0..100"),
    ({"max_width": -5}, "max_width must be >= 0"),
])
def test_board_config_refuses_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BoardConfig(**kwargs)


# -- the web app under a real uvicorn ------------------------------------------------------------


@pytest.fixture
def served(board) -> Iterator:
    with serve_board(board, max_viewers=4) as page:
        yield page


def get(page, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", page.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class MJPEGReader:
    """One viewer of a ``multipart/x-mixed-replace`` stream, reading it part by part."""

    def __init__(self, page, camera: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", page.port, timeout=10)
        self.conn.request("GET", f"/cameras/{camera}/stream.mjpg")
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.content_type = self.resp.getheader("Content-Type", "")
        self.opened = False

    def part(self, *, repeats: bool = False) -> tuple[dict[str, str], bytes]:
        """The next part (skipping the repeats of a frame that had no successor yet, unless ``repeats``)."""
        while True:
            headers, body = self._part()
            if repeats or "x-frame-repeat" not in headers:
                return headers, body

    def _part(self) -> tuple[dict[str, str], bytes]:
        if not self.opened:
            assert self.resp.readline() == b"--frame\r\n"
            self.opened = True
        headers = {}
        while (line := self.resp.readline().strip()):
            key, _, value = line.decode("ascii").partition(":")
            headers[key.strip().lower()] = value.strip()
        body = self.resp.read(int(headers["content-length"]))
        assert self.resp.read(11) == b"\r\n--frame\r\n"
        return headers, body

    def close(self) -> None:
        self.conn.close()


def wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_json_health_and_unknown_camera_404s(board, served):
    board.on_health("road", change("road", "live", "connecting", "frames arriving"))
    status, headers, body = get(served, "/cameras.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert [c["name"] for c in json.loads(body)["cameras"]] == ["road", "hall"]
    status, _, body = get(served, "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok", "cameras": 2, "viewers": 0,
                                                   "states": {"live": 1, "connecting": 1}}
    for path in ("/cameras/gate/stream.mjpg", "/cameras/gate/snapshot.jpg"):
        status, headers, body = get(served, path)
        assert status == 404 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"error": "no camera named 'gate'; cameras: road, hall"}
        assert b"\n" not in body
    status, headers, body = get(served, "/cameras/hall/snapshot.jpg")  # known, nothing to show yet
    assert status == 503 and headers["retry-after"] == "1" and "has no frame yet" in json.loads(body)["error"]
    for path in ("/", "/cameras"):
        status, _, body = get(served, path)
        assert status == 200 and b"<title>yolo-ov watch: cameras</title>" in body


def test_snapshot_is_the_newest_drawn_frame(board, served):
    board.on_frame("road", tracked((20, 20, 100, 90), 5), frame(70), latency_s=0.01)
    board.on_frame("road", tracked((20, 20, 100, 90), 5), frame(90), latency_s=0.01)
    status, headers, body = get(served, "/cameras/road/snapshot.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg" and headers["x-frame-seq"] == "2"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (120, 160, 3) and abs(int(image[110, 120].mean()) - 90) < 10  # the second frame


def test_metrics_per_camera_and_output(board, served):
    board.on_health("hall", change("hall", "reconnecting", "stalled", "reconnect attempt 1 failed", 3))
    for _ in range(4):
        board.on_frame("road", Detections.empty(), frame(), latency_s=0.125)
    board.on_dropped("road", 2)
    board.on_event(event("road", "line_cross", 1, line="northbound", direction="in"))
    board.on_event(event("road", "appear", 2))
    board.on_event(event("road", "appear", 3))
    board.on_outputs({"mqtt": {"queued": 5, "sent": 12, "dropped": 1, "retries": 0, "connected": 1},
                      "webhook": {"queued": 0, "sent": 3, "dropped": 0, "retries": 4}})
    status, headers, body = get(served, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = {}
    for family in parser.text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("yolo_ov_camera_frames_total", camera="road", kind="read") == 6
    assert value("yolo_ov_camera_frames_total", camera="road", kind="inferred") == 4
    assert value("yolo_ov_camera_frames_total", camera="road", kind="dropped") == 2
    assert value("yolo_ov_camera_reconnects_total", camera="hall") == 3
    assert value("yolo_ov_camera_state", camera="hall", state="reconnecting") == 1
    assert value("yolo_ov_camera_state", camera="hall", state="live") == 0
    assert sum(v for (n, labels), v in samples.items()
               if n == "yolo_ov_camera_state" and ("camera", "road") in labels) == 1  # one current state
    assert value("yolo_ov_camera_latency_seconds", camera="road") == 0.125
    assert ("yolo_ov_camera_latency_seconds", (("camera", "hall"),)) not in samples  # no frame, no figure
    assert value("yolo_ov_camera_fps", camera="road") > 0
    assert value("yolo_ov_events_total", camera="road", type="appear") == 2
    assert value("yolo_ov_events_total", camera="road", type="line_cross") == 1
    assert value("yolo_ov_output_queue_depth", output="mqtt") == 5
    assert value("yolo_ov_output_sent_total", output="mqtt") == 12
    assert value("yolo_ov_output_dropped_total", output="mqtt") == 1
    assert value("yolo_ov_output_retries_total", output="webhook") == 4
    assert value("yolo_ov_output_connected", output="mqtt") == 1
    assert not any(n.startswith(("python_", "process_")) for n, _ in samples)  # its own registry, not the global one


def test_mjpeg_stream_sends_each_new_frame_once_encoded_for_all_viewers(board, served):
    viewers = [MJPEGReader(served, "road") for _ in range(3)]
    try:
        for v in viewers:
            assert v.status == 200 and v.content_type == "multipart/x-mixed-replace; boundary=frame"
        wait_for(lambda: json.loads(get(served, "/healthz")[2])["viewers"] == 3)
        for value, seq in ((60, 1), (120, 2)):
            run_in_thread(lambda value=value: board.on_frame("road", tracked((20, 20, 100, 90), 5), frame(value),
                                                             latency_s=0.01))
            for v in viewers:
                headers, body = v.part()
                assert headers["content-type"] == "image/jpeg" and headers["x-frame-seq"] == str(seq)
                image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
                assert image.shape == (120, 160, 3) and abs(int(image[110, 120].mean()) - value) < 10
            assert board.encodes == seq  # one encode per frame, three viewers
    finally:
        for v in viewers:
            v.close()
    wait_for(lambda: json.loads(get(served, "/healthz")[2])["viewers"] == 0)  # hung-up viewers are let go


def test_a_frame_without_successor_is_repeated_once_so_a_browser_shows_it(board, served):
    viewer = MJPEGReader(served, "road")
    try:
        board.on_frame("road", Detections.empty(), frame(10), latency_s=0.01)
        first, body = viewer.part(repeats=True)
        started = time.monotonic()
        again, body_again = viewer.part(repeats=True)  # Chromium shows a part when the next one starts
        assert time.monotonic() - started < 2
        assert "x-frame-repeat" not in first and again["x-frame-repeat"] == "1"
        assert again["x-frame-seq"] == first["x-frame-seq"] == "1" and body_again == body
        viewer.conn.sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            viewer.part(repeats=True)  # once, not a keep-alive flood
        assert board.encodes == 1
    finally:
        viewer.close()


def test_viewers_beyond_the_bound_get_503(board, served):
    viewers = [MJPEGReader(served, "hall") for _ in range(4)]
    try:
        wait_for(lambda: json.loads(get(served, "/healthz")[2])["viewers"] == 4)
        status, _, body = get(served, "/cameras/road/stream.mjpg")
        assert status == 503 and "too many viewers (4 streams open)" in json.loads(body)["error"]
    finally:
        for v in viewers:
            v.close()


def test_a_slow_viewer_skips_frames_and_never_slows_the_service(board, served):
    viewer = MJPEGReader(served, "road")
    try:
        board.on_frame("road", Detections.empty(), frame(10), latency_s=0.01)
        first, _ = viewer.part()
        assert first["x-frame-seq"] == "1"
        # The viewer reads nothing while 300 frames arrive: the service's calls stay quick.
        big = [np.full((720, 1280, 3), v, np.uint8) for v in (50, 100, 150)]
        started = time.perf_counter()
        for i in range(300):
            board.on_frame("road", Detections.empty(), big[i % 3], latency_s=0.01)
        spent = time.perf_counter() - started
        assert spent < 0.5, f"300 frames took {spent:.3f} s in on_frame"
        time.sleep(0.3)
        seqs = []
        while not seqs or seqs[-1] < 301:
            headers, _ = viewer.part()
            seqs.append(int(headers["x-frame-seq"]))
        assert len(seqs) < 10 and seqs[-1] == 301  # newest frames only, most of the 300 skipped
        assert board.encodes <= len(seqs) + 1
    finally:
        viewer.close()


def test_stop_ends_open_streams_and_the_server_thread(board):
    page = serve_board(board)
    viewer = MJPEGReader(page, "road")
    board.on_frame("road", Detections.empty(), frame(), latency_s=0.01)
    viewer.part()
    started = time.monotonic()
    page.stop()
    assert not page.thread.is_alive() and time.monotonic() - started < 5
    assert viewer.resp.read() == b""  # the stream ended cleanly: no more parts
    viewer.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", page.port), timeout=2)


def test_the_page_leaves_the_services_signal_handlers_alone(board):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with serve_board(board):
        assert {sig: signal.getsignal(sig) for sig in before} == before
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_port_in_use_is_one_clear_line(board):
    with serve_board(board) as page, pytest.raises(ConfigError) as info:
        serve_board(board, port=page.port)
    message = str(info.value)
    assert f"cannot listen on 127.0.0.1:{page.port}" in message and "pick another --port" in message
    assert "\n" not in message
