"""``tune``: sweep models x precision x streams x requests x batch and keep the best.

Each candidate is compiled and measured model-only (the part the settings
change) for an equal share of a time budget. For ``target="throughput"`` the
best is the highest FPS whose p90 latency per request stays within
``max_latency_ms`` (when given); for ``target="latency"`` the lowest median
latency. The performance hint's own choice is always measured too, as the
baseline the result is compared with. The winner is saved as a config file
that ``predict``, ``bench`` and ``Detector(runtime=load_runtime_config(...))``
accept.

Precision is a per-CPU choice, not a rule: on an AMD EPYC (Zen 4, no AMX) the
INT8 IR ran 1.44x the FP32 IR, while on an Intel Xeon with AMX the FP32 IR,
executed in bf16, beat the INT8 IR (benchmark_app 61.9 vs 51.7 FPS). So tune
also compares **model variants** (``models``: e.g. the FP32 and the INT8 IR)
and the precision hints the device offers, and keeps only the variants whose
COCO mAP50-95 on ``data`` (measured with :func:`yolo_ov.eval.validate.validate`)
is within ``max_drop`` of the most accurate one: the fastest *accurate*
configuration wins. Without ``data`` there is no accuracy check, so several
models need it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import Mode, Precision, RuntimeConfig
from ..detector import Detector
from ..errors import ConfigError, YoloOvError
from ..runtime.core import get_core
from .measure import Measurement, measure_model_only
from .runner import machine_facts

__all__ = ["DEFAULT_MAX_DROP", "Accuracy", "Candidate", "TuneResult", "candidates_for", "eligible", "measure_accuracy",
           "pick_best", "tune"]

#: Leaders measured a second time (with the hint's own choice) before one is picked.
FINALISTS = 3
#: Largest mAP50-95 loss accepted against the most accurate variant when ``data`` is given.
DEFAULT_MAX_DROP = 0.01


@dataclass(frozen=True)
class Accuracy:
    """COCO mAP50-95 of one model at one precision hint, on the tune dataset."""

    model: str
    precision: str  # "default", "f32", "bf16", ...
    map50_95: float
    map50: float

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "precision": self.precision, "map50_95": round(self.map50_95, 4),
                "map50": round(self.map50, 4)}


@dataclass(frozen=True)
class Candidate:
    """One configuration tried, and what it measured (``error`` if it failed to compile/run)."""

    label: str
    runtime: RuntimeConfig
    measurement: Measurement | None = None
    error: str | None = None
    #: the model file (``None``: the ``model`` given to :func:`tune`)
    model: str | None = None
    #: mAP50-95 of this model at this precision on the tune dataset (``None``: not measured)
    map50_95: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "runtime": self.runtime.to_dict()}
        if self.model is not None:
            out["model"] = self.model
        if self.map50_95 is not None:
            out["map50_95"] = round(self.map50_95, 4)
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
    #: mAP50-95 per model and precision (empty without ``data``)
    accuracy: list[Accuracy] = field(default_factory=list)
    max_drop: float | None = None

    def config_dict(self) -> dict[str, Any]:
        """The config file: ``runtime`` (read by ``load_runtime_config``), the winning ``model`` + what was measured."""
        out: dict[str, Any] = {"runtime": self.best.runtime.to_dict()}
        if self.best.model is not None:
            out["model"] = self.best.model
        out["measured"] = {
            "target": self.target,
            "max_latency_ms": self.max_latency_ms,
            "max_drop": self.max_drop,
            "best": self.best.to_dict(),
            "baseline": self.baseline.to_dict(),
            "accuracy": [a.to_dict() for a in self.accuracy],
            "machine": self.machine,
        }
        out["sweep"] = [c.to_dict() for c in self.candidates]
        return out

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.config_dict(), indent=2) + "\n", encoding="utf-8")
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
    models: Sequence[str | Path] | None = None,
    data: str | Path | None = None,
    max_drop: float | None = None,
) -> TuneResult:
    """Measure every candidate for an equal share of ``budget_s`` and pick the best.

    ``budget_s`` is measuring time for the sweep and the confirmation round
    together; compiling each candidate comes on top (about 0.1-0.5 s each on a
    CPU), and so does validating each model and precision on ``data``.

    Args:
        model: the model to tune (ignored when ``models`` is given).
        models: model variants to compare (e.g. an FP32 and an INT8 IR of one
            network); the winner's path is saved with its configuration.
        data: a labelled YOLO dataset: each model is validated at each
            precision hint, and only those within ``max_drop`` mAP50-95 of the
            most accurate compete. Needed when ``models`` holds several.
        max_drop: the accuracy bound (default :data:`DEFAULT_MAX_DROP`).

    Raises:
        ConfigError: bad arguments, or no candidate met ``max_latency_ms``.
    """
    if target not in ("throughput", "latency"):
        raise ConfigError(f"target {target!r} must be 'throughput' or 'latency'")
    if max_latency_ms is not None and max_latency_ms <= 0:
        raise ConfigError(f"max_latency_ms must be positive, got {max_latency_ms}")
    variants = [str(m) for m in models] if models else [None if model is None else str(model)]
    if len(set(variants)) != len(variants):
        raise ConfigError(f"models: the same model is given twice ({', '.join(str(v) for v in variants)})")
    if len(variants) > 1 and data is None:
        raise ConfigError("comparing several models needs a labelled dataset (--data) to hold their accuracy "
                          "within --max-drop; a faster model that detects less is not a win")
    if max_drop is not None and data is None:
        raise ConfigError("max_drop needs a labelled dataset (--data) to measure mAP50-95 on")
    if max_drop is not None and not 0.0 <= max_drop < 1.0:
        raise ConfigError(f"max_drop must be within [0, 1), e.g. 0.01; got {max_drop}")
    drop = (DEFAULT_MAX_DROP if max_drop is None else max_drop) if data is not None else None
    precisions = _precisions(base.device) if sweep_precision else [None]
    accuracy = measure_accuracy(variants, precisions, data, base) if data is not None else []
    maps = {(a.model, a.precision): a.map50_95 for a in accuracy}
    plan: list[tuple[str, str | None, RuntimeConfig]] = []
    for variant in variants:
        prefix = f"{Path(variant).name}: " if len(variants) > 1 else ""
        plan += [(prefix + label, variant, cfg)
                 for label, cfg in candidates_for(base, target, batches=batches, precisions=precisions)]
    # The budget covers the sweep and the confirmation round (FINALISTS + the hint).
    share = max(budget_s / (len(plan) + FINALISTS + 1), 1.0)
    tried: list[Candidate] = []
    deadline = time.perf_counter() + budget_s * 1.5 + 30  # compile time is on top of the measuring share
    for i, (label, variant, cfg) in enumerate(plan):
        if progress:
            progress(i, len(plan), label)
        if i and time.perf_counter() > deadline:
            break
        accurate = maps.get((str(variant), _precision_name(cfg.inference_precision)))
        try:
            with Detector(variant, runtime=cfg) as det:
                m = measure_model_only(det, share, requests=cfg.num_requests)
            tried.append(Candidate(label, cfg, m, model=variant, map50_95=accurate))
        except YoloOvError as exc:
            tried.append(Candidate(label, cfg, error=str(exc), model=variant, map50_95=accurate))
    if progress:
        progress(len(plan), len(plan), "done")
    measured = [c for c in tried if c.measurement is not None]
    if not measured:
        raise ConfigError("no configuration could be compiled and measured: " + "; ".join(
            f"{c.label}: {c.error}" for c in tried))
    baseline = tried[0]
    allowed = eligible(measured, max_latency_ms=max_latency_ms, max_drop=drop)
    # One short measurement per candidate is noisy on a busy machine: the
    # leaders and the baseline are measured again and judged on the better
    # of their two runs, so a lucky first run does not decide alone.
    finalists = sorted(allowed, key=lambda c: _score(c, target), reverse=True)[:FINALISTS]
    if baseline.measurement is not None and baseline not in finalists:
        finalists.append(baseline)
    confirmed = {id(c): _confirm(c, share, max_latency_ms) for c in finalists}
    if baseline.measurement is not None:
        baseline = confirmed[id(baseline)]
    again = [confirmed[id(c)] for c in finalists if c in allowed]
    best = pick_best(again, target=target, max_latency_ms=max_latency_ms, max_drop=drop, fallback=True)
    return TuneResult(target, max_latency_ms, best, baseline, tried, machine_facts(), accuracy, drop)


def measure_accuracy(models: Sequence[str | None], precisions: Sequence[Precision | None], data: str | Path,
                     base: RuntimeConfig) -> list[Accuracy]:
    """mAP50-95 of every model at every precision hint on ``data`` (:func:`yolo_ov.eval.validate.validate`,
    throughput pipeline at the model's own square input)."""
    from ..eval.validate import validate

    out = []
    for model in models:
        for p in precisions:
            rt = base.with_(mode=Mode.THROUGHPUT, num_streams=None, num_requests=None, batch=1, inference_precision=p)
            result = validate(model, data, runtime=rt)
            out.append(Accuracy(str(model), _precision_name(p), result.map50_95, result.map50))
    return out


def eligible(candidates: Sequence[Candidate], *, max_latency_ms: float | None = None,
             max_drop: float | None = None) -> list[Candidate]:
    """The measured candidates that meet the bounds: mAP50-95 within ``max_drop`` of the most
    accurate candidate (when accuracy was measured), p90 latency within ``max_latency_ms``.

    Raises:
        ConfigError: nothing meets them; the message says what the best reached.
    """
    measured = [c for c in candidates if c.measurement is not None]
    known = [c.map50_95 for c in measured if c.map50_95 is not None]
    if max_drop is not None and known:
        floor = max(known) - max_drop - 1e-9
        measured = [c for c in measured if c.map50_95 is None or c.map50_95 >= floor]
    if max_latency_ms is None:
        return measured
    allowed = [c for c in measured if _p90(c) <= max_latency_ms]
    if not allowed:
        fastest = min((_p90(c) for c in measured), default=float("inf"))
        raise ConfigError(f"no configuration kept p90 latency within {max_latency_ms:g} ms "
                          f"(the best{' accurate one' if known else ''} reached {fastest:.1f} ms); "
                          "raise --max-latency-ms")
    return allowed


def pick_best(candidates: Sequence[Candidate], *, target: str = "throughput", max_latency_ms: float | None = None,
              max_drop: float | None = None, fallback: bool = False) -> Candidate:
    """The fastest candidate among the :func:`eligible` ones (highest FPS, or lowest median latency).

    ``fallback``: when a re-measurement pushed every candidate over the
    latency bound, pick from all of them rather than fail (used after the
    confirmation round; accuracy is never relaxed).

    Example (fake measurements: the INT8 model is faster but loses 0.03 mAP):
        >>> from yolo_ov.bench.stats import LatencyStats
        >>> def cand(label, fps, map_):
        ...     m = Measurement("model_only", "throughput", 4, 100, 1.0, fps, LatencyStats.from_samples([20.0]))
        ...     return Candidate(label, RuntimeConfig(), m, map50_95=map_)
        >>> pick_best([cand("fp32", 60, 0.47), cand("int8", 70, 0.44)], max_drop=0.01).label
        'fp32'
        >>> pick_best([cand("fp32", 60, 0.47), cand("int8", 70, 0.465)], max_drop=0.01).label
        'int8'
    """
    try:
        allowed = eligible(candidates, max_latency_ms=max_latency_ms, max_drop=max_drop)
    except ConfigError:
        if not fallback:
            raise
        allowed = eligible(candidates, max_drop=max_drop)
    if not allowed:
        raise ConfigError("no configuration could be measured")
    return max(allowed, key=lambda c: _score(c, target))


def _precision_name(p: Precision | None) -> str:
    return p.value if p is not None else "default"


def _p90(c: Candidate) -> float:
    return c.measurement.latency.p90_ms if c.measurement else float("inf")


def _score(c: Candidate, target: str) -> float:
    """Higher is better: FPS for throughput, minus the median latency for latency."""
    if c.measurement is None:
        return float("-inf")
    return c.measurement.fps if target == "throughput" else -c.measurement.latency.median_ms


def _confirm(c: Candidate, share: float, max_latency_ms: float | None) -> Candidate:
    """Measure ``c`` again; keep the run that scores better (and, with a bound, keeps within it)."""
    try:
        with Detector(c.model, runtime=c.runtime) as det:
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
    return replace(c, measurement=best)
