"""Shared plumbing for the side-by-side benchmark scripts.

Every script states the machine, runs OpenVINO's ``benchmark_app`` (the
reference) in the same run as yolo-ov, and writes ``results/<name>.json`` and
``results/<name>.md``. Import from a script with::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.common import ...
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, threads, Python/OpenVINO versions, the CPU's inference precision and the date:
    stated with every figure."""
    from yolo_ov.bench import machine_facts

    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return {**machine_facts(), "machine": platform.machine(), "cpu_precision": cpu_inference_precision(),
            "date": date}


def cpu_inference_precision() -> str:
    """The precision OpenVINO's CPU plugin runs float layers in unless told otherwise (``bf16`` on CPUs with
    AVX512-BF16 or AMX, else ``f32``): what every figure here was measured at, unless a script forces one."""
    import openvino as ov

    try:
        value = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    except Exception:  # no CPU plugin: nothing to state
        return "unknown"
    return value.get_type_name() if isinstance(value, ov.Type) else str(value)


def benchmark_app_path() -> str:
    exe = shutil.which("benchmark_app", path=str(Path(sys.executable).parent)) or shutil.which("benchmark_app")
    if exe is None:
        raise SystemExit("benchmark_app not found: it ships with the openvino package (pip install openvino)")
    return exe


_PATTERNS = {
    "read_ms": r"Read model took\s+([\d.]+)\s*ms",
    "compile_ms": r"Compile model took\s+([\d.]+)\s*ms",
    "first_inference_ms": r"First inference took\s+([\d.]+)\s*ms",
    "iterations": r"Count:\s+(\d+)\s+iterations",
    "duration_ms": r"Duration:\s+([\d.]+)\s*ms",
    "latency_median_ms": r"Median:\s+([\d.]+)\s*ms",
    "latency_average_ms": r"Average:\s+([\d.]+)\s*ms",
    "latency_min_ms": r"Min:\s+([\d.]+)\s*ms",
    "latency_max_ms": r"Max:\s+([\d.]+)\s*ms",
    "fps": r"Throughput:\s+([\d.]+)\s*FPS",
    "nireq": r"NUMBER_OF_INFER_REQUESTS:\s+(\d+)|infer requests?:?\s+(\d+)",
    "streams": r"NUM_STREAMS:\s+(\d+)",
}


def parse_benchmark_app(text: str) -> dict[str, float]:
    """The figures benchmark_app prints, by stable names."""
    out: dict[str, float] = {}
    for key, pattern in _PATTERNS.items():
        m = re.search(pattern, text)
        if m:
            value = next(g for g in m.groups() if g is not None)
            out[key] = float(value)
    if "fps" not in out:
        raise RuntimeError(f"could not parse benchmark_app output:\n{text[-2000:]}")
    return out


def run_benchmark_app(model_xml: Path, hint: str, seconds: int, *extra: str) -> dict[str, float]:
    """Run benchmark_app on the CPU and return its parsed figures."""
    cmd = [benchmark_app_path(), "-m", str(model_xml), "-d", "CPU", "-hint", hint, "-t", str(seconds), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark_app failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return parse_benchmark_app(proc.stdout)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``results/<name>.md``; return both paths."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{name}.json"
    md_path = RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return json_path, md_path


def machine_line(info: dict[str, Any]) -> str:
    # results written before the precision was recorded do not state it (it was not always this machine's)
    precision = f", CPU inference precision {info['cpu_precision']}" if info.get("cpu_precision") else ""
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"OpenVINO {info['openvino'].split('-')[0]}{precision}; measured {info['date']}."
    )


_ULTRALYTICS_PREDICT = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from ultralytics import YOLO
t1 = time.perf_counter()
model, source, task, warmup = YOLO(sys.argv[1], task=sys.argv[3]), sys.argv[2], sys.argv[3], int(sys.argv[4])
if warmup:
    warm = [str(p) for p in sorted(Path(source).glob("*.jpg"))[:warmup]] if Path(source).is_dir() else source
    for _ in model.predict(warm, stream=True, imgsz=640, verbose=False):
        pass
start = time.perf_counter() if warmup else t1
n = objects = 0
for r in model.predict(source, stream=True, imgsz=640, verbose=False):
    n += 1
    objects += len(r)
t2 = time.perf_counter()
print(json.dumps({"images": n, "objects": objects, "import_s": t1 - t0, "seconds": t2 - start,
                  "fps_end_to_end": n / (t2 - start)}))
"""


def ultralytics_predict(model: Path, source: Path, *, task: str = "detect", warmup: int = 0) -> dict[str, Any] | None:
    """Ultralytics' own ``YOLO(model).predict(source, stream=True)`` in a fresh process (imgsz 640).

    ``seconds`` runs from after the import: the model load and the pass, or, with
    ``warmup`` (a first pass over that many of a folder's JPEGs, or the whole
    source), the measured pass alone. ``None`` when Ultralytics is not installed.
    """
    proc = subprocess.run([sys.executable, "-c", _ULTRALYTICS_PREDICT, str(model), str(source), task, str(warmup)],
                          capture_output=True, text=True, encoding="utf-8", errors="replace", check=False)
    if proc.returncode != 0:
        if "No module named 'ultralytics'" in proc.stderr:
            return None
        raise RuntimeError(f"Ultralytics predict failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
