"""Fan-out / fan-in on the fake detector: one input -> several frames in flight -> one merged result.

Every path (the latency call, a stream, submit) splits an input with
:class:`tests.fanout_support.Grid` and merges the tiles' results; the fake
engine's answer follows each tile's grey value, so every merged box says
which tile it came from.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.fakes import expected_for, fake_detector, fake_engine, uniform_image
from tests.fanout_support import Grid, tile_boxes, tiled_image, yolo_threads
from yolo_ov import Detections, Failure, InferenceError, InputError, OverloadedError
from yolo_ov.pipeline import PipelineConfig

pytestmark = pytest.mark.timeout(60)


def _values(k: int, n: int) -> list[int]:
    return [(17 * k + 5 * i + 3) % 250 for i in range(n)]


def _check(result: Detections, values: list[int], rows: int, cols: int) -> None:
    assert isinstance(result, Detections)
    assert len(result) == len(values)
    np.testing.assert_allclose(result.xyxy, tile_boxes(values, rows, cols), atol=1e-3)
    np.testing.assert_allclose(result.confidence, [expected_for(v)[1] for v in values], atol=1e-4)
    assert result.class_id.tolist() == [expected_for(v)[0] for v in values]
    assert result.image_shape == (rows * 64, cols * 64)


# -- the latency path ----------------------------------------------------------------------------

@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 2), (2, 2), (3, 3)])
def test_latency_call_merges_the_parts_into_one_result(rows, cols):
    values = _values(1, rows * cols)
    with fake_detector() as det:
        result = det(tiled_image(values, rows, cols), fanout=Grid(rows, cols), source="big.jpg")
    _check(result, values, rows, cols)
    assert result.source == "big.jpg"
    assert result.timing.inference_ms > 0


def test_latency_parts_are_in_flight_at_once():
    with fake_detector(delay_s=0.05) as det:
        t0 = time.perf_counter()
        result = det(tiled_image(_values(2, 4), 2, 2), fanout=Grid())
        elapsed = time.perf_counter() - t0
        assert det.engine.max_in_flight >= 2  # the tiles went out as concurrent requests
    assert len(result) == 4
    assert elapsed < 4 * 0.05, "the four tiles ran one after another"


def test_a_single_part_fanout_equals_the_plain_call():
    image = uniform_image(77)
    with fake_detector() as det:
        plain = det(image)
        fanned = det(image, fanout=Grid(1, 1))
    np.testing.assert_allclose(fanned.xyxy, plain.xyxy)
    np.testing.assert_allclose(fanned.confidence, plain.confidence)
    assert fanned.class_id.tolist() == plain.class_id.tolist()


def test_latency_empty_part_fails_the_call_with_input_error():
    with fake_detector() as det, pytest.raises(InputError, match="part 1 of the fan-out is an empty image"):
        det(tiled_image(_values(3, 4), 2, 2), fanout=Grid(empty=1), source="x.jpg")


def test_latency_hung_part_is_an_inference_error():
    engine = fake_engine(hang=lambda b: int(b[0, 0, 0, 0]) == 99)
    with fake_detector(engine=engine, pipeline=PipelineConfig(timeout_s=0.3)) as det:
        with pytest.raises(InferenceError, match="did not complete within"):
            det(tiled_image([10, 99, 20, 30], 2, 2), fanout=Grid())
        assert det.pipeline().keeper.broken


def test_latency_device_error_in_a_part_is_an_inference_error():
    def broken(batch):
        if int(batch[0, 0, 0, 0]) == 42:
            raise RuntimeError("device lost")
        from tests.fakes import scene_outputs
        return scene_outputs(batch)

    from yolo_ov.runtime.engine import FakeEngine
    with fake_detector(engine=FakeEngine(broken, input_hw=(64, 64))) as det, \
            pytest.raises(InferenceError, match="device lost"):
        det(tiled_image([1, 2, 42, 3], 2, 2), fanout=Grid())


# -- streams ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 2, 4])
@pytest.mark.parametrize("ordered", [True, False])
def test_stream_inputs_with_different_part_counts_keep_their_order(batch, ordered):
    shapes = [(1, 1), (2, 2), (1, 3), (2, 1), (3, 3), (1, 2)] * 3
    images, values = [], []
    for k, (r, c) in enumerate(shapes):
        values.append(_values(k, r * c))
        images.append(tiled_image(values[-1], r, c))

    class PerInput(Grid):
        """Each input has its own grid (the image's size tells which)."""

        def split(self, image, hw):
            self.rows, self.cols = hw[0] // 64, hw[1] // 64
            return Grid.split(self, image, hw)

    with fake_detector(batch=batch, delay_s=0.002) as det:
        run = det.stream(images, ordered=ordered, fanout=PerInput())
        results = list(run)
    assert len(results) == len(images)
    if ordered:
        for res, (r, c), vals in zip(results, shapes, values, strict=True):
            _check(res, vals, r, c)
    else:
        def key(res):
            return res.image_shape, tuple(round(float(c), 3) for c in res.confidence)

        expected = [((r * 64, c * 64), tuple(round(expected_for(v)[1], 3) for v in vals))
                    for (r, c), vals in zip(shapes, values, strict=True)]
        assert sorted(map(key, results)) == sorted(expected)
    assert run.stats.done == len(images) and run.stats.failed == 0
    assert sum(run.stats.shapes.values()) == sum(r * c for r, c in shapes)  # frames, not inputs
    assert yolo_threads() == []


@pytest.mark.parametrize("bound", [1, 2, 3, 5])
def test_stream_bound_smaller_than_an_inputs_parts_never_deadlocks(bound):
    images = [tiled_image(_values(k, 4), 2, 2) for k in range(12)]
    with fake_detector(delay_s=0.001, pipeline=PipelineConfig(max_pending=bound, num_requests=2)) as det:
        results = list(det.stream(images, fanout=Grid()))
    assert [len(r) for r in results] == [4] * 12
    for k, r in enumerate(results):
        _check(r, _values(k, 4), 2, 2)


def test_stream_read_ahead_counts_frames():
    read = []

    def source():
        for k in range(40):
            read.append(k)
            yield tiled_image(_values(k, 4), 2, 2)

    config = PipelineConfig(max_pending=16, num_requests=2, workers=1)  # workers=1: 2 inputs prepared ahead
    with fake_detector(delay_s=0.002, pipeline=config) as det:
        for k, _ in enumerate(det.stream(source(), fanout=Grid())):
            # 16 frames = 4 inputs of 4 parts, plus the 2 being prepared and the one being read
            # (counting inputs, 16 inputs could be read ahead)
            assert len(read) - k <= 16 // 4 + 2 + 1, (k, len(read))
    assert len(read) == 40


def test_stream_an_empty_part_fails_its_input_once():
    images = [tiled_image(_values(k, 4), 2, 2) for k in range(6)]
    grid = Grid(empty=2)
    grid_ok = Grid()

    class OnlyThird:
        def split(self, image, hw):
            return (grid if int(image[0, 0, 0]) == _values(3, 4)[0] else grid_ok).split(image, hw)

        def merge(self, results, parts, hw):
            return grid_ok.merge(results, parts, hw)

    with fake_detector() as det:
        run = det.stream(images, fanout=OnlyThird())
        results = list(run)
    assert [type(r).__name__ for r in results] == ["Detections"] * 3 + ["Failure"] + ["Detections"] * 2
    assert "part 2 of the fan-out is an empty image" in results[3].error
    assert run.stats.failed == 1 and run.stats.done == 6


def test_stream_a_split_that_raises_is_one_failure_record():
    values = [5, 6, 7, 8]
    with fake_detector() as det:
        results = list(det.stream([uniform_image(v, (128, 128)) for v in values], fanout=Grid(fail_on={7})))
    assert isinstance(results[2], Failure) and "cannot split" in results[2].error
    assert all(isinstance(r, Detections) and len(r) == 4 for k, r in enumerate(results) if k != 2)


def test_stream_with_images_gives_the_whole_image():
    images = [tiled_image(_values(k, 4), 2, 2) for k in range(3)]
    with fake_detector() as det:
        pairs = list(det.stream(images, fanout=Grid(), with_images=True))
    for (result, image), original in zip(pairs, images, strict=True):
        assert len(result) == 4
        np.testing.assert_array_equal(image, original)


def test_stream_close_mid_run_joins_every_thread():
    def endless():
        k = 0
        while True:
            yield tiled_image(_values(k, 4), 2, 2)
            k += 1

    with fake_detector(delay_s=0.001) as det:
        run = det.stream(endless(), fanout=Grid())
        for k, r in enumerate(run):
            assert len(r) == 4
            if k == 10:
                break
        run.close()
        assert run.stats.read < 1000
    assert yolo_threads() == []


def test_stream_hung_part_raises_and_joins():
    engine = fake_engine(hang=lambda b: int(b[0, 0, 0, 0]) == 99)
    with fake_detector(engine=engine, pipeline=PipelineConfig(timeout_s=0.3)) as det:
        images = [tiled_image([1, 2, 3, 4], 2, 2), tiled_image([5, 99, 6, 7], 2, 2)]
        with pytest.raises(InferenceError, match="did not complete within"):
            list(det.stream(images, fanout=Grid()))
    assert yolo_threads() == []


def test_stream_callback_form_with_fanout():
    images = [tiled_image(_values(k, 4), 2, 2) for k in range(8)]
    seen: list[Detections] = []
    lock = threading.Lock()

    def collect(result):
        with lock:
            seen.append(result)

    with fake_detector(pipeline=PipelineConfig(max_pending=3)) as det:
        stats = det.stream_callback(images, collect, fanout=Grid())
    assert stats.done == 8 and len(seen) == 8 and all(len(r) == 4 for r in seen)


# -- submit ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (2, 2), (2, 3)])
def test_submit_merges_the_parts(rows, cols):
    values = _values(9, rows * cols)
    with fake_detector(mode="throughput") as det:
        result = det.submit(tiled_image(values, rows, cols), fanout=Grid(rows, cols), source="s").result(timeout=10)
        stats = det.pipeline().submitter.stats
    _check(result, values, rows, cols)
    assert result.source == "s"
    assert stats.completed == 1 and stats.requests == rows * cols and stats.waiting == 0 and stats.in_flight == 0


def test_submit_many_callers_with_fanout():
    with fake_detector(mode="throughput", delay_s=0.001) as det:
        got: dict[int, Detections] = {}
        lock = threading.Lock()

        def caller(k: int) -> None:
            for i in range(5):
                n = 5 * k + i
                result = det.submit(tiled_image(_values(n, 4), 2, 2), fanout=Grid()).result(timeout=10)
                with lock:
                    got[n] = result

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(got) == list(range(30))
    for n, r in got.items():
        _check(r, _values(n, 4), 2, 2)


def test_submit_accepts_or_refuses_a_whole_input():
    release = threading.Event()
    from tests.fakes import scene_outputs
    from yolo_ov.runtime.engine import FakeEngine

    engine = FakeEngine(lambda b: (release.wait(5), scene_outputs(b))[1], input_hw=(64, 64))
    with fake_detector(engine=engine, mode="throughput",
                       pipeline=PipelineConfig(max_queue=2, num_requests=1)) as det:
        accepted, refused = [], 0
        for k in range(12):
            try:
                accepted.append((k, det.submit(tiled_image(_values(k, 4), 2, 2), fanout=Grid())))
            except OverloadedError:
                refused += 1
            time.sleep(0.01)
        stats = det.pipeline().submitter.stats
        assert refused > 0
        assert stats.waiting >= 4 - 1  # a split input's frames all count once accepted
        release.set()
        for k, future in accepted:
            _check(future.result(timeout=10), _values(k, 4), 2, 2)  # never half an input
        assert stats.accepted == len(accepted) and stats.rejected == refused


def test_submit_an_empty_part_fails_the_future_once():
    with fake_detector(mode="throughput") as det:
        bad = det.submit(tiled_image(_values(1, 4), 2, 2), fanout=Grid(empty=3))
        good = det.submit(tiled_image(_values(2, 4), 2, 2), fanout=Grid())
        with pytest.raises(InputError, match="empty image"):
            bad.result(timeout=5)
        _check(good.result(timeout=5), _values(2, 4), 2, 2)
        stats = det.pipeline().submitter.stats
    assert stats.failed == 1 and stats.completed == 1 and stats.waiting == 0


def test_submit_device_error_in_one_part_fails_the_input_once():
    from tests.fakes import scene_outputs
    from yolo_ov.runtime.engine import FakeEngine

    def flaky(batch):
        if int(batch[0, 0, 0, 0]) == 42:
            raise RuntimeError("device lost")
        return scene_outputs(batch)

    with fake_detector(engine=FakeEngine(flaky, input_hw=(64, 64)), mode="throughput") as det:
        future = det.submit(tiled_image([1, 42, 2, 3], 2, 2), fanout=Grid())
        with pytest.raises(InferenceError, match="device lost"):
            future.result(timeout=5)
        ok = det.submit(tiled_image([4, 5, 6, 7], 2, 2), fanout=Grid()).result(timeout=5)
        stats = det.pipeline().submitter.stats
    assert len(ok) == 4
    assert stats.failed == 1 and stats.completed == 1


def test_submit_hung_part_fails_the_input_and_breaks_the_pipeline():
    engine = fake_engine(hang=lambda b: int(b[0, 0, 0, 0]) == 99)
    with fake_detector(engine=engine, mode="throughput", pipeline=PipelineConfig(timeout_s=0.3)) as det:
        future = det.submit(tiled_image([1, 99, 2, 3], 2, 2), fanout=Grid())
        with pytest.raises(InferenceError, match="did not complete within"):
            future.result(timeout=10)
        with pytest.raises(InferenceError, match="hung request"):
            det.submit(uniform_image(1))
    assert yolo_threads() == []
