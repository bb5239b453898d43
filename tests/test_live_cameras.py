"""Cameras that go away, freeze or never answer, against real servers on loopback (issue 22 item 1, issue 24 item 7).

A real RTSP server (GStreamer's, :mod:`tests.rtsp_support`) is stopped and
started again; an HTTP Motion-JPEG camera (:mod:`tests.media`) freezes; a
socket accepts and says nothing. Every wait is bounded; the whole file runs
in well under a minute and a half.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from typing import Any

from tests.media import MjpegCamera, grey_frames
from tests.rtsp_support import RtspCamera
from yolo_ov import InputError
from yolo_ov.io.capture import CaptureConfig, ReconnectConfig, open_capture
from yolo_ov.io.sources import open_source

CAMERA = "test:320x240@25"


class Collector:
    """Reads a source in a thread, noting (arrival time, stream, frame, error) per item; bounded by ``close``."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.items: list[tuple[float, int | None, int | None, InputError | None]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for item in self.source:
            error = item.data if isinstance(item.data, InputError) else None
            self.items.append((time.monotonic(), item.stream, item.frame, error))

    def frames_after(self, t: float, stream: int = 0) -> list[tuple[float, int | None, int | None, Any]]:
        return [i for i in self.items if i[0] > t and i[1] == stream and i[3] is None]

    def wait_for(self, check: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.source.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "the reader thread was left behind"


def test_an_rtsp_camera_stopped_for_5_s_is_live_again_within_3_s_as_one_stream(rtsp):
    with RtspCamera({"cam": CAMERA}) as server:
        source = open_source(server.url("cam"))  # the defaults: reconnect for ever, TCP
        changes = []
        source.health[0].subscribe(changes.append)
        reader = Collector(source)
        try:
            assert reader.wait_for(lambda: len(reader.frames_after(0)) >= 10, 20), "no frames from the camera"
            server.stop()
            stopped = time.monotonic()
            time.sleep(5.0)
            server.start()
            back = time.monotonic()
            assert reader.wait_for(lambda: reader.frames_after(back + 0.0), 10), "the camera did not come back"
            recovery = reader.frames_after(back)[0][0] - back
            assert reader.wait_for(lambda: len(reader.frames_after(back)) >= 10, 10)
        finally:
            reader.close()
    print(f"\nrecovery after a 5 s outage: {recovery:.2f} s from the server's restart to the first frame")
    assert recovery < 3.0
    frames = [f for _, s, f, e in reader.items if e is None]
    assert {s for _, s, _, _ in reader.items} == {0} and not [e for *_, e in reader.items if e is not None]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)  # numbers go on across the gap
    before = [f for t, _, f, _ in reader.items if t < stopped]
    after = [f for t, _, f, _ in reader.items if t > back]
    assert after[0] - before[-1] >= 0.8 * 5 * 25  # ... counting the frames the outage would have held (25 fps)
    assert not reader.frames_after(stopped + 1.0) or reader.frames_after(stopped + 1.0)[0][0] >= back
    states = [c.state for c in changes]
    assert "reconnecting" in states and states[-1] == "live" and changes[-1].reconnects >= 1
    assert all(a.time <= b.time for a, b in itertools.pairwise(changes))


def test_a_camera_that_never_answers_times_out_and_never_hangs_a_thread():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does) and never says a word
    url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam"
    config = CaptureConfig(open_timeout_s=1.0, read_timeout_s=1.0,
                           reconnect=ReconnectConfig(max_attempts=2, first_delay_s=0.1, max_delay_s=0.2))
    try:
        source = open_source(url, capture=config)
        states: list[str] = []
        source.health[0].subscribe(lambda c: states.append(c.state))
        t0 = time.monotonic()
        reader = Collector(source)
        reader.thread.join(timeout=15)
        took = time.monotonic() - t0
        assert not reader.thread.is_alive(), "a reader hung on a camera that never answers"
        reader.close()
    finally:
        silent.close()
    (item,) = reader.items
    assert isinstance(item[3], InputError) and "gave up after 2 reconnection attempts" in str(item[3])
    assert states[0] == "connecting" and "reconnecting" in states and states[-1] == "failed"
    assert took < 12  # three opens of about 1 s each and short waits, not OpenCV's 30 s each


def test_a_frozen_camera_is_stalled_then_reconnected_by_the_watchdog():
    config = CaptureConfig(read_timeout_s=1.0, reconnect=ReconnectConfig(first_delay_s=0.1, max_attempts=1))
    with MjpegCamera(grey_frames([10, 20, 30]), fps=50, freeze_s=8.0) as cam:
        t0 = time.monotonic()
        cap = open_capture(cam.url, config=config)
        frames, numbers = [], []
        while len(frames) < 4 and time.monotonic() - t0 < 10:
            if cap.read() is None:
                break
            frames.append(time.monotonic() - t0)
            numbers.append(cap.frame_index)
        cap.close()
    states = [(c.state, c.reason) for c in cap.health.history]
    assert [s for s, _ in states][:4] == ["connecting", "live", "stalled", "reconnecting"], states
    assert states[2][1].startswith("no frame for")
    assert len(frames) == 4 and frames[3] - frames[2] < 4  # the watchdog, not the 8 s freeze, ended the wait
    assert cam.requests == 2 and cap.frames_read == 4
    assert numbers[:3] == [0, 1, 2] and numbers[3] >= 2 + 10  # over a second of frames passed in the freeze


def test_the_tracker_ages_tracks_out_across_a_reconnection_gap():
    """Frame numbers jump by the gap (above), and the tracker predicts across a jump: a track lost for more
    than ``track_buffer`` frames is forgotten, so the first frame after a long outage starts new tracks
    instead of gluing them to the old ones; a short one keeps them."""
    import numpy as np

    from yolo_ov.track import Tracker, TrackerConfig

    box, conf, cls = np.array([[100, 100, 160, 220]], np.float32), np.array([0.9]), np.array([0])

    def ids_after(gap: int) -> tuple[int, int]:
        tracker = Tracker(TrackerConfig.defaults("bytetrack"))
        for k in range(10):
            first = tracker.update(box, conf, cls, frame=k)
        after = tracker.update(box, conf, cls, frame=9 + gap)
        after = tracker.update(box, conf, cls, frame=10 + gap)
        return int(first.track_id[0]), int(after.track_id[0])

    short, long = ids_after(3), ids_after(5 * 25)  # 3 frames dropped; a 5 s outage at 25 fps
    assert short[0] == short[1]
    assert long[1] != long[0]


def test_one_of_three_cameras_dying_for_good_is_an_error_record_and_the_others_go_on(rtsp):
    config = CaptureConfig(read_timeout_s=2.0, reconnect=ReconnectConfig(max_attempts=2, first_delay_s=0.1,
                                                                       max_delay_s=0.3))
    servers = [RtspCamera({"cam": CAMERA}) for _ in range(3)]
    try:
        for server in servers:
            server.start()
        source = open_source([s.url("cam") for s in servers], capture=config)
        reader = Collector(source)
        try:
            assert reader.wait_for(lambda: all(len(reader.frames_after(0, k)) >= 5 for k in range(3)), 30)
            servers[1].stop()  # for good
            assert reader.wait_for(lambda: any(e is not None for *_, e in reader.items), 15), "no error record"
            died = next(t for t, *_, e in reader.items if e is not None)
            assert reader.wait_for(lambda: all(len(reader.frames_after(died + 1.0, k)) >= 10 for k in (0, 2)), 15)
        finally:
            reader.close()
    finally:
        for server in servers:
            server.stop()
    (lost,) = [(s, e) for _, s, _, e in reader.items if e is not None]
    assert lost[0] == 1 and servers[1].url("cam") in str(lost[1]) and "gave up" in str(lost[1])
    assert source.health[1].state == "failed" and source.health[0].state == source.health[2].state == "live"


def test_reconnection_off_a_lost_rtsp_camera_is_an_error_record_and_exit_1(rtsp, monkeypatch, tmp_path):
    import json

    from tests.cli_fakes import invoke, use_fake_detector

    use_fake_detector(monkeypatch)
    out = tmp_path / "cam.jsonl"
    with RtspCamera({"cam": CAMERA}) as server:
        timer = threading.Timer(3.0, server.stop)  # the camera goes away mid-run
        timer.start()
        try:
            result = invoke("predict", server.url("cam"), "--reconnect", "off", "--save-json", out, "-q")
        finally:
            timer.cancel()
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    *frames, lost = records
    assert frames and all("error" not in r for r in frames)
    assert lost["source"] == server.url("cam") and "live source lost" in lost["error"]
    assert "reconnection is off" in lost["error"]
    assert "skipped:" in result.output and "[ WARN" not in result.output
    assert f"camera: {server.url('cam')}: stalled (the stream ended)" in result.output


def test_predict_follows_a_camera_through_a_restart_then_gives_up_after_its_attempts(rtsp, monkeypatch, tmp_path):
    import json

    from tests.cli_fakes import invoke, use_fake_detector

    use_fake_detector(monkeypatch)
    out = tmp_path / "cam.jsonl"
    server = RtspCamera({"cam": CAMERA})
    timers = [threading.Timer(2.0, server.stop), threading.Timer(4.0, server.start),
              threading.Timer(7.0, server.stop)]  # away 2 s, back, then gone for good
    server.start()
    try:
        for timer in timers:
            timer.start()
        result = invoke("predict", server.url("cam"), "--reconnect", "3", "--save-json", out, "-q")
    finally:
        for timer in timers:
            timer.cancel()
        server.stop()
    assert result.exit_code == 1, result.output
    *frames, lost = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert "gave up after 3 reconnection attempts" in lost["error"]
    numbers = [r["frame"] for r in frames]
    assert {r["stream"] for r in frames} == {0} and numbers == sorted(numbers)
    assert max(b - a for a, b in itertools.pairwise(numbers)) >= 25  # the 2 s outage, counted
    url = server.url("cam")
    assert f"camera: {url}: reconnecting" in result.output and f"camera: {url}: live (reconnected (1))" in result.output


def test_rtsp_over_udp_when_asked_and_the_ffmpeg_options_are_per_capture(rtsp):
    with RtspCamera({"cam": CAMERA}) as server:
        for transport in ("udp", "tcp"):
            with open_capture(server.url("cam"), config=CaptureConfig(rtsp_transport=transport,
                                                                      reconnect=ReconnectConfig(enabled=False))) as cap:
                frames = [cap.read() for _ in range(5)]
            assert all(f is not None and f.shape == (240, 320, 3) for f in frames), transport
    assert "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ  # set for each open only
