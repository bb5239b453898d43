"""The throughput pipeline: same results as the latency path, order, bounds, errors, drop, shutdown, timeout.

The behaviour (order, bounds, error records, shutdown, callbacks, the drop
policy, batching) runs on the fake detector (tests/fakes.py) in the fast tier;
the model tests keep what needs the real model: results equal to the latency
path, shape specialisation, a real request timing out, mAP.
"""

from __future__ import annotations

import itertools
import threading

import cv2
import numpy as np
import pytest

from tests.fakes import fake_detector, fake_engine, uniform_image
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
















def test_hung_request_raises_inference_error(shared, frames):
    """A request slower than the timeout is treated as hung: a clear error, not a block."""
    with Detector(shared.fp32_model, mode="throughput", warmup=False) as det:
        with pytest.raises(InferenceError, match="did not complete within"):
            list(det.stream(frames * 4, config=PipelineConfig(timeout_s=1e-4)))
        assert _pipeline_threads() == []
        with pytest.raises(InferenceError, match="hung request"):
            det.stream(frames, config=PipelineConfig(timeout_s=1e-4))




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


def test_a_video_gives_the_same_results_on_every_run(shared, video_16x9):
    """A fresh pipeline waits for the video's own shape instead of running its first frames square while it
    compiles (which frames those were depended on the compiler's speed): two fresh runs, the same results."""
    spec = PipelineConfig(specialize="on")
    runs = []
    for _ in range(2):
        with Detector(shared.fp32_model, mode="throughput") as det:
            run = det.stream(str(video_16x9), config=spec)
            runs.append(list(run))
            assert run.stats.shapes == {"384x640": 12}
    for a, b in zip(*runs, strict=True):
        _same(a, b)


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



# -- the same behaviour on the fake detector (fast tier) ------------------------------------------------

def _fake_value(result: Detections) -> int:
    """The grey value of the image the fake detector answered (its confidence is 0.5 + value/1024)."""
    return round((float(result.confidence[0]) - 0.5) * 1024)


def _greys(n: int, hw: tuple[int, int] = (64, 64)) -> list[np.ndarray]:
    return [uniform_image(i % 250, hw) for i in range(n)]


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_fake_ordered_and_unordered(batch):
    items = [SourceItem(f, f"img{i}", frame=i) for i, f in enumerate(_greys(30))]
    with fake_detector(batch=batch, delay_s=0.002, mode="throughput") as det:
        ordered = list(det.stream(FrameSource(items)))
        unordered = list(det.stream(FrameSource(items), ordered=False))
    assert [r.frame for r in ordered] == list(range(30))
    assert [_fake_value(r) for r in ordered] == list(range(30))
    assert sorted(r.frame for r in unordered) == list(range(30))
    assert all(_fake_value(r) == r.frame for r in unordered)


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_fake_stream_equals_the_latency_call(batch):
    images = [uniform_image(v, (48, 80)) for v in (3, 60, 130, 201, 250)]
    with fake_detector() as lat:
        expected = [lat(image) for image in images]
    with fake_detector(batch=batch, mode="throughput") as det:
        results = list(det.stream(images, config=OFF))
    for r, e in zip(results, expected, strict=True):
        _same(r, e)


def test_fake_every_input_yields_one_result_or_one_error_record(tmp_path):
    good = []
    for k in range(3):
        path = tmp_path / f"good{k}.png"
        cv2.imwrite(str(path), uniform_image(20 * (k + 1)))
        good.append(path)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8not a jpeg")
    missing = tmp_path / "missing.jpg"
    (tmp_path / "empty").mkdir()
    sources = [good[0], bad, good[1], missing, str(tmp_path / "empty" / "*.png"), good[2]]
    with fake_detector(mode="throughput") as det:
        run = det.stream([str(s) for s in sources])
        results = list(run)
        assert [type(r).__name__ for r in results] == ["Detections", "Failure", "Detections", "Failure", "Failure",
                                                         "Detections"]
        assert results[1].source == str(bad) and "truncated JPEG" in results[1].error
        assert "no such file" in results[3].error
        assert "matched no image" in results[4].error
        assert [_fake_value(results[k]) for k in (0, 2, 5)] == [20, 40, 60]
        assert run.stats.done == 6 and run.stats.failed == 3
        arrays = [np.zeros((0, 5, 3), np.uint8), np.ones((50, 60, 3), np.uint8)]
        results = list(det.stream(iter(arrays)))
    assert isinstance(results[0], Failure) and "empty image" in results[0].error
    assert isinstance(results[1], Detections)


@pytest.mark.parametrize("batch", [1, 4])
def test_fake_soak_thousands_of_inferences_complete_in_order(batch):
    n = 3000
    pool = _greys(16)
    items = (SourceItem(pool[i % 16], f"f{i}", frame=i) for i in range(n))
    with fake_detector(batch=batch, mode="throughput") as det:
        run = det.stream(FrameSource(items), config=PipelineConfig(max_pending=24))
        count = max_held = 0
        for expected, r in enumerate(run):
            assert isinstance(r, Detections) and r.frame == expected and _fake_value(r) == expected % 16
            max_held = max(max_held, run.stats.read - expected)
            count += 1
        assert count == n and run.stats.done == n
        assert run.stats.requests >= n // batch
        assert max_held <= 24 + 1
    assert _pipeline_threads() == []


@pytest.mark.parametrize("bound", [1, 6, 16])
def test_fake_endless_source_is_bounded_and_closes(bound):
    pulled = itertools.count()

    def endless():
        for i in itertools.count():
            next(pulled)
            yield uniform_image(i % 250)

    with fake_detector(delay_s=0.001, mode="throughput") as det:
        run = det.stream(endless(), config=PipelineConfig(max_pending=bound))
        for k, _ in enumerate(run, start=1):
            if k == 30:
                break
        read = next(pulled)
        assert read <= 30 + bound + 1, f"source read {read} frames ahead of 30 results"
        assert _pipeline_threads() == []
        assert len(list(det.stream(_greys(3), config=PipelineConfig(max_pending=bound)))) == 3  # reusable


@pytest.mark.parametrize("ordered", [True, False])
def test_fake_ctrl_c_in_the_loop_drains_and_joins(ordered):
    with fake_detector(delay_s=0.005, mode="throughput") as det:
        with pytest.raises(KeyboardInterrupt):  # noqa: PT012
            for k, _ in enumerate(det.stream(_greys(60), ordered=ordered), start=1):
                if k == 5:
                    raise KeyboardInterrupt
        assert _pipeline_threads() == []
        assert det.engine._in_flight == 0, "requests still in flight after close"
        assert len(list(det.stream(_greys(2)))) == 2


def test_fake_source_that_raises_is_reraised_for_the_caller():
    def broken():
        yield uniform_image(1)
        raise RuntimeError("camera unplugged")

    with fake_detector(mode="throughput") as det, pytest.raises(RuntimeError, match="camera unplugged"):
        list(det.stream(broken()))
    assert _pipeline_threads() == []


def test_fake_callback_form_and_its_errors():
    seen: list[Detections] = []
    lock = threading.Lock()

    def collect(result):
        with lock:
            seen.append(result)

    with fake_detector(mode="throughput") as det:
        stats = det.stream_callback(_greys(24), collect)
        assert len(seen) == 24 == stats.done
        assert sorted(_fake_value(r) for r in seen) == list(range(24))

        def explode(result):
            raise ValueError("sink full")

        with pytest.raises(ValueError, match="sink full"):
            det.stream_callback(_greys(12), explode)
    assert _pipeline_threads() == []


@pytest.mark.parametrize("ordered", [True, False])
def test_fake_hung_request_raises_inference_error_and_refuses_more(ordered):
    engine = fake_engine(hang=lambda b: int(b[0, 0, 0, 0]) == 7)
    with fake_detector(engine=engine, mode="throughput", pipeline=PipelineConfig(timeout_s=0.3)) as det:
        with pytest.raises(InferenceError, match="did not complete within"):
            list(det.stream(_greys(20), ordered=ordered))
        assert _pipeline_threads() == []
        with pytest.raises(InferenceError, match="hung request"):
            det.stream(_greys(2))


def test_fake_latest_policy_drops_frames_for_a_slow_device():
    total = 200

    def fast_camera():
        for i in range(total):
            yield uniform_image(i % 250, (48, 64))

    with fake_detector(delay_s=0.01, mode="throughput") as det:
        source = open_source(fast_camera(), live=True)
        results = list(det.stream(source))
    assert all(isinstance(r, Detections) and r.stream == 0 for r in results)
    indices = [r.frame for r in results]
    assert indices == sorted(set(indices)), "frames out of order or repeated"
    assert source.total_skipped > 0
    assert len(results) + source.total_skipped == total


@pytest.mark.parametrize(("batch", "n", "requests"), [(2, 5, 3), (4, 5, 2), (4, 8, 2), (2, 1, 1)])
def test_fake_batching_splits_results_back_per_image(batch, n, requests):
    images = [uniform_image(10 * (k + 1)) for k in range(n)]
    with fake_detector(batch=batch, mode="throughput") as det:
        run = det.stream(images, config=OFF)
        results = list(run)
        assert run.stats.requests == requests
    assert [_fake_value(r) for r in results] == [10 * (k + 1) for k in range(n)]


def test_fake_letterboxed_frames_in_memory():
    boxed = [letterbox(uniform_image(v, (30, 64)), (64, 64))[0] for v in (5, 9, 13)]
    with fake_detector(mode="throughput") as det:
        run = det.stream(boxed, config=OFF)
        results = list(run)
    assert run.stats.shapes == {"64x64": 3}
    assert all(r.image_shape == (64, 64) for r in results)


def test_fake_several_live_streams_share_one_model(tmp_path):
    paths = []
    for k, value in enumerate((40, 200)):
        path = tmp_path / f"s{k}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
        for _ in range(8):
            writer.write(uniform_image(value))
        writer.release()
        paths.append(path)
    with fake_detector(mode="throughput") as det:
        results = list(det.stream(open_source([str(p) for p in paths], live=True, drop=None)))
    for stream, (path, value) in enumerate(zip(paths, (40, 200), strict=True)):
        mine = [r for r in results if r.stream == stream]
        assert [r.frame for r in mine] == list(range(8))
        assert {r.source for r in mine} == {str(path)}
        assert all(abs(_fake_value(r) - value) <= 3 for r in mine)  # each stream's own frames (MJPG: +-3)


def test_fake_several_runs_at_once_share_the_request_slots():
    outputs: dict[int, list[int]] = {}
    with fake_detector(delay_s=0.002, mode="throughput", pipeline=PipelineConfig(num_requests=3)) as det:
        def consume(k: int) -> None:
            outputs[k] = [_fake_value(r) for r in det.stream([uniform_image(10 * k + i) for i in range(10)] * 3)]

        threads = [threading.Thread(target=consume, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert det.engine.max_in_flight <= 3
    for k in range(4):
        assert outputs[k] == [10 * k + i for i in range(10)] * 3
