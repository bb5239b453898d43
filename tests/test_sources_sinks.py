"""Sources (videos, iterables, live policy) and sinks (COCO JSON, video), and predict's throughput path,
all on clips written here and the fake engine (``tests.fakes``): no model needed."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from tests.cli_fakes import invoke as _invoke
from tests.cli_fakes import use_fake_detector
from tests.fakes import expected_for
from tests.media import grey_frames, write_clip
from yolo_ov import ConfigError, Detections, Failure, InputError
from yolo_ov.io.sinks import CocoJsonSink, VideoSink
from yolo_ov.io.sources import is_live, open_source


@pytest.fixture
def video_16x9(tmp_path):
    """A 640x360 (16:9) MJPG clip of 12 frames, textured so the codec has something to code."""
    rng = np.random.default_rng(5)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), np.uint8), (0, 0), 3) for _ in range(12)]
    return write_clip(tmp_path / "clip16x9.avi", frames, fps=12.0)


@pytest.fixture
def fake_cli(monkeypatch):
    return use_fake_detector(monkeypatch)


def _images(folder, values):
    """PNG files of one grey value each (the fake's answer per image is then known: ``expected_for``)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, v in enumerate(values):
        path = folder / f"img{k:02d}.png"
        cv2.imwrite(str(path), np.full((64, 64, 3), v, np.uint8))
        paths.append(path)
    return paths


def test_video_file_frames_are_tagged(video_16x9):
    src = open_source(str(video_16x9))
    items = list(src)
    assert src.video and not src.live
    assert len(items) == 12
    assert [(i.stream, i.frame) for i in items] == [(0, k) for k in range(12)]
    assert items[0].data.shape == (360, 640, 3)


def _mjpeg_clip(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def test_a_live_mjpeg_stream_is_read_without_decoding_the_frames_it_skips(tmp_path):
    """Motion-JPEG behind the ``latest`` policy: the readers keep JPEG bytes, the pipeline decodes
    the frames it takes; the bytes are the frames the decoder would have given (up to the JPEG
    decoder: libjpeg-turbo here, FFmpeg's in ``cap.read()``)."""
    from yolo_ov.io.sources import _capture_frames

    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), np.uint8), (9, 9), 3) for _ in range(6)]
    clip = _mjpeg_clip(tmp_path / "cam.avi", frames)
    packets = list(_capture_frames(clip, encoded=True))
    decoded = list(_capture_frames(clip))
    assert len(packets) == len(decoded) == 6 and all(isinstance(p, bytes) for p in packets)
    for data, frame in zip(packets, decoded, strict=True):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == frame.shape and np.abs(image.astype(int) - frame).mean() < 2.0
    replayed = open_source(str(clip), live=True)  # a recording replayed as a camera: same reader
    assert replayed.latest
    items = list(replayed)
    assert items and all(isinstance(i.data, bytes) for i in items)


def test_other_codecs_are_decoded_frame_by_frame_even_when_asked_for_bytes(tmp_path):
    from yolo_ov.io.sources import _capture_frames

    clip = write_clip(tmp_path / "clip.mp4", grey_frames([60, 120], (48, 64)), fourcc="mp4v")
    first = next(_capture_frames(clip, encoded=True))
    assert isinstance(first, np.ndarray) and first.ndim == 3


def test_missing_or_unreadable_video_is_an_error_item(tmp_path):
    items = list(open_source(str(tmp_path / "nope.mp4")))
    assert len(items) == 1 and isinstance(items[0].data, InputError) and "no such video" in str(items[0].data)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    items = list(open_source(str(junk)))
    assert len(items) == 1 and isinstance(items[0].data, InputError)


@pytest.mark.parametrize(
    ("spec", "live"),
    [(0, True), ("1", True), ("rtsp://cam/stream", True), ("http://host/video.mjpg", True),
     ("clip.mp4", False), ("images/", False)],
)
def test_live_detection(spec, live):
    assert is_live(spec) is live


def test_mixing_live_and_files_is_a_config_error(video_16x9):
    with pytest.raises(ConfigError, match="mix"):
        open_source(["rtsp://cam/1", str(video_16x9)])
    with pytest.raises(ConfigError, match="drop"):
        open_source([str(video_16x9)], drop="oldest")


def test_iterables_and_arrays(tmp_path):
    img = np.full((480, 640, 3), 90, np.uint8)
    (path,) = _images(tmp_path / "imgs", [90])
    assert [i.source for i in open_source(img)] == ["<array 480x640x3 uint8>"]
    gen = (img for _ in range(3))
    assert len(list(open_source(gen))) == 3
    assert len(list(open_source([img, img]))) == 2
    assert [i.source for i in open_source([path])] == [str(path)]


def _det(boxes, conf, cls, source="x/000000000042.jpg", **kw) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(conf, np.float32),
                      np.array(cls, np.int32), {0: "person", 1: "bicycle"}, (100, 200), source, **kw)


def test_coco_sink_writes_results_json(tmp_path):
    path = tmp_path / "res.json"
    with CocoJsonSink(path, category_ids=[1, 2]) as sink:
        sink.write(_det([[10, 20, 50, 80], [0, 0, 5, 5]], [0.9, 0.5], [0, 1]))
        sink.write(Failure("bad.jpg", "broken"))
        sink.write(_det([], [], [], source="y/cat.png"))
        sink.write(_det([[1, 2, 3, 4]], [0.3], [1], source="v.mp4", stream=0, frame=7))
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data[0] == {"image_id": 42, "category_id": 1, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.9}
    assert data[1]["category_id"] == 2
    assert data[2]["image_id"] == "v_0_7"
    assert len(data) == 3


def test_video_sink_writes_one_playable_file_per_stream(tmp_path):
    frame = np.full((360, 640, 3), 90, np.uint8)
    with VideoSink(tmp_path / "out.avi", fps=10) as sink:
        for k in range(5):
            sink.write(_det([[10, 10, 100, 100]], [0.8], [0], stream=0, frame=k), frame)
        sink.write(_det([[10, 10, 100, 100]], [0.8], [0], stream=1, frame=0), frame)
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (360, 640, 3)
    assert (tmp_path / "out_s1.avi").exists()
    with pytest.raises(ConfigError, match="must end in"):
        VideoSink(tmp_path / "out.gif")


def test_predict_folder_defaults_to_throughput_and_matches_latency(fake_cli, tmp_path):
    folder = tmp_path / "imgs"
    images = _images(folder, [10, 50, 90, 130, 170, 210, 30, 70])
    tp, lat = tmp_path / "tp.jsonl", tmp_path / "lat.jsonl"
    r1 = _invoke("predict", folder, "--save-json", tp, "--no-specialize", "-q")
    assert r1.exit_code == 0, r1.output
    assert "(throughput, pipeline 64x64:8" in r1.output
    r2 = _invoke("predict", folder, "--save-json", lat, "--mode", "latency", "-q")
    assert r2.exit_code == 0 and "(latency, CPU)" in r2.output
    a = [json.loads(x) for x in tp.read_text(encoding="utf-8").splitlines()]
    b = [json.loads(x) for x in lat.read_text(encoding="utf-8").splitlines()]
    assert [x["source"] for x in a] == [x["source"] for x in b] == [str(p) for p in images]
    assert [x["detections"][0]["class_id"] for x in a] == [expected_for(v)[0] for v in [10, 50, 90, 130, 170, 210,
                                                                                         30, 70]]
    for x, y in zip(a, b, strict=True):
        assert len(x["detections"]) == len(y["detections"])
        for dx, dy in zip(x["detections"], y["detections"], strict=True):
            np.testing.assert_allclose(dx["box"], dy["box"], rtol=1e-3, atol=0.02)


def test_predict_single_image_defaults_to_latency(fake_cli, tmp_path):
    (image,) = _images(tmp_path / "one", [77])
    result = _invoke("predict", image)
    assert result.exit_code == 0 and "(latency, CPU)" in result.output
    assert "1 images, 1 detections" in result.output
    assert fake_cli[-1]["runtime"].mode.value == "latency"


def test_predict_video_writes_frames_coco_and_annotated_video(fake_cli, video_16x9, tmp_path):
    jsonl, coco, video = tmp_path / "v.jsonl", tmp_path / "v.json", tmp_path / "v.avi"
    result = _invoke("predict", video_16x9, "--save-json", jsonl, "--save-coco", coco,
                     "--save-video", video, "-q")
    assert result.exit_code == 0, result.output
    # Shapes compile in the background (a short clip may be served by 640x640 meanwhile,
    # or not specialised at all): the summary accounts for every frame, whatever shape.
    shapes = re.search(r"pipeline ([\dx:, ]+)", result.output)
    assert shapes, result.output
    assert sum(int(part.split(":")[1]) for part in shapes.group(1).split(", ") if ":" in part) == 12
    records = [json.loads(x) for x in jsonl.read_text(encoding="utf-8").splitlines()]
    assert [(r["stream"], r["frame"]) for r in records] == [(0, k) for k in range(12)]
    entries = json.loads(coco.read_text(encoding="utf-8"))
    assert len(entries) == sum(len(r["detections"]) for r in records) > 0
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)  # the source's frame rate
    cap.release()
    assert f"video: {video} (12 frames)" in result.output


def test_predict_throughput_records_failures_and_exits_1(fake_cli, tmp_path):
    good = _images(tmp_path / "imgs", [40, 80])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnope")
    out = tmp_path / "p.jsonl"
    result = _invoke("predict", good[0], bad, good[1], "--mode", "throughput", "--save-json", out)
    assert result.exit_code == 1
    records = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert ["error" in r for r in records] == [False, True, False]
    assert records[1]["source"] == str(bad)
    assert "1 failed" in result.output
