"""Detections agree with Ultralytics' own predictions on coco96 (issue 2's criterion)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.matching import matched_fraction


def _ref_arrays(pred: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.asarray(pred["xyxy"], np.float32).reshape(-1, 4),
        np.asarray(pred["conf"], np.float32),
        np.asarray(pred["cls"], np.int32),
    )


#: Share of objects matched both ways against the *stored* reference. It was made on a CPU without
#: AMX; on Intel Xeons with AMX, OpenVINO runs the INT8 IR with AMX-INT8 kernels whose results
#: differ (measured 0.847 / 0.852 there, for Ultralytics' own predict too, which matches yolo-ov
#: 452 of 452 on the same machine: see test_matches_ultralytics_live_on_this_cpu). FP32 (run in
#: bf16) holds 0.99 on both kinds.
STORED_REFERENCE_BOUND = {"fp32": 0.99, "int8": 0.8}


def _has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return "amx_int8" in fh.read()
    except OSError:
        return False


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_matches_ultralytics_reference(which, shared, fp32_detector, int8_detector):
    det = fp32_detector if which == "fp32" else int8_detector
    model_dir = shared.fp32_model if which == "fp32" else shared.int8_model
    bound = STORED_REFERENCE_BOUND[which] if _has_amx() else 0.99
    reference = shared.reference_model(model_dir)["predictions"]
    ours_to_ref = [0, 0]
    ref_to_ours = [0, 0]
    for image in shared.coco96_images:
        result = det(image)
        ours = (result.xyxy, result.confidence, result.class_id)
        ref = _ref_arrays(reference[image.name])
        for acc, (a, b) in ((ours_to_ref, (ours, ref)), (ref_to_ours, (ref, ours))):
            m, n = matched_fraction(a, b)
            acc[0] += m
            acc[1] += n
    assert ours_to_ref[1] > 300 and ref_to_ours[1] > 300, "too few detections to judge"
    assert ours_to_ref[0] / ours_to_ref[1] >= bound, f"ours->reference matched {ours_to_ref}"
    assert ref_to_ours[0] / ref_to_ours[1] >= bound, f"reference->ours matched {ref_to_ours}"


_LIVE = """
import json, sys
from pathlib import Path
from ultralytics import YOLO
model, images, out = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
m = YOLO(model, task="detect")
rows = {}
for p in images:
    r = m.predict(p, imgsz=640, conf=0.25, iou=0.7, verbose=False)[0]
    rows[Path(p).name] = {"xyxy": r.boxes.xyxy.tolist(), "conf": r.boxes.conf.tolist(), "cls": r.boxes.cls.tolist()}
Path(out).write_text(json.dumps(rows))
"""


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_matches_ultralytics_live_on_this_cpu(which, shared, fp32_detector, int8_detector, tmp_path):
    """The oracle that holds on every CPU kind: Ultralytics' own predict of the same IR, run here,
    now (in a subprocess, so torch never enters this process)."""
    pytest.importorskip("ultralytics", reason="needs the export extra: pip install 'yolo-ov[export]'")
    import json
    import subprocess
    import sys

    det = fp32_detector if which == "fp32" else int8_detector
    model_dir = shared.fp32_model if which == "fp32" else shared.int8_model
    out = tmp_path / "live.json"
    images = [str(p) for p in shared.coco96_images]
    proc = subprocess.run([sys.executable, "-c", _LIVE, str(model_dir), *images, str(out)],
                          capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = json.loads(out.read_text(encoding="utf-8"))
    results = {p.name: det(p) for p in shared.coco96_images}
    ours_to_live, live_to_ours = _agreement(results, reference)
    assert ours_to_live >= 0.99 and live_to_ours >= 0.99, (ours_to_live, live_to_ours)


def _agreement(results: dict[str, object], reference: dict) -> tuple[float, float]:
    ours_to_ref = [0, 0]
    ref_to_ours = [0, 0]
    for name, result in results.items():
        ours = (result.xyxy, result.confidence, result.class_id)
        ref = _ref_arrays(reference[name])
        for acc, (a, b) in ((ours_to_ref, (ours, ref)), (ref_to_ours, (ref, ours))):
            m, n = matched_fraction(a, b)
            acc[0] += m
            acc[1] += n
    assert ours_to_ref[1] > 300 and ref_to_ours[1] > 300, "too few detections to judge"
    return ours_to_ref[0] / ours_to_ref[1], ref_to_ours[0] / ref_to_ours[1]


def test_predict_folder_default_matches_ultralytics_in_every_mode(shared, tmp_path):
    """One answer per image (issue 13 item 0): `yolo-ov predict FOLDER` with its defaults
    (throughput pipeline) and `submit()` give Ultralytics' detections for >= 99% of objects,
    because images keep the model's own square input unless --specialize is asked."""
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from yolo_ov import Detector, PipelineConfig
    from yolo_ov.cli import app

    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(app, ["predict", str(shared.coco96 / "images"), "--model", str(shared.fp32_model),
                                      "--save-json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "throughput" in result.output
    reference = shared.reference_model(shared.fp32_model)["predictions"]
    from yolo_ov import Detections

    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    folder = {}
    for rec in records:
        dets = rec["detections"]
        folder[Path(rec["source"]).name] = Detections(
            [d["box"] for d in dets], [d["confidence"] for d in dets], [d["class_id"] for d in dets])
    assert len(folder) == 96
    assert min(_agreement(folder, reference)) >= 0.99

    with Detector(shared.fp32_model, mode="throughput", pipeline=PipelineConfig(max_queue=128)) as det:
        futures = {p.name: det.submit(p) for p in shared.coco96_images}
        submitted = {name: f.result(timeout=120) for name, f in futures.items()}
    assert min(_agreement(submitted, reference)) >= 0.99
