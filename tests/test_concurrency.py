"""Many callers on one compiled model: threads on the latency path, ``submit()`` from many threads
beside a stream, overload, cross-caller batching, asyncio, and validation running beside callers.

Each behaviour runs on the fake detector (tests/fakes.py) in the fast tier; the model tests keep what
needs the real runtime (outputs copied out of a real request before it is reused, results equal to the
latency path on real images, memory that stays flat under overload, a real batch of 4).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from tests.fakes import expected_for, fake_detector, uniform_image
from yolo_ov import Detections, Detector, OverloadedError, PipelineConfig, RuntimeConfig

pytestmark = pytest.mark.timeout(600)


def _same(a: Detections, b: Detections) -> None:
    np.testing.assert_array_equal(a.class_id, b.class_id)
    np.testing.assert_allclose(a.xyxy, b.xyxy, rtol=0, atol=1e-3)
    np.testing.assert_allclose(a.confidence, b.confidence, rtol=0, atol=1e-4)


class _BusyCore:
    """Keeps one Python thread spinning (the GIL and a core busy) while the test runs."""

    def __enter__(self) -> _BusyCore:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        return self

    def _spin(self) -> None:
        x = 0
        while not self._stop.is_set():
            x = (x * 31 + 7) % 1_000_003

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def arrays(shared) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in shared.coco96_images[:24]]


def test_latency_detector_shared_by_threads_gives_each_image_its_own_result(fp32_detector, arrays):
    """Issue 8.1: 6 threads (more than cores) x 40 calls with a busy core; every result is the
    single-threaded result for its image (outputs are copied before the request is reused)."""
    expected = [fp32_detector(a) for a in arrays]

    def worker(k: int) -> list[tuple[int, Detections]]:
        out = []
        for i in range(40):
            idx = (k * 7 + i) % len(arrays)
            out.append((idx, fp32_detector(arrays[idx])))
        return out

    with _BusyCore(), ThreadPoolExecutor(6) as pool:
        batches = list(pool.map(worker, range(6)))
    for results in batches:
        for idx, result in results:
            _same(result, expected[idx])


@pytest.mark.parametrize("model_attr", ["fp32_model", "int8_model"])
def test_eight_submitters_and_a_stream_at_once(shared, model_attr):
    """8 threads x 100 submits + a stream on the same Detector: every submit gets the latency
    path's detections for its image; the stream gets all of its results, in order."""
    model = getattr(shared, model_attr)
    images = shared.coco96_images
    with Detector(model, mode="latency") as lat:
        expected = {str(p): lat(p) for p in images}
    with Detector(model, mode="throughput", pipeline=PipelineConfig(max_queue=1000)) as det:
        stream_results: list[Detections] = []

        def stream() -> None:
            stream_results.extend(det.stream([str(p) for p in images[:40]]))

        def caller(k: int) -> list[tuple[str, Detections]]:
            out = []
            for i in range(100):
                path = str(images[(k * 13 + i) % len(images)])
                out.append((path, det.submit(path).result(timeout=120)))
            return out

        streamer = threading.Thread(target=stream)
        streamer.start()
        with ThreadPoolExecutor(8) as pool:
            per_caller = list(pool.map(caller, range(8)))
        streamer.join(timeout=300)
        assert not streamer.is_alive()
        stats = det.pipeline().submitter.stats
    for results in per_caller:
        for path, result in results:
            assert result.source == path
            _same(result, expected[path])
    assert [r.source for r in stream_results] == [str(p) for p in images[:40]]
    for r in stream_results:
        _same(r, expected[r.source])
    assert stats.completed == 800 and stats.failed == 0


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="utf-8") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_overload_fails_fast_completes_the_accepted_and_keeps_memory_flat(shared, arrays):
    with Detector(shared.int8_model, mode="throughput", pipeline=PipelineConfig(max_queue=4)) as det:
        det.submit(arrays[0]).result(timeout=60)  # warm: pools and queues exist
        rss = []
        for _round in range(5):
            accepted, rejected = [], 0
            barrier = threading.Barrier(64)
            lock = threading.Lock()

            def caller(k: int, barrier=barrier, lock=lock, accepted=accepted) -> None:
                nonlocal rejected
                barrier.wait()
                t0 = time.perf_counter()
                try:
                    future = det.submit(arrays[k % len(arrays)])
                except OverloadedError:
                    assert time.perf_counter() - t0 < 1.0, "a refusal waited"
                    with lock:
                        rejected += 1
                    return
                with lock:
                    accepted.append((k, future))

            threads = [threading.Thread(target=caller, args=(k,)) for k in range(64)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert rejected > 0 and len(accepted) + rejected == 64
            for k, future in accepted:
                assert isinstance(future.result(timeout=120), Detections), k
            rss.append(_rss_mb())
        stats = det.pipeline().submitter.stats
    assert stats.waiting == 0 and stats.in_flight == 0
    assert stats.rejected >= 5
    assert max(rss[1:]) - rss[1] < 50, rss  # flat after the first round (MB)


def test_batch_four_groups_concurrent_callers_and_matches_batch_one(shared, fp32_detector):
    images = shared.coco96_images[:32]
    expected = {str(p): fp32_detector(p) for p in images}
    runtime = RuntimeConfig(mode="throughput", batch=4)
    with Detector(shared.fp32_model, runtime=runtime, pipeline=PipelineConfig(max_wait_ms=20)) as det:
        barrier = threading.Barrier(4)

        def caller(k: int) -> list[Detections]:
            barrier.wait()
            return [det.submit(str(p)).result(timeout=120) for p in images[k::4]]

        with ThreadPoolExecutor(4) as pool:
            results = [r for rs in pool.map(caller, range(4)) for r in rs]
        stats = det.pipeline().submitter.stats
    assert len(results) == 32
    for r in results:
        _same(r, expected[r.source])
    grouped = sum(n for size, n in stats.batch_sizes.items() if size > 1)
    assert stats.requests < 32 and grouped > 0, stats.batch_sizes



def test_validation_beside_latency_callers_on_the_real_model(shared, fp32_detector, arrays):
    """Issue 20: validation (Ultralytics protocol, its own head) runs on the Detector that 8 threads are
    calling; every caller still gets the single-threaded result (no validation extras, same boxes)."""
    import dataclasses

    from yolo_ov.eval.dataset import load_dataset
    from yolo_ov.eval.validate import validate

    ds = load_dataset(shared.coco96 / "data.yaml")
    ds = dataclasses.replace(ds, items=ds.items[:8])
    expected = [fp32_detector(a) for a in arrays[:8]]
    stop = threading.Event()

    def caller(k: int) -> list[tuple[int, Detections]]:
        out = []
        while not stop.is_set() or len(out) < 4:
            idx = (k + len(out)) % 8
            out.append((idx, fp32_detector(arrays[idx])))
        return out

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(caller, k) for k in range(8)]
        try:
            result = validate(fp32_detector, ds, protocol="ultralytics")
        finally:
            stop.set()
        per_caller = [f.result() for f in futures]
    assert result.images == 8
    for results in per_caller:
        for idx, r in results:
            _same(r, expected[idx])
            assert set(r.data) == set(expected[idx].data)


# -- the same behaviour on the fake detector (fast tier) ---------------------------------------------------

def _fake_value(result: Detections) -> int:
    return round((float(result.confidence[0]) - 0.5) * 1024)


@pytest.mark.parametrize("threads", [2, 8])
def test_fake_latency_detector_shared_by_threads(threads):
    images = [uniform_image(v) for v in range(0, 240, 10)]
    with fake_detector(delay_s=0.0005) as det:
        expected = [det(a) for a in images]

        def worker(k: int) -> list[tuple[int, Detections]]:
            return [(idx, det(images[idx])) for idx in ((k * 7 + i) % len(images) for i in range(30))]

        with _BusyCore(), ThreadPoolExecutor(threads) as pool:
            batches = list(pool.map(worker, range(threads)))
    for results in batches:
        for idx, result in results:
            _same(result, expected[idx])


@pytest.mark.parametrize("batch", [1, 2])
def test_fake_eight_submitters_and_a_stream_at_once(batch):
    images = [uniform_image(v) for v in range(0, 250, 5)]
    with fake_detector() as lat:
        expected = [lat(a) for a in images]
    with fake_detector(batch=batch, mode="throughput", delay_s=0.0005,
                       pipeline=PipelineConfig(max_queue=1000)) as det:
        stream_results: list[Detections] = []

        def stream() -> None:
            stream_results.extend(det.stream(images[:40]))

        def caller(k: int) -> list[tuple[int, Detections]]:
            out = []
            for i in range(25):
                idx = (k * 13 + i) % len(images)
                out.append((idx, det.submit(images[idx], source=f"{k}-{i}").result(timeout=30)))
            return out

        streamer = threading.Thread(target=stream)
        streamer.start()
        with ThreadPoolExecutor(8) as pool:
            per_caller = list(pool.map(caller, range(8)))
        streamer.join(timeout=30)
        assert not streamer.is_alive()
        stats = det.pipeline().submitter.stats
    for results in per_caller:
        for idx, result in results:
            _same(result, expected[idx])
    assert [_fake_value(r) for r in stream_results] == list(range(0, 200, 5))
    assert stats.completed == 200 and stats.failed == 0 and stats.waiting == 0 and stats.in_flight == 0


@pytest.mark.parametrize("max_queue", [1, 4])
def test_fake_overload_fails_fast_and_completes_the_accepted(max_queue):
    release = threading.Event()
    from tests.fakes import scene_outputs
    from yolo_ov.runtime.engine import FakeEngine

    engine = FakeEngine(lambda b: (release.wait(5), scene_outputs(b))[1], input_hw=(64, 64))
    with fake_detector(engine=engine, mode="throughput",
                       pipeline=PipelineConfig(max_queue=max_queue, num_requests=2)) as det:
        for _round in range(3):
            release.clear()
            accepted, rejected = [], 0
            barrier = threading.Barrier(32)
            lock = threading.Lock()

            def caller(k: int, barrier=barrier, lock=lock, accepted=accepted) -> None:
                nonlocal rejected
                barrier.wait()
                t0 = time.perf_counter()
                try:
                    future = det.submit(uniform_image(k))
                except OverloadedError:
                    assert time.perf_counter() - t0 < 1.0, "a refusal waited"
                    with lock:
                        rejected += 1
                    return
                with lock:
                    accepted.append((k, future))

            threads = [threading.Thread(target=caller, args=(k,)) for k in range(32)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            release.set()
            assert rejected > 0 and len(accepted) + rejected == 32
            assert len(accepted) <= max_queue + 2  # the queue plus the requests already started
            for k, future in accepted:
                assert _fake_value(future.result(timeout=10)) == k
        stats = det.pipeline().submitter.stats
    assert stats.waiting == 0 and stats.in_flight == 0 and stats.rejected >= 3


@pytest.mark.parametrize("batch", [2, 4])
def test_fake_batch_groups_concurrent_callers(batch):
    images = [uniform_image(v) for v in range(32)]
    with fake_detector(batch=batch, mode="throughput", delay_s=0.005, pipeline=PipelineConfig(max_wait_ms=20)) as det:
        barrier = threading.Barrier(4)

        def caller(k: int) -> list[Detections]:
            barrier.wait()
            return [det.submit(images[i], source=str(i)).result(timeout=10) for i in range(k, 32, 4)]

        with ThreadPoolExecutor(4) as pool:
            results = [r for rs in pool.map(caller, range(4)) for r in rs]
        stats = det.pipeline().submitter.stats
    assert sorted(int(r.source) for r in results) == list(range(32))
    assert all(_fake_value(r) == int(r.source) for r in results)
    grouped = sum(n for size, n in stats.batch_sizes.items() if size > 1)
    assert stats.requests < 32 and grouped > 0, stats.batch_sizes
    assert sum(size * n for size, n in stats.batch_sizes.items()) == 32


async def _submit_all(det: Detector, images: list[np.ndarray]) -> list[Detections]:
    import asyncio

    return list(await asyncio.gather(*(det.submit_async(a) for a in images)))


def test_fake_submit_async_from_asyncio():
    import asyncio

    images = [uniform_image(v) for v in (3, 50, 99, 180)]
    with fake_detector(mode="throughput") as det:
        results = asyncio.run(_submit_all(det, images))
    assert [_fake_value(r) for r in results] == [3, 50, 99, 180]


def _tiny_dataset(root, n: int = 24):
    import cv2

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(n):
        v = (11 * k + 10) % 250
        cv2.imwrite(str(root / "images" / f"i{k:02d}.png"), uniform_image(v))
        side = (8 + v / 8) / 64
        c = 4 / 64 + side / 2
        (root / "labels" / f"i{k:02d}.txt").write_text(f"{v % 4} {c:.5f} {c:.5f} {side:.5f} {side:.5f}\n",
                                                         encoding="utf-8")
    (root / "data.yaml").write_text("val: images\ntrain: images\nnames: [person, car, dog, cat]\n",
                                    encoding="utf-8")
    return root


@pytest.mark.parametrize("protocol", ["ultralytics", "coco"])
def test_fake_validation_beside_eight_latency_callers(tmp_path, protocol):
    """Issue 20: validation used to swap the Detector's head for its own while it ran, so a concurrent
    det(image) decoded with validation's head. Now it passes its own head to each call: 8 threads calling
    det(image) while validations run get exactly the single-threaded results."""
    from yolo_ov.eval.validate import validate

    data = _tiny_dataset(tmp_path / "ds")
    images = [uniform_image(v) for v in range(0, 250, 7)]
    with fake_detector(delay_s=0.0005) as det:
        head = det.head
        expected = [det(a) for a in images]
        stop = threading.Event()

        def caller(k: int) -> list[tuple[int, Detections]]:
            out: list[tuple[int, Detections]] = []
            while not stop.is_set() or len(out) < 4:
                idx = (k * 5 + len(out)) % len(images)
                out.append((idx, det(images[idx])))
            return out

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(caller, k) for k in range(8)]
            try:
                scores = [validate(det, data, protocol=protocol) for _ in range(3)]
            finally:
                stop.set()
            per_caller = [f.result(timeout=30) for f in futures]
        assert det.head is head
    assert all(s.images == 24 and s.map50 > 0.9 for s in scores)
    calls = 0
    for results in per_caller:
        for idx, r in results:
            _same(r, expected[idx])
            assert set(r.data) == set(expected[idx].data) == set()
            cls, _score = expected_for(_fake_value(expected[idx]))
            assert r.class_id.tolist() == [cls]
            calls += 1
    assert calls >= 32
