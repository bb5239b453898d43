"""Precision is chosen per CPU: the fastest model variant whose accuracy is within --max-drop (issue 13, item 2).

The choice logic is checked on fake measurements (the two kinds of CPU the
project meets: INT8 faster on AMD EPYC, FP32-in-bf16 faster on AMX Xeons);
then ``tune --models`` and ``export --precision auto`` run for real on a small
labelled dataset, where only what they pick, not how fast it is, is asserted.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from yolo_ov import ConfigError, RuntimeConfig, load_runtime_config
from yolo_ov.bench.measure import Measurement
from yolo_ov.bench.stats import LatencyStats
from yolo_ov.bench.tune import Candidate, eligible, pick_best, tune
from yolo_ov.cli import app


def _cand(label: str, fps: float, map50_95: float | None, p90_ms: float = 20.0) -> Candidate:
    m = Measurement("model_only", "throughput", 4, 100, 1.0, fps, LatencyStats.from_samples([p90_ms] * 10))
    return Candidate(label, RuntimeConfig(mode="throughput"), m, model=label.split(":")[0], map50_95=map50_95)


@pytest.mark.parametrize(("candidates", "max_drop", "max_latency_ms", "expected"), [
    # AMD EPYC, no AMX: INT8 1.44x FP32, same accuracy -> INT8
    ([("fp32", 79.7, 0.4699), ("int8", 113.7, 0.4669)], 0.01, None, "int8"),
    # Xeon with AMX: the FP32 IR in bf16 beats INT8 -> FP32, whatever the bound
    ([("fp32", 61.9, 0.4699), ("int8", 51.7, 0.4669)], 0.01, None, "fp32"),
    # INT8 faster but too inaccurate for the bound -> FP32
    ([("fp32", 60.0, 0.4699), ("int8", 90.0, 0.4500)], 0.01, None, "fp32"),
    # ... and within a looser bound -> INT8
    ([("fp32", 60.0, 0.4699), ("int8", 90.0, 0.4500)], 0.02, None, "int8"),
    # a zero bound keeps only the most accurate
    ([("fp32", 60.0, 0.4699), ("int8", 90.0, 0.4698)], 0.0, None, "fp32"),
    # exactly at the bound is within it
    ([("fp32", 60.0, 0.4700), ("int8", 90.0, 0.4600)], 0.01, None, "int8"),
    # precision hints of one model: f32 most accurate, bf16 fastest and close -> bf16
    ([("m: f32", 40.0, 0.4701), ("m: bf16", 62.0, 0.4699), ("m: default", 61.0, 0.4699)], 0.01, None, "m: bf16"),
    # no accuracy measured: the fastest wins
    ([("fp32", 60.0, None), ("int8", 90.0, None)], None, None, "int8"),
    # the latency bound removes the fastest accurate candidate
    ([("fp32", 60.0, 0.47, 20.0), ("int8", 90.0, 0.47, 50.0)], 0.01, 30.0, "fp32"),
])
def test_pick_the_fastest_within_the_accuracy_bound(candidates, max_drop, max_latency_ms, expected):
    cands = [_cand(*c) for c in candidates]
    best = pick_best(cands, max_drop=max_drop, max_latency_ms=max_latency_ms)
    assert best.label == expected


def test_eligible_says_what_the_best_reached_when_nothing_fits():
    cands = [_cand("fp32", 60.0, 0.47, 40.0), _cand("int8", 90.0, 0.40, 10.0)]
    with pytest.raises(ConfigError, match=r"best accurate one reached 40\.0 ms"):
        eligible(cands, max_drop=0.01, max_latency_ms=30.0)
    # a failed candidate (no measurement) never wins
    failed = Candidate("broken", RuntimeConfig(), None, error="compile failed", map50_95=0.9)
    assert pick_best([failed, _cand("fp32", 10.0, 0.5)], max_drop=0.01).label == "fp32"


def test_latency_target_picks_the_lowest_median():
    fast = _cand("a", 50.0, 0.47, p90_ms=8.0)
    slow = _cand("b", 90.0, 0.47, p90_ms=15.0)
    assert pick_best([fast, slow], target="latency", max_drop=0.01).label == "a"


def test_bad_arguments(shared):
    with pytest.raises(ConfigError, match="needs a labelled dataset"):
        tune(None, RuntimeConfig(), models=[shared.fp32_model, shared.int8_model], budget_s=1)
    with pytest.raises(ConfigError, match="max_drop needs a labelled dataset"):
        tune(shared.int8_model, RuntimeConfig(), max_drop=0.01, budget_s=1)
    with pytest.raises(ConfigError, match="the same model is given twice"):
        tune(None, RuntimeConfig(), models=[shared.int8_model, shared.int8_model], data=shared.coco96, budget_s=1)
    runner = CliRunner()
    r = runner.invoke(app, ["tune", "--models", f"{shared.fp32_model},{shared.int8_model}"])
    assert r.exit_code == 2 and "needs a labelled dataset (--data)" in r.output
    r = runner.invoke(app, ["tune", "--model", str(shared.int8_model), "--models", str(shared.fp32_model)])
    assert r.exit_code == 2 and "either --model or --models" in r.output
    r = runner.invoke(app, ["export", str(shared.fp32_model), "--precision", "auto"])
    assert r.exit_code == 2 and "--precision auto needs --data" in r.output


@pytest.fixture(scope="module")
def small_dataset(shared, tmp_path_factory):
    """16 labelled coco96 images (validation takes seconds, not a minute)."""
    root = tmp_path_factory.mktemp("ds16")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for image in shared.coco96_images[:16]:
        shutil.copy(image, root / "images" / image.name)
        label = shared.coco96 / "labels" / f"{image.stem}.txt"
        if label.exists():
            shutil.copy(label, root / "labels" / label.name)
    shutil.copy(shared.coco96 / "data.yaml", root / "data.yaml")
    return root


def test_tune_compares_models_and_keeps_accuracy(shared, small_dataset, tmp_path):
    """Two real models: accuracy measured for each, the winner is within the bound, and it is saved."""
    result = tune(None, RuntimeConfig(), models=[shared.fp32_model, shared.int8_model], data=small_dataset,
                  max_drop=0.0, budget_s=2, sweep_precision=False)
    maps = {a.model: a.map50_95 for a in result.accuracy}
    assert set(maps) == {str(shared.fp32_model), str(shared.int8_model)} and all(0.3 < v < 1 for v in maps.values())
    assert {c.model for c in result.candidates} == set(maps)
    assert all(c.label.startswith(("yolov8n_openvino_model: ", "yolov8n_int8_openvino_model: "))
               for c in result.candidates)
    # max_drop 0: only the most accurate model may win, however fast the other one is
    assert result.best.model == max(maps, key=maps.get)
    path = result.save(tmp_path / "tuned.json")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["model"] == result.best.model
    assert saved["measured"]["max_drop"] == 0.0 and len(saved["measured"]["accuracy"]) == 2
    assert load_runtime_config(path) == result.best.runtime


@pytest.mark.slow  # two exports, INT8 calibration, two validations, six timed rounds: about a minute
def test_export_auto_keeps_the_faster_accurate_precision(shared, small_dataset, tmp_path):
    out = tmp_path / "auto_openvino_model"
    r = CliRunner().invoke(app, ["export", str(shared.fp32_model), "--precision", "auto", "--data", str(small_dataset),
                                 "--calib-size", "16", "--output", str(out)])
    assert r.exit_code == 0, r.output
    meta = yaml.safe_load((out / "metadata.yaml").read_text(encoding="utf-8"))
    auto = meta["yolo_ov"]["auto_precision"]
    assert meta["precision"] == auto["chosen"] and {c["precision"] for c in auto["candidates"]} == {"fp32", "int8"}
    best_map = max(c["map50_95"] for c in auto["candidates"])
    chosen = next(c for c in auto["candidates"] if c["precision"] == auto["chosen"])
    assert chosen["eligible"] and chosen["map50_95"] >= best_map - 0.01 - 1e-9
    others = [c for c in auto["candidates"] if c["eligible"] and c is not chosen]
    assert all(c["fps"] <= chosen["fps"] for c in others)  # the fastest eligible one
    assert "exported" in r.output and auto["chosen"] in r.output
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # the other candidate and the work folder are gone
