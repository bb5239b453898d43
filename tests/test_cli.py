"""The command line: JSONL output, info on every model form, bad input handling and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from yolo_ov.cli import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_predict_folder_writes_jsonl(shared, tmp_path):
    out = tmp_path / "pred.jsonl"
    result = _invoke("predict", shared.coco96 / "images", "--model", shared.fp32_model, "--save-json", out, "-q")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 96
    first = lines[0]
    assert set(first) >= {"source", "width", "height", "detections"}
    assert first["source"].endswith("000000000009.jpg")
    assert (first["width"], first["height"]) == (640, 480)
    det = first["detections"][0]
    assert set(det) == {"box", "confidence", "class_id", "class_name"}
    assert det["class_name"] == "bowl" and len(det["box"]) == 4
    assert sum(len(r["detections"]) for r in lines) > 400
    assert "96 images" in result.output and "images/s" in result.output


def test_predict_bad_items_are_recorded_and_run_goes_on(shared, tmp_path):
    good = shared.coco96_images[:2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8not really a jpeg")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "pred.jsonl"
    result = _invoke("predict", good[0], bad, missing, good[1], "--model", shared.fp32_model, "--save-json", out)
    assert result.exit_code == 1
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 4
    errors = {r["source"]: r["error"] for r in records if "error" in r}
    assert set(errors) == {str(bad), str(missing)}
    assert "no such file" in errors[str(missing)]
    assert sum("detections" in r for r in records) == 2
    assert "2 failed" in result.output


def test_predict_save_dir_writes_annotated_copies(shared, tmp_path):
    result = _invoke("predict", *shared.coco96_images[:3], "--model", shared.int8_model, "--save-dir", tmp_path / "vis")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == sorted(p.name for p in shared.coco96_images[:3])


def test_predict_classes_filter(shared, tmp_path):
    out = tmp_path / "p.jsonl"
    images = shared.coco96 / "images"
    _invoke("predict", images, "--model", shared.int8_model, "--classes", "0", "--save-json", out, "-q")
    lines = out.read_text(encoding="utf-8").splitlines()
    classes = {d["class_id"] for line in lines for d in json.loads(line).get("detections", [])}
    assert classes == {0}


@pytest.mark.parametrize("form", ["folder", "xml", "onnx"])
def test_info_on_every_model_form(shared, form, request):
    model = {"folder": shared.fp32_model, "xml": shared.int8_model / "yolov8n.xml"}.get(form)
    if form == "onnx":
        model = request.getfixturevalue("onnx_model")
    result = _invoke("info", "--model", model, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model"]["head"] == "raw"
    assert report["model"]["num_classes"] == 80
    assert report["compiled"]["optimal_requests"] >= 1
    assert report["compiled"]["input_shape"] == [1, 640, 640, 3]
    text = _invoke("info", "--model", model).output
    for key in ("input", "output", "classes", "streams", "optimal requests", "precision"):
        assert key in text


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["predict", "IMG", "--model", "/nonexistent/model"], 3, "model not found"),
        (["predict", "IMG", "--model", "FP32", "--device", "GPU"], 3, "not available"),
        (["predict", "IMG", "--model", "FP32", "--mode", "fastest"], 2, "mode 'fastest' is not one of"),
        (["predict", "IMG", "--model", "FP32", "--conf", "2"], 2, "conf must be within"),
        (["predict", "IMG", "--model", "FP32", "--imgsz", "100"], 2, "multiple of the model stride"),
        (["info", "--model", "EMPTYDIR"], 3, "no .xml model file"),
    ],
)
def test_user_errors_one_line_no_traceback(shared, tmp_path, args, code, message):
    subs = {"IMG": str(shared.coco96_images[0]), "FP32": str(shared.fp32_model), "EMPTYDIR": str(tmp_path)}
    argv = [subs.get(a, a) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "yolo_ov", *argv], capture_output=True, text=True,
                encoding="utf-8", errors="replace", timeout=300, check=False
    )
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr


def test_console_script_installed():
    exe = shutil.which("yolo-ov", path=str(Path(sys.executable).parent))
    assert exe is not None, "the yolo-ov console script is not installed beside this Python"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True,
            encoding="utf-8", errors="replace", timeout=60, check=False)
    assert proc.returncode == 0
    for command in ("predict", "info"):
        assert command in proc.stdout


def test_inference_path_never_imports_torch_or_ultralytics(shared):
    code = (
        "import sys, yolo_ov\n"
        f"d = yolo_ov.Detector({str(shared.fp32_model)!r})\n"
        f"r = d({str(shared.coco96_images[0])!r})\n"
        "assert len(r) > 0\n"
        "from yolo_ov.cli import app\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'ultralytics', 'nncf', 'matplotlib'})\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
            encoding="utf-8", errors="replace", timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
