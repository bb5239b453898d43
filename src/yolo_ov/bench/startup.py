"""Cold vs cached start: what the first result costs, measured in fresh processes.

Each measurement runs in a new Python process so nothing compiled earlier in
this process helps it: *cold* compiles into an empty OpenVINO model cache,
*cached* loads the blob the cold run left there; both are repeated with
``enable_mmap`` on and off. "Start" is what a user waits for: read the model,
prepare and compile it, and run the first inference (imports excluded).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from ..config import RuntimeConfig
from ..errors import YoloOvError

__all__ = ["StartTimes", "measure_startup"]

_CHILD = r"""
import json, sys, time
from yolo_ov import Detector, RuntimeConfig
cfg = RuntimeConfig(**json.loads(sys.argv[2]))
t0 = time.perf_counter()
det = Detector(sys.argv[1], runtime=cfg)
total = (time.perf_counter() - t0) * 1e3
lt = det.load_timings
print(json.dumps({"read_ms": lt.read_ms, "compile_ms": lt.compile_ms,
                  "first_inference_ms": lt.first_inference_ms, "total_ms": total}))
"""


@dataclass(frozen=True)
class StartTimes:
    """Median milliseconds of one start-up scenario."""

    scenario: str  # e.g. "cold, mmap on"
    cache: str  # "cold" | "cached" | "off"
    mmap: bool
    read_ms: float
    compile_ms: float
    first_inference_ms: float
    total_ms: float
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _child(model: Path, runtime: dict[str, Any]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model), json.dumps(runtime)],
        capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600, check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise YoloOvError(f"start-up measurement failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_startup(model: Path, runtime: RuntimeConfig, *, repeats: int = 3,
                    progress: Callable[[float], None] | None = None) -> list[StartTimes]:
    """Cold and cached start, with mmap on and off, each the median of ``repeats`` fresh processes."""
    base = runtime.to_dict()
    out: list[StartTimes] = []
    done = 0
    for mmap in (True, False):
        cold: list[dict[str, float]] = []
        warm: list[dict[str, float]] = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="yolo-ov-cache-") as cache:
                settings = {**base, "cache_dir": cache, "enable_mmap": mmap}
                cold.append(_child(model, settings))
                warm.append(_child(model, settings))
            done += 1
            if progress:
                progress(done / (2 * repeats))
        label = "on" if mmap else "off"
        out.append(_summarise(f"cold cache, mmap {label}", "cold", mmap, cold))
        out.append(_summarise(f"cached, mmap {label}", "cached", mmap, warm))
    return out


def _summarise(scenario: str, cache: str, mmap: bool, runs: list[dict[str, float]]) -> StartTimes:
    def med(key: str) -> float:
        return float(median(r[key] for r in runs))

    return StartTimes(scenario, cache, mmap, med("read_ms"), med("compile_ms"), med("first_inference_ms"),
                      med("total_ms"), len(runs))
