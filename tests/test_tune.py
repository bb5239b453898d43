"""`yolo-ov tune`: candidates, latency bound, and the config file round trip (short budgets)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from yolo_ov import ConfigError, Detector, Mode, RuntimeConfig, load_runtime_config
from yolo_ov.bench.tune import candidates_for, tune
from yolo_ov.cli import app


def test_candidates_cover_streams_requests_batch_and_the_hint():
    plan = candidates_for(RuntimeConfig(), "throughput", batches=(1, 2), precisions=[None])
    labels = [label for label, _ in plan]
    assert labels[0] == "THROUGHPUT hint"
    configs = [cfg for _, cfg in plan[1:]]
    assert {c.batch for c in configs} == {1, 2}
    assert all(c.mode is Mode.THROUGHPUT and c.num_requests >= c.num_streams for c in configs)
    assert len({(c.num_streams, c.num_requests, c.batch) for c in configs}) == len(configs)
    lat = candidates_for(RuntimeConfig(), "latency", precisions=[None])
    assert lat[0][0] == "LATENCY hint" and all(c.mode is Mode.LATENCY for _, c in lat)


@pytest.fixture(scope="module")
def tuned(shared):
    return tune(shared.int8_model, RuntimeConfig(), target="throughput", max_latency_ms=10_000, budget_s=3,
                sweep_precision=False)


def test_tune_picks_a_measured_config_within_the_bound(tuned):
    assert tuned.best.measurement is not None
    assert tuned.best.measurement.latency.p90_ms <= 10_000
    assert tuned.baseline.label == "THROUGHPUT hint"
    measured = [c for c in tuned.candidates if c.measurement is not None]
    assert len(measured) >= 3


def test_config_round_trip(tuned, tmp_path, shared):
    path = tuned.save(tmp_path / "tuned.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert {"runtime", "measured", "sweep"} <= set(data)
    cfg = load_runtime_config(path)
    assert cfg == tuned.best.runtime
    with Detector(shared.int8_model, runtime=cfg) as det:
        assert det.compiled_info.mode == cfg.mode.value
        if cfg.num_streams:
            assert det.compiled_info.num_streams == cfg.num_streams
        assert len(det(shared.coco96_images[0])) > 0


def test_impossible_latency_bound_is_a_clear_error(shared):
    with pytest.raises(ConfigError, match="no configuration kept p90 latency within"):
        tune(shared.int8_model, RuntimeConfig(), max_latency_ms=0.001, budget_s=2, sweep_precision=False)


def test_latency_bound_excludes_slower_configs(tuned, shared):
    """Re-tune with a bound between the slowest and fastest p90 seen: the pick must respect it."""
    p90s = sorted(c.measurement.latency.p90_ms for c in tuned.candidates if c.measurement)
    bound = float(np.median(p90s))
    try:
        result = tune(shared.int8_model, RuntimeConfig(), max_latency_ms=bound, budget_s=3, sweep_precision=False)
    except ConfigError:
        pytest.skip("the machine got slower between the two sweeps; nothing met the bound")
    assert result.best.measurement.latency.p90_ms <= bound


def test_cli_tune_writes_config_usable_by_predict(shared, tmp_path):
    out = tmp_path / "t.json"
    runner = CliRunner()
    r = runner.invoke(app, ["tune", "--model", str(shared.int8_model), "--budget", "2", "--no-precision",
                            "--output", str(out), "--report", str(tmp_path / "rep"), "-q"])
    assert r.exit_code == 0, r.output
    assert "best:" in r.output and out.exists()
    assert (tmp_path / "rep" / "tune.md").read_text(encoding="utf-8").startswith("# yolo-ov tune")
    assert (tmp_path / "rep" / "tune_sweep.png").stat().st_size > 0
    jsonl = tmp_path / "p.jsonl"
    r = runner.invoke(app, ["predict", str(shared.coco96_images[0]), "--model", str(shared.int8_model),
                            "--config", str(out), "--save-json", str(jsonl), "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(jsonl.read_text(encoding="utf-8").splitlines()[0])["detections"]

    # bench takes the same file: what it compiles and how many requests it keeps in flight follow it
    cfg = load_runtime_config(out)
    bench_json = tmp_path / "b.json"
    r = runner.invoke(app, ["bench", "--model", str(shared.int8_model), "--config", str(out), "--mode", "throughput",
                            "--duration", "0.3", "--no-startup", "--no-sweep", "--json", str(bench_json), "-q"])
    assert r.exit_code == 0, r.output
    (mode,) = json.loads(bench_json.read_text(encoding="utf-8"))["modes"]
    assert mode["compiled"]["input_shape"][0] == cfg.batch
    if cfg.num_streams:
        assert mode["compiled"]["num_streams"] == cfg.num_streams
    if cfg.num_requests:
        assert mode["model_only"]["requests"] == cfg.num_requests


def test_cli_tune_bad_target(shared):
    r = CliRunner().invoke(app, ["tune", "--model", str(shared.int8_model), "--target", "speed"])
    assert r.exit_code == 2
    assert "target 'speed' must be 'throughput' or 'latency'" in r.output


def test_a_tuned_config_brings_its_model_unless_one_is_given(shared, tmp_path):
    """``tune --models a,b`` writes the model it picked into the config; ``--config`` alone runs that model."""
    cfg = tmp_path / "tuned.json"
    cfg.write_text(json.dumps({"runtime": {"mode": "latency"}, "model": str(shared.int8_model)}), encoding="utf-8")
    runner = CliRunner()
    alone = runner.invoke(app, ["info", "--config", str(cfg), "--json"], catch_exceptions=False)
    assert alone.exit_code == 0, alone.output
    assert "int8" in json.loads(alone.output)["model"]["path"]
    given = runner.invoke(app, ["info", "--config", str(cfg), "--model", str(shared.fp32_model), "--json"],
                          catch_exceptions=False)
    assert given.exit_code == 0, given.output
    assert "int8" not in json.loads(given.output)["model"]["path"]
