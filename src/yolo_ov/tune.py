"""``tune``: sweep streams x requests x batch (x precision) and keep the best.

Each candidate is compiled and measured model-only (the part the settings
change) for an equal share of a time budget. For ``target="throughput"`` the
best is the highest FPS whose p90 latency per request stays within
``max_latency_ms`` (when given); for ``target="latency"`` the lowest median
latency. The performance hint's own choice is always measured too, as the
baseline the result is compared with. The winner is saved as a config file
that ``predict``, ``bench`` and ``Detector(runtime=load_runtime_config(...))``
accept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bench.measure import Measurement, measure_model_only
from .bench.runner import machine_facts
from .config import Mode, Precision, RuntimeConfig
from .detector import Detector
from .errors import ConfigError, YoloOvError
from .runtime import get_core

__all__ = ["Candidate", "TuneResult", "candidates_for", "tune"]

#: Leaders measured a second time (with the hint's own choice) before one is picked.
FINALISTS = 3


@dataclass(frozen=True)
class Candidate:
    """One configuration tried, and what it measured (``error`` if it failed to compile/run)."""

    label: str
    runtime: RuntimeConfig
    measurement: Measurement | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "runtime": self.runtime.to_dict()}
        if self.measurement is not None:
            m = self.measurement
            out.update(fps=round(m.fps, 2), median_ms=round(m.latency.median_ms, 3),
                       p90_ms=round(m.latency.p90_ms, 3), requests=m.requests)
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class TuneResult:
    """The sweep and its winner."""

    target: str
    max_latency_ms: float | None
    best: Candidate
    baseline: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def config_dict(self) -> dict[str, Any]:
        """The config file: ``runtime`` (read by ``load_runtime_config``) + what was measured."""
        return {
            "runtime": self.best.runtime.to_dict(),
            "measured": {
                "target": self.target,
                "max_latency_ms": self.max_latency_ms,
                "best": self.best.to_dict(),
                "baseline": self.baseline.to_dict(),
                "machine": self.machine,
            },
            "sweep": [c.to_dict() for c in self.candidates],
        }

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.config_dict(), indent=2) + "\n")
        return out


def _precisions(device: str) -> list[Precision | None]:
    """``None`` (the device's default) plus the precision hints the device offers."""
    try:
        caps = {str(c).upper() for c in get_core().get_property(device.split(":")[0], "OPTIMIZATION_CAPABILITIES")}
    except Exception:  # noqa: BLE001 - virtual devices (AUTO...) do not report capabilities
        return [None]
    offered = [None, Precision.F32]
    if "BF16" in caps:
        offered.append(Precision.BF16)
    if "FP16" in caps and device.startswith("GPU"):
        offered.append(Precision.F16)
    return offered


def candidates_for(base: RuntimeConfig, target: str, *, batches: tuple[int, ...] = (1,),
                   precisions: list[Precision | None] | None = None) -> list[tuple[str, RuntimeConfig]]:
    """The configurations to try (the hint's own choice first)."""
    precisions = precisions if precisions is not None else [None]
    cores = os.cpu_count() or 1
    out: list[tuple[str, RuntimeConfig]] = []
    if target == "latency":
        out.append(("LATENCY hint", base.with_(mode=Mode.LATENCY, num_streams=None, num_requests=None)))
        for p in precisions:
            for threads in sorted({cores, max(cores - 1, 1)}):
                out.append((f"1 stream, {threads} threads, precision {p.value if p else 'default'}",
                            base.with_(mode=Mode.LATENCY, num_streams=1, num_requests=1,
                                       inference_num_threads=threads, inference_precision=p)))
        return out
    out.append(("THROUGHPUT hint", base.with_(mode=Mode.THROUGHPUT, num_streams=None, num_requests=None)))
    for batch in batches:
        for streams in range(1, cores + 1):
            for requests in sorted({streams, 2 * streams}):
                for p in precisions:
                    out.append((
                        f"{streams} streams, {requests} requests, batch {batch}, "
                        f"precision {p.value if p else 'default'}",
                        base.with_(mode=Mode.THROUGHPUT, num_streams=streams, num_requests=requests, batch=batch,
                                   inference_precision=p),
                    ))
    return out


def tune(
    model: str | Path | None,
    base: RuntimeConfig,
    *,
    target: str = "throughput",
    max_latency_ms: float | None = None,
    budget_s: float = 60.0,
    batches: tuple[int, ...] = (1,),
    sweep_precision: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> TuneResult:
    """Measure every candidate for an equal share of ``budget_s`` and pick the best.

    ``budget_s`` is measuring time for the sweep and the confirmation round
    together; compiling each candidate comes on top (about 0.1-0.5 s each on a CPU).

    Raises:
        ConfigError: bad arguments, or no candidate met ``max_latency_ms``.
    """
    if target not in ("throughput", "latency"):
        raise ConfigError(f"target {target!r} must be 'throughput' or 'latency'")
    if max_latency_ms is not None and max_latency_ms <= 0:
        raise ConfigError(f"max_latency_ms must be positive, got {max_latency_ms}")
    precisions = _precisions(base.device) if sweep_precision else [None]
    plan = candidates_for(base, target, batches=batches, precisions=precisions)
    # The budget covers the sweep and the confirmation round (FINALISTS + the hint).
    share = max(budget_s / (len(plan) + FINALISTS + 1), 1.0)
    tried: list[Candidate] = []
    deadline = time.perf_counter() + budget_s * 1.5 + 30  # compile time is on top of the measuring share
    for i, (label, cfg) in enumerate(plan):
        if progress:
            progress(i, len(plan), label)
        if i and time.perf_counter() > deadline:
            break
        try:
            with Detector(model, runtime=cfg) as det:
                m = measure_model_only(det, share, requests=cfg.num_requests)
            tried.append(Candidate(label, cfg, m))
        except YoloOvError as exc:
            tried.append(Candidate(label, cfg, error=str(exc)))
    if progress:
        progress(len(plan), len(plan), "done")
    measured = [c for c in tried if c.measurement is not None]
    if not measured:
        raise ConfigError("no configuration could be compiled and measured: " + "; ".join(
            f"{c.label}: {c.error}" for c in tried))
    baseline = tried[0]
    if max_latency_ms is not None:
        allowed = [c for c in measured if c.measurement and c.measurement.latency.p90_ms <= max_latency_ms]
        if not allowed:
            fastest = min(c.measurement.latency.p90_ms for c in measured if c.measurement)
            raise ConfigError(f"no configuration kept p90 latency within {max_latency_ms:g} ms "
                              f"(the best reached {fastest:.1f} ms); raise --max-latency-ms")
    else:
        allowed = measured
    # One short measurement per candidate is noisy on a busy machine: the
    # leaders and the baseline are measured again and judged on the better
    # of their two runs, so a lucky first run does not decide alone.
    finalists = sorted(allowed, key=lambda c: _score(c, target), reverse=True)[:FINALISTS]
    if baseline.measurement is not None and baseline not in finalists:
        finalists.append(baseline)
    confirmed = {id(c): _confirm(model, c, share, max_latency_ms) for c in finalists}
    if baseline.measurement is not None:
        baseline = confirmed[id(baseline)]
    eligible = [confirmed[id(c)] for c in finalists if id(c) in confirmed and c in allowed]
    eligible = [c for c in eligible if max_latency_ms is None or _p90(c) <= max_latency_ms] or eligible
    best = max(eligible, key=lambda c: _score(c, target))
    return TuneResult(target, max_latency_ms, best, baseline, tried, machine_facts())


def _p90(c: Candidate) -> float:
    return c.measurement.latency.p90_ms if c.measurement else float("inf")


def _score(c: Candidate, target: str) -> float:
    """Higher is better: FPS for throughput, minus the median latency for latency."""
    if c.measurement is None:
        return float("-inf")
    return c.measurement.fps if target == "throughput" else -c.measurement.latency.median_ms


def _confirm(model: str | Path | None, c: Candidate, share: float, max_latency_ms: float | None) -> Candidate:
    """Measure ``c`` again; keep the run that scores better (and, with a bound, keeps within it)."""
    try:
        with Detector(model, runtime=c.runtime) as det:
            again = measure_model_only(det, share, requests=c.runtime.num_requests)
    except YoloOvError:
        return c
    runs = [m for m in (c.measurement, again) if m is not None]
    if max_latency_ms is not None:
        runs = [m for m in runs if m.latency.p90_ms <= max_latency_ms] or runs
    if c.runtime.mode is Mode.LATENCY:
        best = min(runs, key=lambda m: m.latency.median_ms)
    else:
        best = max(runs, key=lambda m: m.fps)
    return Candidate(c.label, c.runtime, best)
