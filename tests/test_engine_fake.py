"""The pipeline and submit() on the fake engine: ordering, backpressure, timeouts, shutdown, batching.

No OpenVINO model is involved: these run in seconds (``pytest -m "not model"``).
The fake engine's output for each frame is its mean pixel value, and the test
head turns that into a one-box ``Detections`` whose confidence carries it, so
every result can be traced back to the frame that produced it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from yolo_ov import DetectConfig, Detections, FakeEngine, InferenceError, InputError, OverloadedError
from yolo_ov.heads import Head
from yolo_ov.imaging.letterbox import Letterbox
from yolo_ov.io.sources import FrameSource, SourceItem
from yolo_ov.pipeline import Pipeline, PipelineConfig
from yolo_ov.runtime.engine import Engine
from yolo_ov.runtime.model import HeadType, ModelInfo, TensorSpec

HW = (32, 32)


class MeanHead(Head):
    """Decodes the fake engine's per-frame mean into one box with that value as confidence."""

    task = "detect"

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        value = float(outputs[0][0]) / 255.0
        return Detections([[0, 0, 1, 1]], [value], [0], self.names, geo.original)


def _info() -> ModelInfo:
    return ModelInfo(path=Path("fake.xml"), names={0: "thing"}, names_source="test", imgsz=HW, stride=32,
                     task="detect", head=HeadType.RAW, inputs=(TensorSpec("images", "[1,3,32,32]"),),
                     outputs=(TensorSpec("output0", "[1,1]"),), batch=1)


def _frame(value: int) -> np.ndarray:
    return np.full((*HW, 3), value, np.uint8)


def _value(result: Detections) -> int:
    return round(float(result.confidence[0]) * 255)


def _pipeline(engine: Engine, **config) -> Pipeline:
    return Pipeline(engine, MeanHead(_info()), config=PipelineConfig(**config))


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("yolo-ov") and t.is_alive()]


pytestmark = pytest.mark.timeout(60)


def test_stream_results_come_in_input_order_with_a_slow_random_device():
    rng = np.random.default_rng(1)
    delays = iter(rng.uniform(0, 0.01, 1000))
    engine = FakeEngine(input_hw=HW, fn=lambda b: (time.sleep(next(delays)), [b.mean(axis=(1, 2, 3))[:, None]])[1])
    engine.reserve(1)
    with _pipeline(engine, num_requests=4) as pipe:
        items = [SourceItem(_frame(i), f"f{i}", frame=i) for i in range(200)]
        results = list(pipe.stream(FrameSource(items)))
    assert [r.frame for r in results] == list(range(200))
    assert [_value(r) for r in results] == list(range(200))
    assert engine.max_in_flight <= 4
    assert _threads() == []


def test_backpressure_bounds_what_is_read_ahead():
    engine = FakeEngine(input_hw=HW, delay_s=0.002)
    read = []

    def source():
        for i in range(300):
            read.append(i)
            yield _frame(i % 250)

    with _pipeline(engine, num_requests=2, max_pending=8) as pipe:
        for k, _ in enumerate(pipe.stream(source())):
            assert len(read) - k <= 8 + 1
    assert len(read) == 300


def test_hung_request_becomes_an_inference_error_and_the_pipeline_refuses_more():
    engine = FakeEngine(input_hw=HW, hang=lambda b: int(b[0, 0, 0, 0]) == 7)
    with _pipeline(engine, num_requests=2, timeout_s=0.3) as pipe:
        with pytest.raises(InferenceError, match="did not complete within"):
            list(pipe.stream([_frame(i) for i in range(20)]))
        with pytest.raises(InferenceError, match="hung request"):
            pipe.stream([_frame(1)])
    engine.close()
    assert _threads() == []


def test_closing_mid_stream_joins_every_thread():
    engine = FakeEngine(input_hw=HW, delay_s=0.001)
    with _pipeline(engine, num_requests=3) as pipe:
        run = pipe.stream(_frame(i % 200) for i in range(10_000))
        for k, _ in enumerate(run):
            if k == 50:
                break
        run.close()
        assert run.stats.read < 10_000
    assert _threads() == []


def test_several_streams_at_once_share_the_request_slots():
    engine = FakeEngine(input_hw=HW, delay_s=0.002)
    outputs: dict[int, list[int]] = {}
    with _pipeline(engine, num_requests=3) as pipe:

        def consume(k: int) -> None:
            outputs[k] = [_value(r) for r in pipe.stream([_frame(10 * k + i) for i in range(10)] * 5)]

        threads = [threading.Thread(target=consume, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k in range(4):
        assert outputs[k] == [10 * k + i for i in range(10)] * 5
    assert engine.max_in_flight <= 3


def test_submit_many_callers_get_their_own_results():
    engine = FakeEngine(input_hw=HW, delay_s=0.001)
    with _pipeline(engine, num_requests=4) as pipe:
        got: dict[int, int] = {}
        lock = threading.Lock()

        def caller(k: int) -> None:
            for i in range(25):
                value = (k * 25 + i) % 250
                result = pipe.submit(_frame(value), source=f"c{k}-{i}").result(timeout=10)
                assert result.source == f"c{k}-{i}"
                with lock:
                    got[k * 25 + i] = _value(result)

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = pipe.submitter.stats
    assert got == {n: n % 250 for n in range(200)}
    assert stats.completed == 200 and stats.waiting == 0 and stats.in_flight == 0
    assert engine.max_in_flight <= 4


def test_submit_bad_image_fails_only_its_future():
    engine = FakeEngine(input_hw=HW)
    with _pipeline(engine) as pipe:
        bad = pipe.submit(b"not an image", source="upload.jpg")
        good = pipe.submit(_frame(9))
        with pytest.raises(InputError, match=r"upload\.jpg"):
            bad.result(timeout=5)
        assert _value(good.result(timeout=5)) == 9


def test_submit_overload_fails_fast_and_every_accepted_image_completes():
    release = threading.Event()
    engine = FakeEngine(input_hw=HW, fn=lambda b: (release.wait(5), [b.mean(axis=(1, 2, 3))[:, None]])[1])
    with _pipeline(engine, num_requests=2, max_queue=4) as pipe:
        accepted, rejected = [], 0
        barrier = threading.Barrier(64)
        lock = threading.Lock()

        def caller(k: int) -> None:
            nonlocal rejected
            barrier.wait()
            try:
                future = pipe.submit(_frame(k))
            except OverloadedError:
                with lock:
                    rejected += 1
                return
            with lock:
                accepted.append((k, future))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=caller, args=(k,)) for k in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refused_in = time.perf_counter() - t0
        release.set()
        for k, future in accepted:
            assert _value(future.result(timeout=10)) == k
    assert rejected > 0 and rejected + len(accepted) == 64
    assert len(accepted) <= 4 + 2  # the queue plus the requests already started
    assert refused_in < 5, "the refusals waited for the device"


def test_submit_groups_callers_into_batches():
    engine = FakeEngine(input_hw=HW, batch=4, delay_s=0.01)
    with _pipeline(engine, num_requests=1, max_wait_ms=50) as pipe:
        barrier = threading.Barrier(4)
        results: dict[int, int] = {}

        def caller(k: int) -> None:
            barrier.wait()
            for i in range(10):
                value = 40 * k + i
                results[value] = _value(pipe.submit(_frame(value)).result(timeout=10))

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = pipe.submitter.stats
    assert results == {v: v for v in results} and len(results) == 40
    assert stats.requests < 40, stats.batch_sizes  # grouped: fewer requests than images
    assert sum(k * n for k, n in stats.batch_sizes.items()) == 40


def test_submit_failure_of_the_device_reaches_the_futures():
    def broken(batch: np.ndarray) -> list[np.ndarray]:
        raise RuntimeError("device lost")

    engine = FakeEngine(fn=broken, input_hw=HW)
    with _pipeline(engine) as pipe, pytest.raises(InferenceError, match="device lost"):
        pipe.submit(_frame(1)).result(timeout=5)


def _slow_compiler(delay: float) -> tuple[Callable[[tuple[int, int]], FakeEngine], threading.Event]:
    compiled = threading.Event()

    def slow_compile(shape: tuple[int, int]) -> FakeEngine:
        time.sleep(delay)
        compiled.set()
        return FakeEngine(input_hw=shape)

    return slow_compile, compiled


def _video(frames: list[np.ndarray], *, live: bool) -> FrameSource:
    return FrameSource([SourceItem(f, "cam", stream=0, frame=i) for i, f in enumerate(frames)], video=True,
                       live=live)


def test_background_compilation_never_blocks_a_live_source():
    """A camera's own shape compiles in the background; its frames go to the base shape meanwhile."""
    slow_compile, compiled = _slow_compiler(0.5)
    base = FakeEngine(input_hw=(64, 64))
    pipe = Pipeline(base, MeanHead(_info()), make_engine=slow_compile,
                    config=PipelineConfig(num_requests=2))
    frames = [np.full((32, 64, 3), 5, np.uint8)] * 10  # 2:1 frames: ideal shape (32, 64)
    t0 = time.perf_counter()
    run = pipe.stream(_video(frames, live=True), drop=None)
    results = list(run)
    assert time.perf_counter() - t0 < 0.5 and not compiled.is_set()  # nothing waited for the compiler
    assert run.stats.shapes == {"64x64": 10}
    assert pipe.wait_compiled() == [(64, 64), (32, 64)]
    run = pipe.stream(_video(frames, live=True), drop=None)
    list(run)
    assert run.stats.shapes == {"32x64": 10}
    assert len(results) == 10
    pipe.close()


def test_a_file_waits_for_its_shape_so_every_run_gives_the_same_results():
    """Which frames of a file run at which shape does not depend on the compiler's speed."""
    slow_compile, compiled = _slow_compiler(0.3)
    base = FakeEngine(input_hw=(64, 64))
    frames = [np.full((32, 64, 3), 5, np.uint8)] * 10
    with Pipeline(base, MeanHead(_info()), make_engine=slow_compile,
                  config=PipelineConfig(num_requests=2)) as pipe:
        run = pipe.stream(_video(frames, live=False))
        results = list(run)
        assert compiled.is_set() and run.stats.shapes == {"32x64": 10} and len(results) == 10


def test_a_file_whose_shape_fails_to_compile_runs_at_the_base_shape(caplog):
    def broken(shape: tuple[int, int]) -> FakeEngine:
        raise RuntimeError("no memory for this shape")

    base = FakeEngine(input_hw=(64, 64))
    frames = [np.full((32, 64, 3), 5, np.uint8)] * 6
    with Pipeline(base, MeanHead(_info()), make_engine=broken, config=PipelineConfig(num_requests=2)) as pipe:
        run = pipe.stream(_video(frames, live=False))
        assert len(list(run)) == 6 and run.stats.shapes == {"64x64": 6}
    assert "could not compile input shape (32, 64)" in caplog.text


def test_the_base_shape_is_never_compiled_twice():
    made: list[tuple[int, int]] = []

    def compile_shape(shape: tuple[int, int]) -> FakeEngine:
        made.append(shape)
        return FakeEngine(input_hw=shape)

    base = FakeEngine(input_hw=(64, 64))
    with Pipeline(base, MeanHead(_info()), make_engine=compile_shape,
                  config=PipelineConfig(specialize="on")) as pipe:
        square = [np.full((64, 64, 3), 1, np.uint8)] * 4
        list(pipe.stream(square))
        pipe.wait_compiled()
        assert pipe.compiled_shapes == [(64, 64)]
    assert made == []


def test_closed_pipeline_and_engine_say_so():
    engine = FakeEngine(input_hw=HW)
    pipe = _pipeline(engine)
    pipe.close()
    with pytest.raises(Exception, match="closed"):
        pipe.stream([_frame(1)])
    engine.close()
    with pytest.raises(InferenceError, match="closed"):
        engine.infer(np.zeros((1, *HW, 3), np.uint8))


def test_a_live_source_takes_a_frame_only_when_a_request_is_free():
    """Newest-frame cameras: no frame waits behind another one on the device.

    A folder keeps twice OpenVINO's optimal number of requests in flight (the
    host decodes while the device runs); a ``latest`` camera source keeps the
    optimal number (one for the fake engine), so each frame it infers is
    taken when a request is free: at most a request's time old, not two.
    """
    from yolo_ov.io.sources import open_source

    stop = threading.Event()

    def camera():  # a frame every 2 ms, forever; the frame value is its number (mod 250)
        i = 0
        while not stop.is_set():
            yield _frame(i % 250)
            i += 1
            time.sleep(0.002)

    engine = FakeEngine(input_hw=HW, delay_s=0.03)
    pipe = _pipeline(engine)
    assert pipe.num_requests == 2
    source = open_source(camera(), live=True)
    assert source.latest
    with pipe.stream(source) as run:
        for k, _ in enumerate(run):
            if k == 30:
                stop.set()
                break
    assert engine.max_in_flight == 1

    folder = FakeEngine(input_hw=HW, delay_s=0.03)
    with _pipeline(folder).stream([_frame(i) for i in range(12)]) as run:
        assert len(list(run)) == 12
    assert folder.max_in_flight == 2
    pipe.close()


@pytest.mark.parametrize(("hw", "expected"), [((480, 640), 1), ((2000, 2100), 2)])
def test_automatic_workers_decode_large_images_two_at_a_time(monkeypatch, hw, expected):
    """One decode at a time for camera-sized images (a second worker only competes with the device);
    two once a run meets an image of LARGE_IMAGE_PIXELS or more (a 4K JPEG's decode outlasts its
    inference)."""
    import yolo_ov.pipeline.steps as run_module

    active, most = [0], [0]
    lock = threading.Lock()
    real = run_module.load_image_for

    def slow_decode(*args, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.02)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(run_module, "load_image_for", slow_decode)
    image = np.zeros((*hw, 3), np.uint8)
    with _pipeline(FakeEngine(input_hw=HW)) as pipe:
        assert len(list(pipe.stream([image] * 12))) == 12
    assert most[0] == expected
    with _pipeline(FakeEngine(input_hw=HW), workers=1) as pipe:  # an explicit count is kept
        most[0] = 0
        assert len(list(pipe.stream([image] * 6))) == 6
    assert most[0] == 1
