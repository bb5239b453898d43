"""COCO mAP: the scoring itself, and agreement with Ultralytics' own validation of the same models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from yolo_ov.errors import ConfigError
from yolo_ov.eval.dataset import load_dataset
from yolo_ov.eval.validate import evaluate, validate
from yolo_ov.results import Detections, Failure


@pytest.fixture(scope="module")
def coco96(shared):
    return load_dataset(shared.coco96)


def _ground_truth_as_detections(ds, shape=(480, 640)):
    """Perfect detections: every labelled box, confidence 0.9, at a fixed image size."""
    return [
        Detections(it.xyxy(shape).astype(np.float32), np.full(len(it), 0.9, np.float32), it.class_id,
                   ds.names, shape, str(it.image))
        for it in ds.items
    ]


def test_perfect_detections_score_one(coco96):
    res = evaluate(coco96, _ground_truth_as_detections(coco96))
    assert res.map50_95 == pytest.approx(1.0)
    assert res.map50 == pytest.approx(1.0)
    assert res.images == 96 and res.instances == 717 and res.missing == 0
    assert sum(c.instances for c in res.per_class) == 717
    assert all(c.ap50_95 == pytest.approx(1.0) for c in res.per_class)


def test_shifted_boxes_lose_strict_thresholds_only(coco96):
    """Boxes shifted by 10% of their width have IoU 0.9/1.1=0.82: AP50 stays 1, AP50-95 falls to 0.7."""
    dets = _ground_truth_as_detections(coco96)
    shifted = []
    for d in dets:
        xyxy = d.xyxy.copy()
        dx = 0.1 * (xyxy[:, 2] - xyxy[:, 0])
        xyxy[:, [0, 2]] += dx[:, None]
        shifted.append(Detections(xyxy, d.confidence, d.class_id, d.names, d.image_shape, d.source))
    res = evaluate(coco96, shifted)
    assert res.map50 == pytest.approx(1.0)
    assert res.map50_95 == pytest.approx(0.7, abs=0.005)  # 0.818 passes IoU 0.50..0.80: 7 of 10


def test_missing_and_failed_images_count_as_misses(coco96):
    dets = _ground_truth_as_detections(coco96)
    labelled = [i for i, it in enumerate(coco96.items) if len(it)]
    drop = labelled[0]
    results = [*dets[:drop], Failure(dets[drop].source, "unreadable"), *dets[drop + 1:]]
    res = evaluate(coco96, results)
    assert res.missing == 1
    assert res.map50 < 1.0
    partial = evaluate(coco96, dets[:10])
    assert partial.missing == 86 and partial.map50_95 < res.map50_95


def test_results_must_name_dataset_images(coco96, tmp_path):
    stray = Detections.empty(names={}, image_shape=(10, 10), source=str(tmp_path / "other.jpg"))
    with pytest.raises(ConfigError, match="does not name an image of the dataset"):
        evaluate(coco96, [stray])
    dets = _ground_truth_as_detections(coco96)
    with pytest.raises(ConfigError, match="two results for the same image"):
        evaluate(coco96, [dets[0], dets[0]])


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_map_matches_ultralytics_reference(which, shared, coco96, fp32_detector, int8_detector):
    """COCO mAP50-95 (faster-coco-eval) within 0.01 of Ultralytics' own val of the same model.

    Two measured gaps add up here: COCO's AP reads about 0.004 above Ultralytics' on the same detections
    (the definition; test_val_tasks checks --protocol ultralytics against the reference within 0.005), and
    the INT8 IR's own figure moves with the CPU's kernels: Ultralytics' val gives 0.4680 on an AMX Xeon with
    bf16 and 0.4640 (the reference) with f32 kernels; COCO's AP of ours read 0.4724 on that Xeon.
    """
    det = fp32_detector if which == "fp32" else int8_detector
    model_dir = shared.fp32_model if which == "fp32" else shared.int8_model
    ref = shared.reference_model(model_dir)
    res = validate(det, coco96)
    assert res.images == 96 and res.missing == 0
    assert abs(res.map50_95 - ref["map50_95"]) <= 0.01, (res.map50_95, ref["map50_95"])
    assert abs(res.map50 - ref["map50"]) <= 0.015, (res.map50, ref["map50"])
    assert res.images_per_s and res.images_per_s > 0
    record = res.to_dict()
    assert {"map50_95", "map50", "images", "instances", "images_per_s", "per_class"} <= set(record)
    json.dumps(record)
    # the Detector's own (prediction) settings are untouched by validation
    assert det.detect_config.conf == 0.25 and not det.detect_config.multi_label


def test_cli_val_json_and_exit_codes(shared, tmp_path):
    from typer.testing import CliRunner

    from yolo_ov.cli import app

    runner = CliRunner()
    out = tmp_path / "val.json"
    result = runner.invoke(app, ["val", str(shared.coco96), "--model", str(shared.fp32_model), "--json", str(out),
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text(encoding="utf-8"))
    ref = shared.reference_model(shared.fp32_model)["map50_95"]
    assert abs(record["map50_95"] - ref) <= 0.01  # COCO AP: see test_map_matches_ultralytics_reference
    assert record["images"] == 96 and record["instances"] == 717 and record["images_per_s"] > 0
    assert "person" in result.output and "mAP50-95" in result.output
    # a dataset without labels: one line, usage exit code
    (tmp_path / "nolabels" / "images").mkdir(parents=True)
    (tmp_path / "nolabels" / "images" / "a.jpg").write_bytes(shared.coco96_images[0].read_bytes())
    (tmp_path / "nolabels" / "data.yaml").write_text("val: images\nnames: [a]\n", encoding="utf-8")
    bad = runner.invoke(app, ["val", str(tmp_path / "nolabels"), "--model", str(shared.fp32_model)])
    assert bad.exit_code == 2
    assert "no label files" in bad.output and bad.output.strip().count("\n") == 0


def test_compare_table_chart_and_json(shared, tmp_path):
    from typer.testing import CliRunner

    from yolo_ov.cli import app

    png, js = tmp_path / "chart.png", tmp_path / "cmp.json"
    result = CliRunner().invoke(app, ["compare", str(shared.fp32_model), str(shared.int8_model), "--data",
                                      str(shared.coco96), "--plot", str(png), "--json", str(js), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = json.loads(js.read_text(encoding="utf-8"))
    assert [r["label"] for r in rows] == ["yolov8n_openvino_model", "yolov8n_int8_openvino_model"]
    assert [r["precision"] for r in rows] == ["fp32", "int8"]  # the shared INT8 has no 'precision' key: read from graph
    for row, model in zip(rows, (shared.fp32_model, shared.int8_model), strict=True):
        assert abs(row["map50_95"] - shared.reference_model(model)["map50_95"]) <= 0.01  # COCO AP, as above
        assert row["images_per_s"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "int8" in result.output and "mAP50-95" in result.output  # the table (rich wraps long names)
