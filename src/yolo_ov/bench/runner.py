"""``run_bench``: every figure of ``yolo-ov bench`` for one model, in one report."""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import Mode, RuntimeConfig
from ..detector import Detector
from ..errors import ConfigError, InputError
from ..imaging.decode import IMAGE_SUFFIXES
from ..io.sources import iter_image_files
from .measure import WARMUP_ITERATIONS, Measurement, measure_end_to_end, measure_model_only, synthetic_frames
from .startup import StartTimes, measure_startup

__all__ = ["SCHEMA_VERSION", "BenchReport", "ModeResult", "machine_facts", "run_bench"]

#: Bumped when a field of the JSON report changes meaning or goes away.
SCHEMA_VERSION = 1
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"})
_MAX_VIDEO_FRAMES = 240


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, threads in this process, versions."""
    import openvino as ov

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        os_threads = len(os.listdir("/proc/self/task"))
    except OSError:
        os_threads = None
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this platform
        load = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python_threads": threading.active_count(),
        "process_threads": os_threads,
        "load_average": load,
        "openvino": ov.get_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class ModeResult:
    """All figures of one performance hint."""

    mode: str
    compiled: dict[str, Any]
    load: dict[str, float]
    model_only: Measurement
    end_to_end: Measurement

    @property
    def host_overhead_ratio(self) -> float:
        """Model-only FPS / end-to-end FPS: 1.0 means the host costs nothing."""
        return self.model_only.fps / self.end_to_end.fps if self.end_to_end.fps else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "compiled": self.compiled,
            "load": {k: round(v, 2) for k, v in self.load.items()},
            "model_only": self.model_only.to_dict(),
            "end_to_end": self.end_to_end.to_dict(),
            "host_overhead_ratio": round(self.host_overhead_ratio, 3),
        }


@dataclass(frozen=True)
class BenchReport:
    """Everything ``yolo-ov bench`` measured (``to_dict`` is the ``--json`` schema)."""

    model: str
    device: str
    source: str
    duration_s: float
    machine: dict[str, Any]
    modes: list[ModeResult]
    startup: list[StartTimes] = field(default_factory=list)
    requests_sweep: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "device": self.device,
            "source": self.source,
            "duration_s": self.duration_s,
            "machine": self.machine,
            "modes": [m.to_dict() for m in self.modes],
            "startup": [s.to_dict() for s in self.startup],
            "requests_sweep": [m.to_dict() for m in self.requests_sweep],
            "notes": self.notes,
        }


def load_inputs(source: str, hw: tuple[int, int] = (480, 640)) -> tuple[list[Any], str]:
    """The inputs end-to-end runs cycle over, and a description.

    ``synthetic``: random 640x480 BGR frames (no decode); a folder or glob:
    the image files (decoded on every use, as in real runs); a video: up to
    240 frames decoded once into memory (decode not timed).
    """
    if source == "synthetic":
        return synthetic_frames(hw, 16), f"synthetic {hw[1]}x{hw[0]} BGR frames"
    path = Path(source)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(path))
        frames: list[np.ndarray] = []
        try:
            while len(frames) < _MAX_VIDEO_FRAMES:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(frame)
        finally:
            cap.release()
        if not frames:
            raise InputError(f"{source}: no frames could be read from this video", source)
        return frames, f"{len(frames)} frames of {path.name} (decoded before timing)"
    files = [p for p in iter_image_files([source]) if isinstance(p, Path) and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise InputError(f"{source}: no images found; pass a folder of images, a video file or 'synthetic'", source)
    return files, f"{len(files)} images from {source} (decoded on every use)"


def run_bench(
    model: str | Path | None,
    runtime: RuntimeConfig,
    *,
    modes: list[Mode],
    source: str = "synthetic",
    duration_s: float = 10.0,
    startup: bool = True,
    startup_repeats: int = 3,
    sweep_requests: bool = True,
    specialize: bool = False,
    progress: Callable[[str, float], None] | None = None,
) -> BenchReport:
    """Measure each mode (model only and end to end), cold/cached start and a requests sweep.

    ``specialize``: run the end-to-end throughput pipeline with shape
    specialisation, as ``predict`` does (default: the model's own shape, so
    the host-overhead ratio compares like with like).
    """
    if duration_s <= 0:
        raise ConfigError(f"duration must be positive, got {duration_s}")
    inputs, described = load_inputs(source)
    load_before = machine_facts()["load_average"]
    busy_before = other_cpu_busy()  # measured while this process sleeps, before it adds its own load
    results: list[ModeResult] = []
    sweep: list[Measurement] = []
    notes = [f"{WARMUP_ITERATIONS} warm-up iterations per measurement are run first and excluded"]
    model_path: str | None = None

    def tick(label: str) -> Callable[[float], None] | None:
        return (lambda f: progress(label, f)) if progress else None

    for mode in modes:
        cfg = runtime.with_(mode=mode)
        with Detector(model, runtime=cfg) as det:
            model_path = str(det.model_info.path)
            lt = det.load_timings
            model_only = measure_model_only(det, duration_s, requests=cfg.num_requests,
                                            progress=tick(f"{mode.value}, model only"))
            e2e = measure_end_to_end(det, inputs, duration_s, specialize=specialize,
                                     progress=tick(f"{mode.value}, end to end"))
            results.append(ModeResult(mode.value, det.compiled_info.to_dict(),
                                      {"read_ms": lt.read_ms, "compile_ms": lt.compile_ms,
                                       "first_inference_ms": lt.first_inference_ms}, model_only, e2e))
            if sweep_requests and mode is not Mode.LATENCY and not sweep:
                top = max(2 * det.compiled_info.optimal_requests, 4)
                sweep_tick = tick("requests sweep")
                for n in range(1, top + 1):
                    sweep.append(measure_model_only(det, max(duration_s / 4, 1.0), requests=n))
                    if sweep_tick:
                        sweep_tick(n / top)
    notes += _honesty_notes(results, busy_before)
    if specialize and any(r.mode != Mode.LATENCY.value for r in results):
        notes.append("end-to-end throughput used shape specialisation (smaller letterboxes than the model-only "
                     "input), so its host-overhead ratio also contains that saving; its warm-up was one pass over "
                     "the inputs, so every shape was compiled before timing")
    start = (measure_startup(Path(model_path), runtime, repeats=startup_repeats, progress=tick("start-up"))
             if startup and model_path else [])
    machine = {**machine_facts(), "load_average": load_before, "other_cpu_busy": busy_before}
    return BenchReport(model_path or str(model), runtime.device, described, duration_s, machine, results,
                       start, sweep, notes)


#: Fewer samples than this and p99 is little more than the maximum.
MIN_STABLE_ITERATIONS = 100


#: Share of all CPU time other processes used just before the run above which a note warns.
BUSY_FRACTION = 0.25


def other_cpu_busy(window_s: float = 0.5) -> float | None:
    """Fraction of the machine's CPU time (0-1) used by other processes over ``window_s``.

    Read from ``/proc/stat`` while this process sleeps, so, unlike the load
    average, it does not count work this process did a moment ago. ``None``
    where ``/proc/stat`` does not exist.
    """
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:]]
        return sum(values), values[3] + (values[4] if len(values) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(window_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return round(1.0 - (idle1 - idle0) / total, 3) if total > 0 else None


def _honesty_notes(results: list[ModeResult], busy_before: float | None) -> list[str]:
    """Warnings a reader needs to weigh the figures: noise, few samples, a busy machine."""
    notes: list[str] = []
    if busy_before is not None and busy_before > BUSY_FRACTION:
        notes.append(f"other processes were using {busy_before:.0%} of the CPUs just before the run: "
                     "they compete with it for the cores")
    for r in results:
        for m in (r.model_only, r.end_to_end):
            if m.latency.noisy:
                notes.append(f"{r.mode} {m.kind}: max latency is over 3x the median; the machine looks noisy")
            if m.iterations < MIN_STABLE_ITERATIONS:
                notes.append(f"{r.mode} {m.kind}: only {m.iterations} iterations; p90/p99 are not stable below "
                             f"{MIN_STABLE_ITERATIONS}: use a longer --duration")
    return notes
