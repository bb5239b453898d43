"""``predict --ray --slice`` on a real local Ray cluster (2 CPUs, started and stopped here; model tier).

Each actor's Detector slices (``Detector(..., slicing=...)``): the records must be
local ``predict --slice``'s, ``"slices"`` included.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.serve_support import assert_same_detections, record_arrays
from yolo_ov.cli import app

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'yolo-ov[ray]'")

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from yolo_ov.ray import connect

    cache = tmp_path_factory.getbasetemp() / "yolo-ov-cache"
    if ray.is_initialized():
        ray.shutdown()
    assert connect("local", num_cpus=2, runtime_env={"env_vars": {"YOLO_OV_CACHE_DIR": str(cache)}})
    yield ray
    ray.shutdown()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.timeout(600)
def test_predict_ray_slice_gives_the_records_of_local_predict_slice(cluster, shared, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("terrain2.png", "small-vehicles1.jpeg"):
        shutil.copy(shared.root / "data" / "sliced" / name, folder / name)
    args = ["predict", str(folder), "--model", str(shared.fp32_model), "--slice", "512", "--overlap", "0.2", "-q"]
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    result = runner.invoke(app, [*args, "--save-json", str(local)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*args, "--save-json", str(remote), "--ray="], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got, want = _lines(remote), _lines(local)
    assert [r["source"] for r in got] == [r["source"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g["slices"] == w["slices"] == 6
        assert_same_detections(record_arrays(g), record_arrays(w), where=g["source"], min_conf=0.25,
                               min_iou=0.99, conf_tol=0.005)
