"""Measurements: model only (like ``benchmark_app``) and end to end (like a user).

Model only feeds pre-made ``uint8`` NHWC frames straight to the compiled
model: in latency mode one synchronous request in a loop, in throughput mode
an ``AsyncInferQueue`` with the compiled model's optimal number of requests,
latency taken per request from submit to its completion callback (as
``benchmark_app`` does). End to end adds what a user pays: decoding (for file
sources), letterbox, post-processing, through :class:`~yolo_ov.Detector`
(latency) or its throughput pipeline. Warm-up iterations are excluded and
counted separately.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openvino as ov

from ..config import Mode
from ..detector import Detector
from ..pipeline import PipelineConfig, Specialize
from ..results import Detections
from .stats import LatencyStats

__all__ = ["Measurement", "measure_end_to_end", "measure_model_only", "synthetic_frames"]

WARMUP_ITERATIONS = 5
_MAX_SPECIALISED_WARMUP = 256


@dataclass(frozen=True)
class Measurement:
    """One timed run."""

    kind: str  # "model_only" | "end_to_end"
    mode: str
    requests: int
    iterations: int
    duration_s: float
    fps: float
    latency: LatencyStats
    warmup_iterations: int = WARMUP_ITERATIONS
    extra: dict[str, Any] = field(default_factory=dict)
    #: raw per-request milliseconds, for plots (not written to JSON)
    samples_ms: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "mode": self.mode,
            "requests": self.requests,
            "iterations": self.iterations,
            "duration_s": round(self.duration_s, 3),
            "fps": round(self.fps, 2),
            "latency": self.latency.to_dict(),
            "noisy": self.latency.noisy,
            "warmup_iterations": self.warmup_iterations,
            **self.extra,
        }


def synthetic_frames(hw: tuple[int, int], count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Random BGR ``uint8`` images of ``(h, w)``: input data that costs nothing to make."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(count)]


def measure_model_only(
    detector: Detector,
    duration_s: float,
    *,
    requests: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> Measurement:
    """Time the compiled model alone on pre-made letterboxed ``uint8`` frames."""
    engine = detector.engine
    frame = synthetic_frames(engine.input_hw, 1)[0]
    batch = np.ascontiguousarray(np.broadcast_to(frame, (engine.batch, *frame.shape)))
    mode = detector.runtime_config.mode
    if mode is Mode.LATENCY and requests in (None, 1):
        return _sync_loop(engine, batch, duration_s, progress)
    nreq = requests or engine.config.num_requests or engine.info.optimal_requests
    return _async_loop(engine.compiled, batch, nreq, mode.value, duration_s, progress)


def _sync_loop(engine: Any, batch: np.ndarray, duration_s: float,
               progress: Callable[[float], None] | None) -> Measurement:
    for _ in range(WARMUP_ITERATIONS):
        engine.infer(batch)
    samples: list[float] = []
    start = time.perf_counter()
    end = start + duration_s
    now = start
    while now < end:
        t0 = time.perf_counter()
        engine.infer(batch)
        now = time.perf_counter()
        samples.append((now - t0) * 1e3)
        if progress:
            progress(min(1.0, (now - start) / duration_s))
    elapsed = now - start
    images = len(samples) * batch.shape[0]
    return Measurement("model_only", Mode.LATENCY.value, 1, len(samples), elapsed, images / elapsed,
                       LatencyStats.from_samples(samples), samples_ms=tuple(samples))


def _async_loop(compiled: ov.CompiledModel, batch: np.ndarray, nreq: int, mode: str, duration_s: float,
                progress: Callable[[float], None] | None) -> Measurement:
    queue = ov.AsyncInferQueue(compiled, nreq)
    samples: list[float] = []
    lock = threading.Lock()

    def done(_request: ov.InferRequest, submitted: float) -> None:
        finished = time.perf_counter()
        with lock:
            samples.append((finished - submitted) * 1e3)

    queue.set_callback(done)
    for _ in range(WARMUP_ITERATIONS * nreq):
        queue.start_async({0: batch}, userdata=time.perf_counter(), share_inputs=True)
    queue.wait_all()
    samples.clear()
    start = time.perf_counter()
    end = start + duration_s
    now = start
    while now < end:
        # Wait for a free request first, then stamp: a request's latency runs
        # from its start to its completion, not from when it was queued for.
        queue.get_idle_request_id()
        queue.start_async({0: batch}, userdata=time.perf_counter(), share_inputs=True)
        now = time.perf_counter()
        if progress:
            progress(min(1.0, (now - start) / duration_s))
    queue.wait_all()
    elapsed = time.perf_counter() - start
    images = len(samples) * batch.shape[0]
    return Measurement("model_only", mode, nreq, len(samples), elapsed, images / elapsed,
                       LatencyStats.from_samples(samples), samples_ms=tuple(samples))


def measure_end_to_end(
    detector: Detector,
    inputs: list[Any],
    duration_s: float,
    *,
    specialize: bool = False,
    pipeline: PipelineConfig | None = None,
    progress: Callable[[float], None] | None = None,
) -> Measurement:
    """Time decode (for paths) + letterbox + inference + post-processing over ``inputs``, cycled.

    Latency mode calls the Detector one image at a time (per-call latency);
    throughput modes stream the inputs through the pipeline (per-image
    latency = letterbox + request submit-to-completion + post-processing).
    By default the pipeline keeps the model's own input shape, so end to end
    differs from model only by the host's work alone; ``specialize=True``
    runs it as ``predict --specialize`` does (smaller rectangular letterboxes
    where they save compute), which can make end to end *faster* than model only.
    ``pipeline`` overrides both.
    """
    mode = detector.runtime_config.mode
    if mode is Mode.LATENCY:
        for image in inputs[:WARMUP_ITERATIONS]:
            detector(image)
        samples: list[float] = []
        stage = {"preprocess_ms": [], "inference_ms": [], "postprocess_ms": []}
        start = time.perf_counter()
        now = start
        for image in itertools.cycle(inputs):
            if now - start >= duration_s:
                break
            t0 = time.perf_counter()
            result = detector(image)
            now = time.perf_counter()
            samples.append((now - t0) * 1e3)
            _add_stages(stage, result)
            if progress:
                progress(min(1.0, (now - start) / duration_s))
        elapsed = now - start
        return Measurement("end_to_end", mode.value, 1, len(samples), elapsed, len(samples) / elapsed,
                           LatencyStats.from_samples(samples), extra=_stage_medians(stage), samples_ms=tuple(samples))
    if pipeline is None:
        pipeline = PipelineConfig(specialize=Specialize.ON if specialize else Specialize.OFF)
    # With specialisation the warm-up visits every input once and waits for the
    # shapes it asked for (compiled in the background), so the measurement
    # runs on the specialised shapes from its first image.
    warm = inputs[:_MAX_SPECIALISED_WARMUP] if pipeline.specialize is not Specialize.OFF else inputs[:WARMUP_ITERATIONS]
    for _ in detector.stream(warm, config=pipeline):
        pass
    detector.pipeline(pipeline).wait_compiled()
    stage = {"preprocess_ms": [], "inference_ms": [], "postprocess_ms": []}
    samples = []
    failures = 0
    run = detector.stream(_timed_cycle(inputs, duration_s), config=pipeline)
    start = time.perf_counter()
    with run:
        for result in run:
            if isinstance(result, Detections) and result.timing is not None:
                samples.append(result.timing.total_ms)
                _add_stages(stage, result)
            else:
                failures += 1
            if progress:
                progress(min(1.0, (time.perf_counter() - start) / duration_s))
    elapsed = time.perf_counter() - start
    requests = detector.pipeline(pipeline).num_requests
    extra = {**_stage_medians(stage), "failures": failures, "specialize": pipeline.specialize.value,
             "shapes": dict(run.stats.shapes)}
    return Measurement("end_to_end", mode.value, requests, len(samples), elapsed, len(samples) / elapsed,
                       LatencyStats.from_samples(samples), warmup_iterations=len(warm), extra=extra,
                       samples_ms=tuple(samples))


def _timed_cycle(inputs: list[Any], duration_s: float) -> Iterator[Any]:
    end = time.perf_counter() + duration_s
    for item in itertools.cycle(inputs):
        if time.perf_counter() >= end:
            return
        yield item


def _add_stages(stage: dict[str, list[float]], result: Any) -> None:
    if isinstance(result, Detections) and result.timing is not None:
        stage["preprocess_ms"].append(result.timing.preprocess_ms)
        stage["inference_ms"].append(result.timing.inference_ms)
        stage["postprocess_ms"].append(result.timing.postprocess_ms)


def _stage_medians(stage: dict[str, list[float]]) -> dict[str, float]:
    return {f"{k.removesuffix('_ms')}_median_ms": round(float(np.median(v)), 3) for k, v in stage.items() if v}
