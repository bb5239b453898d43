"""`yolo-ov bench`: JSON schema, report files, honest-measurement notes (short durations, no timing asserts)."""

from __future__ import annotations

import json

import cv2
import pytest
from typer.testing import CliRunner

from yolo_ov import Detector, Mode, RuntimeConfig
from yolo_ov.bench import SCHEMA_VERSION, LatencyStats, load_inputs, measure_end_to_end, run_bench, write_report
from yolo_ov.bench.runner import MIN_STABLE_ITERATIONS
from yolo_ov.cli import app

MEASUREMENT_KEYS = {"kind", "mode", "requests", "iterations", "duration_s", "fps", "latency", "noisy",
                    "warmup_iterations"}
LATENCY_KEYS = {"count", "median_ms", "average_ms", "min_ms", "max_ms", "p90_ms", "p99_ms"}


@pytest.fixture(scope="module")
def report(shared):
    return run_bench(shared.int8_model, RuntimeConfig(), modes=[Mode.LATENCY, Mode.THROUGHPUT],
                     source=str(shared.coco96 / "images"), duration_s=0.5, startup=True, startup_repeats=1)


def test_json_schema(report):
    data = json.loads(json.dumps(report.to_dict()))
    assert data["schema_version"] == SCHEMA_VERSION
    assert set(data) == {"schema_version", "model", "device", "source", "duration_s", "machine", "modes", "startup",
                         "requests_sweep", "notes"}
    assert {"cpu", "cores", "process_threads", "python_threads", "openvino", "load_average",
            "other_cpu_busy"} <= set(data["machine"])
    assert 0.0 <= data["machine"]["other_cpu_busy"] <= 1.0
    assert [m["mode"] for m in data["modes"]] == ["latency", "throughput"]
    for mode in data["modes"]:
        assert set(mode) == {"mode", "compiled", "load", "model_only", "end_to_end", "host_overhead_ratio"}
        assert {"num_streams", "optimal_requests", "inference_precision", "inference_threads",
                "execution_devices"} <= set(mode["compiled"])
        assert set(mode["load"]) == {"read_ms", "compile_ms", "first_inference_ms"}
        for kind in ("model_only", "end_to_end"):
            m = mode[kind]
            assert set(m) >= MEASUREMENT_KEYS
            assert set(m["latency"]) == LATENCY_KEYS
            assert m["iterations"] > 0 and m["fps"] > 0
            assert m["latency"]["min_ms"] <= m["latency"]["median_ms"] <= m["latency"]["max_ms"]
            assert m["latency"]["median_ms"] <= m["latency"]["p90_ms"] <= m["latency"]["p99_ms"]
        assert {"preprocess_median_ms", "inference_median_ms", "postprocess_median_ms"} <= set(mode["end_to_end"])
    lat, thr = data["modes"]
    assert lat["compiled"]["num_streams"] == 1 and lat["model_only"]["requests"] == 1
    assert thr["model_only"]["requests"] == thr["compiled"]["optimal_requests"]
    assert [s["cache"] for s in data["startup"]] == ["cold", "cached", "cold", "cached"]
    assert [s["mmap"] for s in data["startup"]] == [True, True, False, False]
    assert [m["requests"] for m in data["requests_sweep"]] == list(range(1, len(data["requests_sweep"]) + 1))
    assert any("warm-up" in n for n in data["notes"])


def test_notes_name_every_short_or_noisy_measurement(report):
    """Each measurement with too few samples for a stable p99, or a wide spread, is called out by name."""
    for r in report.modes:
        for m in (r.model_only, r.end_to_end):
            label = f"{r.mode} {m.kind}:"
            few = any(n.startswith(label) and "iterations" in n for n in report.notes)
            noisy = any(n.startswith(label) and "noisy" in n for n in report.notes)
            assert few == (m.iterations < MIN_STABLE_ITERATIONS), (label, m.iterations, report.notes)
            assert noisy == m.latency.noisy, (label, report.notes)


def test_report_files(report, tmp_path):
    files = write_report(report, tmp_path / "rep")
    names = {f.name for f in files}
    assert names == {"bench.md", "bench.json", "latency_distribution.png", "throughput_vs_requests.png"}
    for f in files:
        assert f.stat().st_size > 0
        if f.suffix == ".png":
            img = cv2.imread(str(f))
            assert img is not None and img.shape[0] > 100
    md = (tmp_path / "rep" / "bench.md").read_text(encoding="utf-8")
    assert "| latency | model only |" in md and "| throughput | end to end |" in md
    assert "cold cache, mmap on" in md and "Cached start is" in md
    assert json.loads((tmp_path / "rep" / "bench.json").read_text(encoding="utf-8"))["schema_version"] == SCHEMA_VERSION


def test_end_to_end_keeps_the_model_shape_unless_asked(report, shared):
    """By default the host-overhead ratio compares like with like: one 640x640 shape, as model only."""
    (thr,) = [r for r in report.modes if r.mode == "throughput"]
    assert thr.end_to_end.extra["specialize"] == "off"
    assert thr.end_to_end.extra["shapes"] == {"640x640": sum(thr.end_to_end.extra["shapes"].values())}
    assert sum(thr.end_to_end.extra["shapes"].values()) >= thr.end_to_end.iterations

    with Detector(shared.int8_model, mode="throughput") as det:
        m = measure_end_to_end(det, shared.coco96_images, 0.5, specialize=True)
    assert m.extra["specialize"] == "on"
    assert set(m.extra["shapes"]) - {"640x640"}  # coco96 is mostly 640x480: smaller letterboxes were used
    assert m.warmup_iterations == len(shared.coco96_images)  # every shape compiled before timing
    assert m.extra["failures"] == 0


def test_noisy_flag():
    assert LatencyStats.from_samples([10, 10, 10, 40]).noisy
    assert not LatencyStats.from_samples([10, 11, 12, 13]).noisy
    s = LatencyStats.from_samples([1, 2, 3, 4, 100])
    assert (s.min_ms, s.median_ms, s.max_ms, s.count) == (1, 3, 100, 5)


def test_inputs_video_and_errors(tmp_path, shared):
    frames, text = load_inputs("synthetic")
    assert len(frames) == 16 and frames[0].shape == (480, 640, 3) and "synthetic" in text
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for p in shared.coco96_images[:5]:
        writer.write(cv2.resize(cv2.imread(str(p)), (320, 240)))
    writer.release()
    frames, text = load_inputs(str(video))
    assert len(frames) == 5 and frames[0].shape == (240, 320, 3)
    from yolo_ov import InputError

    with pytest.raises(InputError, match="no images found"):
        load_inputs(str(tmp_path / "nothing"))


def test_cli_bench_json(shared, tmp_path):
    out = tmp_path / "b.json"
    result = CliRunner().invoke(app, ["bench", "--model", str(shared.int8_model), "--mode", "latency",
                                      "--duration", "0.3", "--no-startup", "--no-sweep", "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [m["mode"] for m in data["modes"]] == ["latency"] and data["startup"] == []
    assert "| latency | model only |" in result.output


def test_cli_bench_rejects_bad_mode(shared):
    result = CliRunner().invoke(app, ["bench", "--model", str(shared.int8_model), "--mode", "fast"])
    assert result.exit_code == 2
    assert "mode 'fast' is not one of: latency, throughput, cumulative_throughput" in result.output
