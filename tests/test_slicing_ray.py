"""``predict --ray --slice`` on a real local Ray cluster (2 CPUs, started and stopped here; model tier).

Each actor's Detector slices (``Detector(..., slicing=...)``): the records must be
local ``predict --slice``'s, ``"slices"`` included.
"""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from tests.serve_support import assert_same_detections, record_arrays
from yolo_ov.cli import app

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'yolo-ov[ray]'")

from tests.ray_support import read_lines  # noqa: E402 - after the skip: the cluster fixture is in conftest

runner = CliRunner()


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
    got, want = read_lines(remote), read_lines(local)
    assert [r["source"] for r in got] == [r["source"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g["slices"] == w["slices"] == 6
        assert_same_detections(record_arrays(g), record_arrays(w), where=g["source"], min_conf=0.25,
                               min_iou=0.99, conf_tol=0.005)
