"""Benchmarking the way OpenVINO's ``benchmark_app`` does, plus end to end.

``run_bench`` returns a :class:`BenchReport` (its ``to_dict()`` is the
``--json`` schema); :func:`write_report` adds markdown and plots. The tuning
sweep lives in :mod:`yolo_ov.bench.tune`.
"""

from __future__ import annotations

from .measure import Measurement, measure_end_to_end, measure_model_only, synthetic_frames
from .report import markdown_summary, write_report, write_tune_report
from .runner import SCHEMA_VERSION, BenchReport, ModeResult, load_inputs, machine_facts, run_bench
from .startup import StartTimes, measure_startup
from .stats import LatencyStats

__all__ = [
    "SCHEMA_VERSION",
    "BenchReport",
    "LatencyStats",
    "Measurement",
    "ModeResult",
    "StartTimes",
    "load_inputs",
    "machine_facts",
    "markdown_summary",
    "measure_end_to_end",
    "measure_model_only",
    "measure_startup",
    "run_bench",
    "synthetic_frames",
    "write_report",
    "write_tune_report",
]
