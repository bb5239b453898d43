"""Many callers on one compiled model, with the real models: threads on the latency path,
``submit()`` from many threads beside a stream, overload, cross-caller batching."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

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


async def _submit_all(det: Detector, paths: list[str]) -> list[Detections]:
    import asyncio

    return list(await asyncio.gather(*(det.submit_async(p) for p in paths)))


def test_submit_async_from_asyncio(shared, fp32_detector):
    import asyncio

    paths = [str(p) for p in shared.coco96_images[:8]]
    with Detector(shared.fp32_model, mode="throughput") as det:
        results = asyncio.run(_submit_all(det, paths))
    for path, r in zip(paths, results, strict=True):
        _same(r, fp32_detector(path))
