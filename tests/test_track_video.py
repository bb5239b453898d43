"""Tracking on real video with the real model, held to Ultralytics' own tracker.

The reference (``../shared/data/video/tracking_reference_walking_720p.json``) is
Ultralytics 8.4.190's ``track(walking_720p.mp4, tracker=..., conf=0.25,
iou=0.7)`` with the shared FP32 IR, which it runs on 640x640 square
letterboxes; the detections here come from our Detector at the same settings
with shape specialisation off (the same square input).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.media import MjpegCamera
from yolo_ov import DetectConfig, Detections
from yolo_ov.cli import app
from yolo_ov.io.capture import CaptureConfig, ReconnectConfig
from yolo_ov.io.sources import capture_defaults
from yolo_ov.pipeline import PipelineConfig
from yolo_ov.results import Failure
from yolo_ov.track import FrameTracks, LiveStreams, Tracker, TrackerConfig, frame_agreement, idf1

SQUARE = PipelineConfig(specialize="off")
REFERENCE_SETTINGS = DetectConfig(conf=0.25, iou=0.7)


@pytest.fixture(scope="module")
def videos(shared) -> Path:
    folder = shared.root / "data" / "video"
    needed = [folder / n for n in ("walking_720p.mp4", "traffic_540p.mp4", "tracking_reference_walking_720p.json")]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"shared video assets missing: {', '.join(missing)}")
        pytest.skip(f"shared video assets missing: {', '.join(missing)}")
    return folder


@pytest.fixture(scope="module")
def reference(videos) -> dict[str, list[FrameTracks]]:
    data = json.loads((videos / "tracking_reference_walking_720p.json").read_text(encoding="utf-8"))
    return {name: [FrameTracks.of(f["xyxy"], f["cls"], f["id"]) for f in tracker["frames"]]
            for name, tracker in data["trackers"].items()}


@pytest.fixture(scope="module")
def walking_detections(fp32_detector, videos) -> list[Detections]:
    """Our detections of every frame, at the reference's settings and input shape."""
    with fp32_detector.stream(videos / "walking_720p.mp4", config=SQUARE, detect=REFERENCE_SETTINGS) as run:
        results = list(run)
    assert [r.frame for r in results] == list(range(341))
    return results


def _frames(path: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        n = 0
        while limit is None or n < limit:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
            n += 1
    finally:
        cap.release()


def _track_offline(detections: list[Detections], config: TrackerConfig, *, every: int = 1,
                   images: Iterator[np.ndarray] | None = None) -> list[FrameTracks]:
    """Our Tracker on cached detections: update on every ``every``-th frame, predict the rest."""
    tracker, out = Tracker(config), []
    for k, det in enumerate(detections):
        image = next(images) if images is not None else None
        if k % every:
            objs = tracker.predict(frame=k)
        else:
            objs = tracker.update(det.xyxy, det.confidence, det.class_id, frame=k, image=image)
        out.append(FrameTracks.of(objs.xyxy, objs.class_id, objs.track_id))
    return out


def _tracks(results: list[Detections]) -> list[FrameTracks]:
    return [FrameTracks.of(r.xyxy, r.class_id, r.data["track_id"]) for r in results]


def _ids(frames: list[FrameTracks]) -> set[int]:
    return {int(i) for f in frames for i in f.track_id}


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_tracking_agrees_with_ultralytics(kind, walking_detections, reference, videos, record_property):
    images = _frames(videos / "walking_720p.mp4") if kind == "botsort" else None
    ours = _track_offline(walking_detections, TrackerConfig.defaults(kind), images=images)
    truth = reference[kind]
    objects = frame_agreement(ours, truth, iou=0.5)
    tight = frame_agreement(ours, truth, iou=0.9)
    score = idf1(truth, ours)
    n_ours, n_truth = len(_ids(ours)), len(_ids(truth))
    record_property("figures", {"agree@0.5": objects.both_ways, "agree@0.9": tight.both_ways, "idf1": score,
                                "ids": n_ours, "reference_ids": n_truth})
    # Measured on an Intel Xeon (AMX): 1.000 / 0.997 / IDF1 1.000 / 154 ids for ByteTrack, all 1.000 for BoT-SORT.
    assert objects.both_ways >= 0.95
    assert tight.both_ways >= 0.9
    assert score >= 0.9
    assert abs(n_ours - n_truth) <= 0.2 * n_truth


def test_detector_track_is_the_tracker_on_the_detector_stream(fp32_detector, walking_detections, videos):
    """End to end (Detector.track over a frame iterable) equals the tracker fed the same detections."""
    with fp32_detector.track(_frames(videos / "walking_720p.mp4", 60), config=SQUARE,
                             detect=REFERENCE_SETTINGS) as run:
        results = list(run)
    offline = _track_offline(walking_detections[:60], TrackerConfig.defaults("bytetrack"))
    assert len(results) == 60 and run.inferred == 60 and run.predicted == 0
    for got, want in zip(_tracks(results), offline, strict=True):
        np.testing.assert_array_equal(got.track_id, want.track_id)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-2)
    assert "predicted" not in results[5].data
    record = results[5].to_dict()
    assert all(isinstance(d["track_id"], int) for d in record["detections"])


def test_detect_every_predicts_skipped_frames_in_order(fp32_detector, walking_detections, videos, record_property):
    with fp32_detector.track(videos / "walking_720p.mp4", detect_every=3, config=SQUARE,
                             detect=REFERENCE_SETTINGS) as run:
        results = list(run)
    assert [r.frame for r in results] == list(range(341))
    assert (run.inferred, run.predicted) == (114, 227)
    for r in results:
        assert r.data["predicted"].tolist() == [r.frame % 3 != 0] * len(r)
    # the pipeline's frames are the every-3rd detections, and the tracker predicts the rest from them
    offline = _track_offline(walking_detections, TrackerConfig.defaults("bytetrack"), every=3)
    for got, want in zip(_tracks(results), offline, strict=True):
        np.testing.assert_array_equal(got.track_id, want.track_id)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-2)
    every_frame = _track_offline(walking_detections, TrackerConfig.defaults("bytetrack"))
    figures = {n: idf1(every_frame, _track_offline(walking_detections, TrackerConfig.defaults("bytetrack"), every=n))
               for n in (2, 3)}
    record_property("idf1_vs_every_frame", figures)
    # Measured: IDF1 against every-frame tracking 0.96 (N=2) and 0.93 (N=3) on this clip.
    assert figures[2] >= 0.9 and figures[3] >= 0.85


@pytest.fixture(scope="module")
def two_clips(videos, tmp_path_factory) -> tuple[Path, Path]:
    """Short MJPG clips of two different scenes (so the runs stay short)."""
    folder = tmp_path_factory.mktemp("clips")
    out = []
    for name, src in (("walk.avi", "walking_720p.mp4"), ("cars.avi", "traffic_540p.mp4")):
        frames = list(_frames(videos / src, 30))
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
        for f in frames:
            writer.write(f)
        writer.release()
        out.append(folder / name)
    return out[0], out[1]


def test_two_streams_have_disjoint_ids_and_the_same_tracks_as_alone(fp32_detector, two_clips):
    # one input shape throughout (with specialisation the first frames may run at the model's
    # own shape while the video's is compiled in the background, so boxes would differ a little)
    with fp32_detector.track(list(two_clips), config=SQUARE) as run:
        together = list(run)
    alone = []
    for clip in two_clips:
        with fp32_detector.track(clip, config=SQUARE) as run:
            alone.append(list(run))
    by_stream = [[r for r in together if r.stream == s] for s in (0, 1)]
    ids = [_ids(_tracks(frames)) for frames in by_stream]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    for joint, single in zip(by_stream, alone, strict=True):
        assert [r.frame for r in joint] == [r.frame for r in single] == list(range(30))
        rename: dict[int, int] = {}
        for a, b in zip(joint, single, strict=True):
            np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-2)
            for x, y in zip(a.data["track_id"].tolist(), b.data["track_id"].tolist(), strict=True):
                assert rename.setdefault(x, y) == y  # one id in the joint run is one id alone
        assert len(set(rename.values())) == len(rename)


def _paced(path: Path, fps: float, limit: int) -> Iterator[np.ndarray]:
    """A simulated camera: the clip's frames, each released at its time."""
    start = time.perf_counter()
    for k, frame in enumerate(_frames(path, limit)):
        delay = start + k / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield frame


def test_live_camera_with_drops_keeps_ids_across_the_gaps(fp32_detector, videos, reference):
    camera = LiveStreams([_paced(videos / "walking_720p.mp4", 25.0, 150)], names=["cam0"])  # the clip's own rate
    results = []
    with fp32_detector.track(camera, config=SQUARE, detect=REFERENCE_SETTINGS) as run:
        for r in run:
            results.append(r)
            time.sleep(0.08)  # a slow consumer: the camera runs on, the `latest` policy drops frames
        dropped = sum(run.skipped.values())
    frames = [r.frame for r in results]
    assert frames == sorted(frames) and dropped > 0
    assert max(np.diff(frames)) >= 2 and len(frames) + dropped == 150
    truth = [reference["bytetrack"][k] for k in frames]
    ours = _tracks(results)
    # Ultralytics tracked every frame; we saw about a third of them, with gaps of 2-17 frames, and
    # predicted across. Measured (Xeon, busy machine): objects 0.96-0.97, IDF1 0.96, 59-66 ids vs 73-78.
    assert frame_agreement(ours, truth, iou=0.5).both_ways >= 0.9
    assert idf1(truth, ours) >= 0.85
    assert len(_ids(ours)) <= 1.2 * len(_ids(truth))


# -- the command line ------------------------------------------------------------------------------
runner = CliRunner()


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_cli_track_writes_ids_predictions_counts_and_video(shared, two_clips, tmp_path):
    out, video = tmp_path / "t.jsonl", tmp_path / "t.mp4"
    result = _invoke("track", two_clips[0], "--model", shared.fp32_model, "--detect-every", "2",
                     "--line", "0,360,1280,360", "--zone", "0,0,640,0,640,720,0,720",
                     "--save-json", out, "--save-video", video, "-q")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["frame"] for r in records] == list(range(30))
    for r in records:
        assert r["detections"], r
        assert {d["predicted"] for d in r["detections"]} == {r["frame"] % 2 == 1}
        assert all(isinstance(d["track_id"], int) for d in r["detections"])
        assert set(r["counts"]) == {"lines", "zones"}
        assert r["counts"]["zones"]["zone1"]["occupancy"] <= len(r["detections"])
    assert "15 inferred, 15 predicted" in result.output and "line1: in" in result.output
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    cap.release()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tracker", "deepsort"), "not bytetrack or botsort and no such file"),
        (("--detect-every", "0"), "--detect-every 0"),
        (("--line", "1,2,3"), "expected x1,y1,x2,y2"),
    ],
)
def test_cli_track_bad_options_are_one_line_errors(shared, two_clips, args, message):
    result = _invoke("track", two_clips[0], "--model", shared.fp32_model, *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_cli_track_reads_an_ultralytics_format_tracker_file(shared, two_clips, tmp_path):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("tracker_type: botsort\ntrack_high_thresh: 0.5\nnew_track_thresh: 0.6\ngmc_method: none\n",
        encoding="utf-8")
    out = tmp_path / "t.jsonl"
    result = _invoke("track", two_clips[0], "--model", shared.fp32_model, "--tracker-config", cfg,
                     "--save-json", out, "-q")
    assert result.exit_code == 0, result.output
    assert "(botsort)" in result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # on the first frame every track is new: only detections at or above the file's new_track_thresh start one
    first = records[0]["detections"]
    assert first and min(d["confidence"] for d in first) >= 0.6


def test_cli_track_missing_input_is_a_usage_error(shared, tmp_path):
    result = _invoke("track", tmp_path / "nope.mp4", "--model", shared.fp32_model)
    assert result.exit_code == 2 and "nope.mp4: no such file or folder" in result.output


def test_cli_detect_every_refuses_image_files(shared):
    result = _invoke("track", shared.coco96 / "images", "--model", shared.fp32_model, "--detect-every", "2")
    assert result.exit_code == 2 and "not image files" in result.output


def test_cli_track_on_a_live_camera_with_drops(shared, videos, reference, tmp_path):
    frames = list(_frames(videos / "walking_720p.mp4", 150))
    out = tmp_path / "live.jsonl"
    with MjpegCamera(frames, fps=50.0) as cam:
        result = _invoke("track", cam.url, "--model", shared.fp32_model, "--conf", "0.25", "--no-specialize",
                         "--save-json", out, "--reconnect", "off", "-q")
    assert result.exit_code == 1, result.output  # the camera hangs up after its clip: given up on, one failed input
    *records, lost = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert "live source lost" in lost["error"]
    seen = [r["frame"] for r in records]
    assert seen == sorted(seen) and max(np.diff(seen)) >= 2 and "skipped (latest)" in result.output
    ours = [FrameTracks.of([d["box"] for d in r["detections"]], [d["class_id"] for d in r["detections"]],
                           [d["track_id"] for d in r["detections"]]) for r in records]
    truth = [reference["bytetrack"][k] for k in seen]
    # re-encoded as JPEG by the camera, seen with gaps: the same people keep their ids
    assert frame_agreement(ours, truth, iou=0.5).both_ways >= 0.85
    assert idf1(truth, ours) >= 0.75


def test_cli_predict_tracker_adds_ids_to_its_outputs(shared, two_clips, tmp_path):
    out, video = tmp_path / "p.jsonl", tmp_path / "p.avi"
    result = _invoke("predict", two_clips[1], "--model", shared.fp32_model, "--tracker", "botsort",
                     "--save-json", out, "--save-video", video, "-q")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["frame"] for r in records] == list(range(30))
    ids = [d["track_id"] for r in records for d in r["detections"]]
    assert ids and len(set(ids)) < len(ids) / 5  # the same cars keep their ids over 30 frames
    assert all("predicted" not in d for r in records for d in r["detections"])
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    cap.release()


def test_detect_every_on_a_camera_decodes_only_the_inferred_frames(fp32_detector, videos, monkeypatch):
    from yolo_ov.track import sources

    decoded = []
    real = sources._Grabbed.decode
    monkeypatch.setattr(sources._Grabbed, "decode", lambda self: decoded.append(1) or real(self))
    frames = list(_frames(videos / "walking_720p.mp4", 60))
    once = CaptureConfig(reconnect=ReconnectConfig(enabled=False))  # the camera hangs up after its frames
    with MjpegCamera(frames, fps=50.0) as cam, capture_defaults(once), \
            fp32_detector.track(cam.url, detect_every=3, drop=None, config=SQUARE) as run:
        *results, lost = list(run)
    assert isinstance(lost, Failure) and "live source lost" in lost.error
    assert [r.frame for r in results] == list(range(60))  # drop=None: every camera frame answered, in order
    assert (run.inferred, run.predicted) == (20, 40)
    assert len(decoded) == 20  # skipped frames were grabbed, never decoded
    assert all(r.data["predicted"].all() for r in results if r.frame % 3) and any(len(r) for r in results[1:3])


def test_detect_every_on_live_streams_answers_every_frame_not_dropped_in_order(fp32_detector, videos, reference):
    walking = videos / "walking_720p.mp4"
    cameras = LiveStreams([_paced(walking, 25.0, 100), _paced(walking, 25.0, 100)], names=["a", "b"])
    with fp32_detector.track(cameras, detect_every=2, config=SQUARE, detect=REFERENCE_SETTINGS) as run:
        results = list(run)
        dropped = dict(run.skipped)
    assert run.inferred + run.predicted == len(results)
    assert run.predicted >= 90  # every other camera frame is the tracker's
    for stream in (0, 1):
        frames = [r.frame for r in results if r.stream == stream]
        assert frames == sorted(set(frames))  # in order, each once
        assert len(frames) + dropped[stream] == 100  # a frame is answered unless the `latest` policy dropped it
    ours = [r for r in results if r.stream == 0]
    truth = [reference["bytetrack"][r.frame] for r in ours]
    # how many frames the detector gets depends on the machine's load (measured 0.84 with the 2-core machine
    # shared by several test runs at load 14-19; 0.96 for every-2nd-frame tracking without drops)
    assert idf1(truth, _tracks(ours)) >= 0.7


def test_tracking_a_segmentation_model_keeps_each_tracked_object_its_mask(shared, two_clips, tmp_path):
    from yolo_ov import Detector

    model = shared.root / "models" / "yolo11n-seg_int8_openvino_model"
    with Detector(model, mode="throughput") as det, det.track(two_clips[0], detect_every=2) as run:
        results = list(run)
    assert len(results) == 30
    inferred = [r for r in results if r.frame % 2 == 0 and len(r)]
    assert inferred
    for r in inferred:
        assert len(r.data["masks"]) == len(r) == len(r.data["track_id"])
        record = r.to_dict()["detections"]
        assert all("mask" in d and "track_id" in d for d in record)
    for r in results:
        if r.frame % 2:
            assert set(r.data) == {"track_id", "predicted"}  # a predicted frame has boxes only
