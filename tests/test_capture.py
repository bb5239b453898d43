"""``open_capture``: the one way files, cameras and stream URLs are opened, for predict's and track's sources."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from tests.media import MjpegCamera, grey_frames, write_clip
from yolo_ov import InputError
from yolo_ov.errors import ConfigError
from yolo_ov.io.capture import Capture, CaptureConfig, ReconnectConfig, open_capture
from yolo_ov.io.health import Health
from yolo_ov.io.sources import _capture_frames, open_source, probe_videos, video_fps


def _textured(n: int, hw: tuple[int, int] = (48, 80)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [cv2.GaussianBlur(rng.integers(0, 255, (*hw, 3), np.uint8), (7, 7), 2) for _ in range(n)]


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "clip.avi", _textured(6), fps=20.0)


def test_a_video_file_reports_what_its_container_says(clip):
    with open_capture(clip) as cap:
        assert isinstance(cap, Capture)
        assert (cap.kind, cap.live, cap.encoded) == ("video", False, False)
        assert cap.name == str(clip)
        assert cap.fps == pytest.approx(20.0)
        assert cap.frame_count == 6
        assert cap.frame_hw == (48, 80)
        assert cap.fourcc == "MJPG"
    assert cap.closed


def test_read_gives_every_frame_then_none(clip):
    cap = open_capture(str(clip))
    frames = []
    while (frame := cap.read()) is not None:
        frames.append(frame)
    cap.close()
    assert len(frames) == 6 and all(f.shape == (48, 80, 3) and f.dtype == np.uint8 for f in frames)


def test_grab_then_retrieve_decodes_only_the_frames_asked_for(clip):
    with open_capture(clip) as cap:
        every = list(cap.frames())
    with open_capture(clip) as cap:
        assert cap.grab() and cap.grab() and cap.grab()
        third = cap.retrieve()
    np.testing.assert_array_equal(third, every[2])


def test_encoded_mjpeg_gives_jpeg_bytes_of_the_same_frames(clip):
    with open_capture(clip) as cap:
        decoded = list(cap.frames())
    cap = open_capture(clip, encoded=True)
    if not cap.encoded:
        cap.close()
        pytest.skip(f"OpenCV reads MJPG through {cap.backend} here, which has no raw packet mode")
    packets = list(cap.frames())
    assert len(packets) == len(decoded) == 6
    for data, frame in zip(packets, decoded, strict=True):
        assert isinstance(data, bytes) and data[:2] == b"\xff\xd8"
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == frame.shape and np.abs(image.astype(int) - frame).mean() < 4.0  # two JPEG decoders


def test_other_codecs_are_decoded_even_when_bytes_are_asked_for(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", _textured(3), fourcc="mp4v")
    with open_capture(clip, encoded=True) as cap:
        assert not cap.encoded
        first = cap.read()
    assert isinstance(first, np.ndarray) and first.shape == (48, 80, 3)
    assert isinstance(next(_capture_frames(clip, encoded=True)), np.ndarray)


def test_a_closed_capture_reads_nothing_and_closes_once(clip):
    cap = open_capture(clip)
    cap.close()
    cap.close()
    assert cap.read() is None and cap.grab() is False and cap.retrieve() is None


def test_frames_closes_the_capture_when_the_reader_stops_early(clip):
    cap = open_capture(clip)
    frames = cap.frames()
    next(frames)
    frames.close()
    assert cap.closed


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(InputError) as info:
        open_capture(tmp_path / "nope.mp4")
    assert str(info.value) == f"{tmp_path / 'nope.mp4'}: no such video file"
    assert info.value.source == str(tmp_path / "nope.mp4")


def test_a_file_opencv_cannot_read_is_one_line_naming_it(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(InputError, match=r"junk\.mp4: cannot open video with OpenCV") as info:
        open_capture(junk)
    assert "\n" not in str(info.value)


def test_a_stream_that_cannot_be_reached_says_stream():
    once = CaptureConfig(reconnect=ReconnectConfig(enabled=False))
    with pytest.raises(InputError, match=r"127\.0\.0\.1:9/none\.mjpg: cannot open stream with OpenCV"):
        open_capture("http://127.0.0.1:9/none.mjpg", config=once)


def test_a_stream_that_cannot_be_reached_is_retried_with_backoff_then_given_up_on():
    health = Health("http://127.0.0.1:9/none.mjpg")
    seen = []
    health.subscribe(seen.append)
    policy = ReconnectConfig(max_attempts=3, first_delay_s=0.05, max_delay_s=0.1)
    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"none\.mjpg: live source lost .*gave up after 3 reconnection attempts"):
        open_capture("http://127.0.0.1:9/none.mjpg", config=CaptureConfig(reconnect=policy), health=health)
    assert time.monotonic() - t0 < 5
    assert [c.state for c in seen] == ["connecting", "reconnecting", "failed"]
    assert [c.reason.split(" in ")[0] for c in health.history][1] == "attempt 1"
    assert seen[-1].previous == "reconnecting" and "gave up" in seen[-1].reason and seen[-1].time >= seen[0].time


def test_a_camera_index_that_does_not_exist_says_camera():
    with pytest.raises(InputError, match=r"^987: cannot open camera with OpenCV"):
        open_capture(987)
    with pytest.raises(InputError, match=r"^986: cannot open camera"):
        open_capture("986")


#: Reconnection off: these cameras hang up after their frames, and a lost camera is then given up on.
ONCE = CaptureConfig(reconnect=ReconnectConfig(enabled=False))


def test_an_http_mjpeg_camera_is_a_live_stream(tmp_path):
    with MjpegCamera(_textured(5), fps=100) as cam, open_capture(cam.url, config=ONCE) as cap:
        assert (cap.kind, cap.live) == ("stream", True)
        assert cap.frame_count is None  # a camera has no length
        frames = list(cap.frames())
    assert len(frames) == 5 and frames[0].shape == (48, 80, 3)
    assert cap.error is not None and "live source lost" in str(cap.error) and "reconnection is off" in str(cap.error)
    assert [c.state for c in cap.health.history] == ["connecting", "live", "stalled", "failed"]


@pytest.fixture
def opencv_log_level(monkeypatch):
    """OpenCV's process-wide log level at its default (warnings), put back after the test."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    yield monkeypatch
    cv2.utils.logging.setLogLevel(level)


@pytest.mark.parametrize("chosen", [None, "WARNING"])
def test_reading_a_stream_quiets_opencvs_warnings_unless_the_user_chose_a_level(opencv_log_level, chosen):
    """A stream that stops sending made OpenCV print a WARN line per timed-out read (every 10 s per camera) beside
    the stall its health reports; OPENCV_LOG_LEVEL, OpenCV's own variable, keeps them."""
    if chosen is not None:
        opencv_log_level.setenv("OPENCV_LOG_LEVEL", chosen)
    with MjpegCamera(_textured(5), fps=100) as cam, open_capture(cam.url, config=ONCE) as cap:
        assert len(list(cap.frames())) == 5
    expected = cv2.utils.logging.LOG_LEVEL_ERROR if chosen is None else cv2.utils.logging.LOG_LEVEL_WARNING
    assert cv2.utils.logging.getLogLevel() == expected


def test_a_file_leaves_opencvs_log_level_alone(opencv_log_level, clip):
    with open_capture(clip) as cap:
        assert len(list(cap.frames())) == 6
    assert cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_WARNING


def test_an_http_mjpeg_camera_read_encoded_gives_its_jpegs(tmp_path):
    with MjpegCamera(grey_frames([40, 80, 120]), fps=100) as cam:
        cap = open_capture(cam.url, encoded=True, config=ONCE)
        if not cap.encoded:
            cap.close()
            pytest.skip("no raw packet mode for this stream here")
        packets = list(cap.frames())
    means = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR).mean() for p in packets]
    assert means == pytest.approx([40, 80, 120], abs=2)


def test_predict_sources_read_a_camera_through_open_capture(tmp_path):
    with MjpegCamera(grey_frames([10, 20, 30, 40]), fps=100) as cam:
        src = open_source(cam.url, drop=None, capture=ONCE)  # every frame, no drop policy
        items = list(src)
    assert src.live and src.video
    *items, lost = items  # the camera hung up and is not reconnected: an error item ends the stream
    assert isinstance(lost.data, InputError) and "live source lost" in str(lost.data) and lost.stream == 0
    assert src.health[0].state == "failed"
    assert [(i.stream, i.frame) for i in items] == [(0, k) for k in range(4)]
    assert [round(float(i.data.mean())) for i in items] == pytest.approx([10, 20, 30, 40], abs=2)


def test_predict_sources_keep_the_newest_camera_frame_undecoded(tmp_path):
    with MjpegCamera(grey_frames(list(range(10, 250, 20))), fps=200) as cam:
        src = open_source(cam.url, capture=ONCE)
        *items, lost = list(src)
        src.close()
    assert isinstance(lost.data, InputError)
    assert src.latest and items
    assert all(isinstance(i.data, (bytes, np.ndarray)) for i in items)
    assert len(items) + src.total_skipped == 12  # every frame is yielded or counted as skipped
    assert [i.frame for i in items] == sorted(i.frame for i in items)


def test_track_reads_a_camera_through_open_capture_and_decodes_on_demand(tmp_path):
    from yolo_ov.track.sources import _Camera, _Grabbed

    with MjpegCamera(grey_frames([50, 100, 150]), fps=100) as cam:
        *got, lost = [x if isinstance(x, InputError) else (x[0], x[1].shape, x[1].decode())
                      for x in _Camera(cam.url, ONCE, 0)]  # each decoded before the next grab
    assert isinstance(lost, InputError) and "live source lost" in str(lost)
    assert [i for i, _, _ in got] == [0, 1, 2]
    assert all(isinstance(g, np.ndarray) for _, _, g in got)
    assert [round(float(g.mean())) for _, _, g in got] == pytest.approx([50, 100, 150], abs=2)
    assert _Grabbed.__slots__ == ("_cap", "_shape")


def test_track_camera_that_cannot_be_opened_is_an_error_item():
    from yolo_ov.track.sources import _Camera

    (item,) = list(_Camera("http://127.0.0.1:9/none.mjpg", ONCE, 0))
    assert isinstance(item, InputError) and "cannot open stream" in str(item)


def test_video_fps_is_the_first_video_that_says(tmp_path, clip):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    assert video_fps([str(image), str(tmp_path / "missing.avi"), str(clip)]) == pytest.approx(20.0)
    assert video_fps([str(image)]) == 30.0
    assert video_fps(["rtsp://cam/1"], default=12.5) == 12.5


def test_probe_videos_reads_counts_and_sizes_through_open_capture(tmp_path, clip):
    other = write_clip(tmp_path / "other.avi", _textured(4, (32, 32)))
    assert probe_videos([str(clip)]) == (6, (48, 80))
    assert probe_videos([str(clip), str(other)]) == (10, None)
    assert probe_videos([str(tmp_path / "missing.avi")]) == (None, None)


def test_capture_frames_turns_an_open_failure_into_an_error_item(tmp_path):
    (item,) = list(_capture_frames(tmp_path / "nope.avi"))
    assert isinstance(item, InputError) and "no such video file" in str(item)


@pytest.mark.parametrize("module", ["yolo_ov.io.capture", "yolo_ov.io.health", "yolo_ov.io.sink",
                                    "yolo_ov.io.sources"])
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    import doctest
    import importlib

    monkeypatch.chdir(tmp_path)  # "missing.mp4" must not exist
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL,
                             extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


def test_a_file_that_cannot_be_opened_is_asked_about_once_so_ffmpeg_complains_once(tmp_path, capfd):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    src = open_source(str(junk))
    assert src.expected_frames is None  # its length asked first (one open), then its frames
    (item,) = list(src)
    assert video_fps([str(junk)]) == 30.0
    assert isinstance(item.data, InputError) and "cannot open video" in str(item.data)
    assert capfd.readouterr().err.count("moov atom not found") <= 1  # was three times, once per open
    junk.write_bytes(b"changed")  # a file that changes is asked about again
    with pytest.raises(InputError):
        open_capture(junk)


def test_a_looped_file_starts_again_at_its_end_at_its_frame_rate(tmp_path):
    clip = write_clip(tmp_path / "loop.avi", grey_frames([40, 120, 200]), fps=20.0)
    t0 = time.monotonic()
    with open_capture(clip, config=CaptureConfig(loop=True)) as cap:
        frames = [cap.read() for _ in range(8)]
        numbers = cap.frame_index
    took = time.monotonic() - t0
    assert [round(float(f.mean()) / 40) for f in frames] == [1, 3, 5, 1, 3, 5, 1, 3]
    assert numbers == 7 and 0.3 <= took < 2.0  # 8 frames at 20 fps: paced as a camera, not read flat out
    assert cap.health.state == "live"


def test_reconnect_settings_are_checked_and_the_backoff_grows_to_its_cap():
    import random

    policy = ReconnectConfig(first_delay_s=0.5, max_delay_s=30.0, factor=1.5, jitter=0.0)
    assert [policy.delay(k) for k in (1, 2, 3)] == [0.5, 0.75, 1.125] and policy.delay(50) == 30.0
    jittered = ReconnectConfig(jitter=0.2)
    rng = random.Random(1)
    assert all(0.4 <= jittered.delay(1, rng) <= 0.6 for _ in range(50))
    # The first early_s of an outage: waits capped at early_max_delay_s; then they grow again from that cap,
    # without a jump (a 16th attempt must not wait the 30 s its attempt number alone would give).
    assert policy.delay(8, lost_for_s=5.0) == 1.0
    assert policy.delay(16, lost_for_s=15.0) == 1.0 and policy.delay(17, lost_for_s=17.0) == 2.0
    assert policy.delay(60, lost_for_s=600.0) == 30.0
    late = [policy.delay(k, lost_for_s=t) for k, t in ((16, 15.0), (17, 16.0), (18, 17.5), (19, 19.75))]
    assert late == pytest.approx([1.0, 1.5, 2.25, 3.375])  # geometric, factor 1.5, from the early cap
    assert ReconnectConfig(jitter=0.0, early_s=0.0).delay(1, lost_for_s=0.0) == 0.5
    for bad in ({"max_attempts": -1}, {"first_delay_s": 40.0}, {"factor": 0.5}, {"jitter": 1.0}, {"early_s": -1.0}):
        with pytest.raises(ConfigError, match="reconnect"):
            ReconnectConfig(**bad)
    with pytest.raises(ConfigError, match="rtsp_transport"):
        CaptureConfig(rtsp_transport="quic")
