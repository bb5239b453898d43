"""The throughput pipeline: same results as the latency path, order, bounds, errors, drop, shutdown, timeout."""

from __future__ import annotations

import itertools
import threading

import cv2
import numpy as np
import pytest

from tests.matching import matched_fraction
from yolo_ov import DetectConfig, Detections, Detector, Failure, InferenceError, RuntimeConfig
from yolo_ov.imaging.letterbox import letterbox
from yolo_ov.io.sources import FrameSource, SourceItem, open_source
from yolo_ov.pipeline import PipelineConfig

OFF = PipelineConfig(specialize="off")


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("yolo-ov") and t.is_alive()]


@pytest.fixture(scope="module")
def tput(shared):
    with Detector(shared.fp32_model, mode="throughput") as det:
        yield det


@pytest.fixture(scope="module")
def frames(shared) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in shared.coco96_images[:12]]


def _same(a: Detections, b: Detections) -> None:
    assert a.source == b.source
    np.testing.assert_allclose(a.xyxy, b.xyxy, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(a.confidence, b.confidence, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(a.class_id, b.class_id)


def test_throughput_equals_latency_at_the_models_shape(tput, fp32_detector, shared):
    images = shared.coco96_images[:16]
    results = list(tput.stream(images, config=OFF))
    assert [r.source for r in results] == [str(p) for p in images]
    assert sum(len(r) for r in results) > 30
    for r, path in zip(results, images, strict=True):
        _same(r, fp32_detector(path))


def test_specialised_shape_equals_latency_at_that_shape(tput, shared):
    """A 640x480 image goes to the 480x640 lane; a latency Detector compiled at 480x640 agrees."""
    images = [p for p in shared.coco96_images if cv2.imread(str(p)).shape[:2] == (480, 640)][:6]
    spec = PipelineConfig(specialize="on")
    first = tput.stream(images, config=spec)
    list(first)
    assert sum(first.stats.shapes.values()) == len(images)  # served at once, by whatever was compiled
    assert (480, 640) in tput.pipeline(spec).wait_compiled()
    run = tput.stream(images, config=spec)
    results = list(run)
    assert run.stats.shapes == {"480x640": len(images)}
    with Detector(shared.fp32_model, mode="latency", imgsz=(480, 640)) as lat:
        for r, path in zip(results, images, strict=True):
            _same(r, lat(path))


def test_ordered_and_unordered(tput, frames):
    items = [SourceItem(f, f"img{i}", frame=i) for i, f in enumerate(frames * 3)]
    ordered = list(tput.stream(FrameSource(items)))
    assert [r.frame for r in ordered] == list(range(len(items)))
    unordered = list(tput.stream(FrameSource(items), ordered=False))
    assert sorted(r.frame for r in unordered) == list(range(len(items)))
    by_frame = {r.frame: r for r in unordered}
    for r in ordered:
        _same(r, by_frame[r.frame])


def test_every_input_yields_one_result_or_one_error_record(tput, shared, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8not a jpeg")
    missing = tmp_path / "missing.jpg"
    good = shared.coco96_images[:3]
    sources = [good[0], bad, good[1], missing, str(tmp_path / "*.png"), good[2]]
    results = list(tput.stream([str(s) for s in sources]))
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["Detections", "Failure", "Detections", "Failure", "Failure", "Detections"]
    assert results[1].source == str(bad) and "truncated JPEG" in results[1].error
    assert "no such file" in results[3].error
    assert "matched no image" in results[4].error
    arrays = [np.zeros((0, 5, 3), np.uint8), np.ones((50, 60, 3), np.uint8)]
    results = list(tput.stream(iter(arrays)))
    assert isinstance(results[0], Failure) and "empty image" in results[0].error
    assert isinstance(results[1], Detections)


def test_soak_ten_thousand_inferences_complete_in_order(shared):
    n = 10_000
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(16)]
    items = (SourceItem(pool[i % 16], f"f{i}", frame=i) for i in range(n))
    with Detector(shared.fp32_model, mode="throughput", imgsz=64) as det:
        run = det.stream(FrameSource(items), config=PipelineConfig(max_pending=24))
        count = 0
        max_held = 0
        for expected, r in enumerate(run):
            assert isinstance(r, Detections) and r.frame == expected
            max_held = max(max_held, run.stats.read - expected)
            count += 1
        assert count == n and run.stats.done == n and run.stats.requests == n
        assert max_held <= 24 + 1
    assert _pipeline_threads() == []


def test_endless_source_is_bounded_and_closes(tput, frames):
    pulled = itertools.count()

    def endless():
        for i in itertools.count():
            next(pulled)
            yield frames[i % len(frames)]

    run = tput.stream(endless(), config=PipelineConfig(max_pending=6))
    for k, _ in enumerate(run, start=1):
        if k == 30:
            break
    read = next(pulled)
    assert read <= 30 + 6 + 1, f"source read {read} frames ahead of 30 results"
    assert _pipeline_threads() == []
    assert len(list(tput.stream(frames[:3]))) == 3  # the pipeline is reusable after a break


def test_ctrl_c_in_the_loop_drains_and_joins(tput, frames):
    with pytest.raises(KeyboardInterrupt):  # noqa: PT012
        for k, _ in enumerate(tput.stream(frames * 5), start=1):
            if k == 5:
                raise KeyboardInterrupt
    assert _pipeline_threads() == []
    assert not tput.engine._callbacks, "requests still in flight after close"
    assert len(list(tput.stream(frames[:2]))) == 2


def test_source_that_raises_is_reraised_for_the_caller(tput, frames):
    def broken():
        yield frames[0]
        raise RuntimeError("camera unplugged")

    with pytest.raises(RuntimeError, match="camera unplugged"):
        list(tput.stream(broken()))
    assert _pipeline_threads() == []


def test_callback_form_and_its_errors(tput, frames):
    seen: list[Detections] = []
    lock = threading.Lock()

    def collect(result):
        with lock:
            seen.append(result)

    stats = tput.stream_callback(frames * 2, collect)
    assert len(seen) == 2 * len(frames) == stats.done
    assert all(isinstance(r, Detections) for r in seen)

    def explode(result):
        raise ValueError("sink full")

    with pytest.raises(ValueError, match="sink full"):
        tput.stream_callback(frames, explode)
    assert _pipeline_threads() == []


def test_hung_request_raises_inference_error(shared, frames):
    """A request slower than the timeout is treated as hung: a clear error, not a block."""
    with Detector(shared.fp32_model, mode="throughput", warmup=False) as det:
        with pytest.raises(InferenceError, match="did not complete within"):
            list(det.stream(frames * 4, config=PipelineConfig(timeout_s=1e-4)))
        assert _pipeline_threads() == []
        with pytest.raises(InferenceError, match="hung request"):
            det.stream(frames, config=PipelineConfig(timeout_s=1e-4))


def test_latest_policy_drops_frames_for_a_slow_device(tput, frames):
    """A source faster than the device: the newest frame is inferred, the skipped ones are counted."""
    total = 200
    small = [cv2.resize(f, (320, 240)) for f in frames]

    def fast_camera():
        for i in range(total):
            yield small[i % len(small)]

    source = open_source(fast_camera(), live=True)
    results = list(tput.stream(source))
    assert all(isinstance(r, Detections) and r.stream == 0 for r in results)
    indices = [r.frame for r in results]
    assert indices == sorted(set(indices)), "frames out of order or repeated"
    assert source.total_skipped > 0
    assert len(results) + source.total_skipped == total


def test_batching_splits_results_back_per_image(shared, fp32_detector):
    images = shared.coco96_images[:5]  # 5 = two full batches of 2 and one padded
    runtime = RuntimeConfig(mode="throughput", batch=2)
    with Detector(shared.fp32_model, runtime=runtime) as det:
        run = det.stream(images, config=OFF)
        results = list(run)
        assert run.stats.requests == 3
    assert [r.source for r in results] == [str(p) for p in images]
    for r, path in zip(results, images, strict=True):
        _same(r, fp32_detector(path))


def test_video_is_specialised_to_its_aspect_ratio(tput, video_16x9):
    # A 12-frame clip is too short to repay a compile, so `auto` would keep it square
    # (test_short_video_stays_square_by_default); `on` forces the video's shape.
    spec = PipelineConfig(specialize="on")
    list(tput.stream(str(video_16x9), config=spec))  # starts compiling 384x640 in the background
    assert (384, 640) in tput.pipeline(spec).wait_compiled()
    run = tput.stream(str(video_16x9), config=spec)
    results = list(run)
    assert run.stats.shapes == {"384x640": len(results)}
    assert [r.frame for r in results] == list(range(len(results)))
    assert all(r.image_shape == (360, 640) for r in results)
    square = list(tput.stream(str(video_16x9), config=OFF))
    assert len(square) == len(results)
    # Same objects; boxes shift slightly with the letterbox (compare, don't equate).
    ok = total = 0
    for a, b in zip(results, square, strict=True):
        m, n = matched_fraction((a.xyxy, a.confidence, a.class_id), (b.xyxy, b.confidence, b.class_id),
                                min_conf=0.4, min_iou=0.7, conf_tol=0.15)
        ok, total = ok + m, total + n
    assert total > 20 and ok / total >= 0.9, (ok, total)


def test_several_live_streams_share_one_model(tput, video_16x9, tmp_path):
    other = tmp_path / "b.avi"
    cap = cv2.VideoCapture(str(video_16x9))
    writer = cv2.VideoWriter(str(other), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 360))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(cv2.flip(frame, 1))
    writer.release()
    source = open_source([str(video_16x9), str(other)], live=True)
    results = list(tput.stream(source))
    for stream in (0, 1):
        frames_of = [r.frame for r in results if r.stream == stream]
        assert frames_of and frames_of == sorted(frames_of)
    assert {r.source for r in results} == {str(video_16x9), str(other)}


def test_specialisation_keeps_map_on_coco96(shared):
    """Folder shape specialisation: mAP50-95 within 0.01 of the 640x640 path (Ultralytics' val settings)."""
    from yolo_ov.eval.dataset import load_dataset
    from yolo_ov.eval.validate import evaluate

    ds = load_dataset(shared.coco96 / "data.yaml")
    detect = DetectConfig(conf=0.001, multi_label=True)
    with Detector(shared.fp32_model, mode="throughput", detect=detect) as det:
        square = evaluate(ds, det.stream(ds.images, config=OFF))
        spec = PipelineConfig(specialize="on")
        list(det.stream(ds.images, config=spec))
        det.pipeline(spec).wait_compiled()
        run = det.stream(ds.images, config=spec)
        special = evaluate(ds, run)
    assert len(run.stats.shapes) >= 3
    assert special.images == square.images == 96
    assert abs(special.map50_95 - square.map50_95) <= 0.01, (special.map50_95, square.map50_95)
    assert abs(square.map50_95 - shared.reference_model(shared.fp32_model)["map50_95"]) <= 0.01


def test_letterboxed_frames_in_memory(tput, frames):
    """Pre-letterboxed 640x640 frames go straight in (the benchmark's input)."""
    boxed = [letterbox(f, (640, 640))[0] for f in frames]
    run = tput.stream(boxed, config=OFF)
    results = list(run)
    assert run.stats.shapes == {"640x640": len(boxed)}
    assert all(r.image_shape == (640, 640) for r in results)
