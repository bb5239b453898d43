"""``export --precision auto``: export FP32 and INT8, keep the faster one that is accurate enough.

Which precision is faster depends on the CPU: on an AMD EPYC (Zen 4, no AMX)
the INT8 IR of YOLOv8n ran 1.44x the FP32 IR, while on an Intel Xeon with
AMX the FP32 IR, executed in bf16, beat the INT8 IR (61.9 vs 51.7 FPS with
``benchmark_app -hint throughput``). So instead of a rule, this measures on
the machine that runs it:

1. both candidates are exported into a hidden folder beside the output
   (FP32, and INT8 calibrated on ``data``; each exactly as
   :func:`~yolo_ov.export.convert.export_model` makes it);
2. each is validated on ``data`` (COCO mAP50-95, :func:`yolo_ov.eval.validate.validate`)
   and its throughput measured model-only with the THROUGHPUT hint (what
   ``benchmark_app -hint throughput`` measures), in interleaved rounds so a
   change in machine load hits both;
3. the fastest candidate within ``max_drop`` mAP50-95 of the most accurate one
   (:func:`yolo_ov.bench.tune.pick_best`) is moved into place; what was measured is
   written into its ``metadata.yaml`` (``yolo_ov.auto_precision``) and returned.

This module sits above :mod:`yolo_ov.export.convert` (which never reaches the
``Detector``) and below the CLI.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..config import RuntimeConfig
from ..errors import ConfigError, OutputError
from .convert import ExportConfig, default_output, export_model, place_model_folder

__all__ = ["AutoExport", "export_fastest"]

#: Measuring rounds per candidate (interleaved) and seconds per round.
ROUNDS = 3
SECONDS = 3.0


@dataclass(frozen=True)
class AutoExport:
    """What ``export --precision auto`` measured and kept.

    Attributes:
        folder: the exported model folder that was kept.
        precision: ``fp32`` or ``int8``.
        candidates: per candidate ``{"precision", "fps", "fps_rounds", "map50_95", "map50", "eligible"}``.
        max_drop: the accuracy bound used.
        machine: CPU, cores, OpenVINO version, load average.
    """

    folder: Path
    precision: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    max_drop: float = 0.01
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.precision, "max_drop": self.max_drop, "candidates": self.candidates,
                "machine": self.machine}


def export_fastest(weights: Path, config: ExportConfig, *, max_drop: float = 0.01, rounds: int = ROUNDS,
                   seconds: float = SECONDS, device: str = "CPU",
                   progress: Callable[[str], None] | None = None) -> AutoExport:
    """Export ``weights`` in FP32 and INT8 and keep the faster one within ``max_drop`` mAP50-95.

    Args:
        weights: ``.pt``, ``.onnx`` or an OpenVINO folder/``.xml`` (as :func:`export_model`).
        config: the export settings; its ``precision`` is ignored, its
            ``data`` must be a labelled YOLO dataset (INT8 calibration and the
            accuracy check both use it), its ``output`` (default: the kept
            precision's usual name beside ``weights``) receives the winner.
        max_drop: largest mAP50-95 loss accepted against the most accurate candidate.
        device: where the candidates are measured.

    Raises:
        ConfigError: no ``data``, or ``max_drop`` out of range.
        DatasetError: ``data`` is not a labelled dataset.
        ExportError, CalibrationError, MissingExtraError: as :func:`export_model`.
    """
    from ..bench.measure import measure_model_only
    from ..bench.runner import machine_facts
    from ..bench.tune import Candidate, eligible, pick_best
    from ..detector import Detector
    from ..eval.dataset import load_dataset
    from ..eval.validate import validate

    if config.data is None:
        raise ConfigError("--precision auto needs --data: a labelled YOLO dataset, to calibrate INT8 and to "
                          "check that the faster model is accurate enough")
    if not 0.0 <= max_drop < 1.0:
        raise ConfigError(f"max_drop must be within [0, 1), e.g. 0.01; got {max_drop}")
    load_dataset(config.data)  # labelled? (fails here, before minutes of exporting)
    say = progress or (lambda _msg: None)
    weights = Path(weights).expanduser()
    beside = Path(config.output).expanduser().resolve().parent if config.output else weights.resolve().parent
    try:
        beside.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".yolo-ov-auto-", dir=beside))
    except OSError as exc:
        raise OutputError(f"{beside}: cannot write the exported models there ({exc.strerror or exc})") from exc
    try:
        folders: dict[str, Path] = {}
        for precision in ("fp32", "int8"):
            say(f"exporting {precision.upper()}" + (" (calibrating on --data)" if precision == "int8" else ""))
            folders[precision] = export_model(weights, replace(
                config, precision=precision, max_drop=None, data=config.data if precision == "int8" else None,
                output=work / default_output(weights, precision).name))
        maps = {}
        for precision, folder in folders.items():
            say(f"validating {precision.upper()} on {config.data}")
            maps[precision] = validate(folder, config.data, runtime=RuntimeConfig(mode="throughput", device=device))
        fps: dict[str, list[float]] = {p: [] for p in folders}
        runtime = RuntimeConfig(mode="throughput", device=device)
        for r in range(rounds):  # interleaved: a change in machine load hits every candidate
            for precision, folder in folders.items():
                say(f"measuring throughput, round {r + 1}/{rounds}: {precision.upper()}")
                with Detector(folder, runtime=runtime) as det:
                    fps[precision].append(measure_model_only(det, seconds).fps)
        cands = []
        for precision in folders:
            measured = _measurement(statistics.median(fps[precision]))
            cands.append(Candidate(precision, runtime, measured, model=str(folders[precision]),
                                   map50_95=maps[precision].map50_95))
        best = pick_best(cands, target="throughput", max_drop=max_drop)
        ok = {c.label for c in eligible(cands, max_drop=max_drop)}
        rows = [{"precision": c.label, "fps": round(c.measurement.fps, 2),  # type: ignore[union-attr]
                 "fps_rounds": [round(f, 2) for f in fps[c.label]], "map50_95": round(maps[c.label].map50_95, 4),
                 "map50": round(maps[c.label].map50, 4), "eligible": c.label in ok} for c in cands]
        facts = machine_facts()
        machine = {k: facts[k] for k in ("cpu", "cores", "openvino", "load_average") if k in facts}
        result = AutoExport(folders[best.label], best.label, rows, max_drop, machine)
        _record(folders[best.label], result)
        output = Path(config.output).expanduser() if config.output else default_output(weights, best.label)
        final = place_model_folder(folders[best.label], output)
        return replace(result, folder=final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measurement(fps: float) -> Any:
    """A stand-in :class:`~yolo_ov.bench.measure.Measurement` carrying the median FPS (for ``pick_best``)."""
    from ..bench.measure import Measurement
    from ..bench.stats import LatencyStats

    return Measurement("model_only", "throughput", 0, 0, 0.0, fps, LatencyStats.from_samples([]))


def _record(folder: Path, result: AutoExport) -> None:
    """Add what was measured to the kept model's ``metadata.yaml`` (``yolo_ov.auto_precision``)."""
    meta_path = folder / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
    meta.setdefault("yolo_ov", {})["auto_precision"] = result.to_dict()
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True), encoding="utf-8")
