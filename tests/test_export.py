"""Export and INT8 quantization: every source and precision, real models, real accuracy, bad inputs.

Tests that need Ultralytics + torch are marked ``export`` (CI installs that
extra). Mechanics tests export at 320 or calibrate on a few images; the
accuracy tests use the real settings (640, all of coco96).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import yaml
from typer.testing import CliRunner

from tests.matching import matched_fraction
from yolo_ov import Detector
from yolo_ov.cli import app
from yolo_ov.errors import CalibrationError, ConfigError, DatasetError, ExportError, MissingExtraError
from yolo_ov.eval.validate import validate
from yolo_ov.export.convert import ExportConfig, ExportWarning, export_model
from yolo_ov.export.quantize import CalibrationWarning, head_ignored_scope

COCO96_IMAGES = 96


def _xml(folder: Path) -> Path:
    (xml,) = folder.glob("*.xml")
    return xml


def _meta(folder: Path) -> dict:
    return yaml.safe_load((folder / "metadata.yaml").read_text(encoding="utf-8"))


def _fq_count(folder: Path) -> int:
    return _xml(folder).read_text(encoding="utf-8").count('type="FakeQuantize"')


def _no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")], list(parent.iterdir())


def _detections(folder: Path, images: list[Path]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    with Detector(folder) as det:
        return [(r.xyxy, r.confidence, r.class_id) for r in (det(i) for i in images)]


def _agreement(a, b) -> float:
    matched = total = 0
    for x, y in zip(a, b, strict=True):
        m, n = matched_fraction(x, y)
        matched, total = matched + m, total + n
    return matched / max(total, 1)


# -- the float model every INT8 comparison is made against --------------------------------

@pytest.fixture(scope="module")
def fp32_export(shared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fp32") / "yolov8n_openvino_model"
    return export_model(shared.pt_model, ExportConfig(precision="fp32", output=out))


@pytest.fixture(scope="module")
def fp32_export_map(fp32_export, shared) -> float:
    return validate(fp32_export, shared.coco96).map50_95


# -- .pt ----------------------------------------------------------------------------------

@pytest.mark.export
def test_pt_to_fp32_matches_ultralytics_own_export(fp32_export, shared):
    assert sorted(p.name for p in fp32_export.iterdir()) == ["metadata.yaml", "yolov8n.bin", "yolov8n.xml"]
    meta = _meta(fp32_export)
    assert meta["precision"] == "fp32" and meta["task"] == "detect" and meta["stride"] == 32
    assert meta["imgsz"] == [640, 640] and meta["names"][0] == "person" and len(meta["names"]) == 80
    assert meta["yolo_ov"]["source_format"] == "pt" and len(meta["yolo_ov"]["source_sha256"]) == 64
    assert _fq_count(fp32_export) == 0
    # same detections as the FP32 IR Ultralytics exported from the same checkpoint
    images = shared.coco96_images[:12]
    assert _agreement(_detections(fp32_export, images), _detections(shared.fp32_model, images)) >= 0.99
    # rt_info carries the facts for a bare .xml too
    model = ov.Core().read_model(_xml(fp32_export))
    assert model.get_rt_info(["yolo_ov", "precision"]).astype(str) == "fp32"
    assert model.get_rt_info(["model_info", "labels"]).astype(str).split()[0] == "person"


@pytest.mark.export
def test_export_loads_in_ultralytics(fp32_export, shared):
    from ultralytics import YOLO

    res = YOLO(fp32_export, task="detect").predict(shared.coco96_images[1], imgsz=640, verbose=False)[0]
    ours = _detections(fp32_export, [shared.coco96_images[1]])
    theirs = [(res.boxes.xyxy.numpy(), res.boxes.conf.numpy(), res.boxes.cls.numpy().astype(np.int32))]
    assert len(theirs[0][0]) > 0
    assert _agreement(ours, theirs) >= 0.99
    assert res.names[0] == "person"


@pytest.mark.export
def test_pt_to_fp16(shared, tmp_path):
    out = export_model(shared.pt_model, ExportConfig(precision="fp16", output=tmp_path / "m_openvino_model"))
    meta = _meta(out)
    assert meta["precision"] == "fp16" and meta["args"]["quantize"] == 16
    assert 'element_type="f16"' in _xml(out).read_text(encoding="utf-8")
    assert (out / "yolov8n.bin").stat().st_size < 0.6 * (shared.fp32_model / "yolov8n.bin").stat().st_size
    images = shared.coco96_images[:12]
    assert _agreement(_detections(out, images), _detections(shared.fp32_model, images)) >= 0.97


@pytest.mark.export
def test_pt_to_int8_keeps_accuracy(shared, tmp_path, fp32_export_map):
    """The Done-means command: INT8 from the .pt calibrated on coco96, mAP within 0.01 of the FP32 export."""
    with pytest.warns(CalibrationWarning, match=rf"calibrating on {COCO96_IMAGES} images .* at least 300"):
        out = export_model(shared.pt_model, ExportConfig(precision="int8", data=shared.coco96,
                                                         output=tmp_path / "yolov8n_int8_openvino_model"))
    meta = _meta(out)
    q = meta["yolo_ov"]["quantization"]
    assert meta["precision"] == "int8" and meta["args"]["quantize"] == 8
    assert q["calibration_images"] == COCO96_IMAGES and q["preset"] == "mixed" and q["ignored_head_ops"] > 20
    assert _fq_count(out) == q["fake_quantize_ops"] > 50
    int8_map = validate(out, shared.coco96).map50_95
    assert abs(int8_map - fp32_export_map) <= 0.01, (int8_map, fp32_export_map)


@pytest.mark.export
def test_dynamic_export(shared, tmp_path):
    out = export_model(shared.pt_model, ExportConfig(dynamic=True, output=tmp_path / "d_openvino_model"))
    shape = ov.Core().read_model(_xml(out)).inputs[0].get_partial_shape()
    assert shape[0].is_dynamic and shape[2].is_dynamic and shape[1].get_length() == 3
    assert _meta(out)["args"]["dynamic"] is True


# -- .onnx and IR sources -----------------------------------------------------------------

@pytest.mark.export
def test_onnx_to_ir(shared, tmp_path):
    from ultralytics import YOLO

    src = tmp_path / "src"
    src.mkdir()
    pt = src / "yolov8n.pt"
    pt.write_bytes(shared.pt_model.read_bytes())
    onnx = Path(YOLO(pt).export(format="onnx", imgsz=320, simplify=False, verbose=False))
    out = export_model(onnx, ExportConfig(output=tmp_path / "from_onnx_openvino_model"))
    meta = _meta(out)
    assert meta["yolo_ov"]["source_format"] == "onnx"
    assert meta["imgsz"] == [320, 320] and meta["names"][79] == "toothbrush"
    reference = export_model(shared.pt_model, ExportConfig(imgsz=320, output=tmp_path / "from_pt_openvino_model"))
    images = shared.coco96_images[:10]
    assert _agreement(_detections(out, images), _detections(reference, images)) >= 0.99


def test_ir_to_int8_and_head_stays_float(shared, tmp_path):
    """INT8 from an existing FP32 IR (no torch needed); mechanics on 16 calibration images."""
    with pytest.warns(CalibrationWarning, match="calibrating on 16 images"):
        out = export_model(shared.fp32_model, ExportConfig(precision="int8", data=shared.coco96 / "images",
                                                           calib_size=16, output=tmp_path / "q_openvino_model"))
    meta = _meta(out)
    assert meta["yolo_ov"]["source_format"] == "ir" and meta["precision"] == "int8"
    assert meta["yolo_ov"]["quantization"]["calibration_images"] == 16
    model = ov.Core().read_model(_xml(out))
    fq_consumers = {
        t.get_node().get_friendly_name()
        for op in model.get_ops() if op.get_type_name() == "FakeQuantize"
        for t in op.output(0).get_target_inputs()
    }
    float_head = set(head_ignored_scope(ov.Core().read_model(_xml(shared.fp32_model))))
    assert fq_consumers and not fq_consumers & float_head
    with Detector(out) as det:
        assert len(det(shared.coco96_images[1])) > 0


def test_ir_to_another_size(shared, tmp_path):
    """A static IR re-exported at 320: the baked anchors are regenerated, so the model still detects well."""
    out = export_model(shared.fp32_model, ExportConfig(imgsz=320, output=tmp_path / "s_openvino_model"))
    assert _meta(out)["imgsz"] == [320, 320]
    shape = ov.Core().read_model(_xml(out)).outputs[0].get_partial_shape()
    assert shape[2].get_length() == 2100  # 40*40 + 20*20 + 10*10 anchors
    assert validate(out, shared.coco96).map50_95 > 0.33  # YOLOv8n at 320 (vs ~0.47 at 640)


def test_head_scope_is_ultralytics_recipe(shared):
    """The structural scope equals the ops Ultralytics' exporter ignores (Sigmoid + model.22/* + dfl)."""
    model = ov.Core().read_model(_xml(shared.fp32_model))
    ops = model.get_ordered_ops()
    head = next(o.get_friendly_name() for o in reversed(ops) if o.get_type_name() == "Sigmoid").split("/", 1)[0]
    recipe = {
        o.get_friendly_name() for o in ops
        if o.get_type_name() != "Constant"
        and (o.get_type_name() == "Sigmoid" or o.get_friendly_name().startswith((f"{head}/", f"{head}.dfl")))
    }
    ours = set(head_ignored_scope(model))
    assert recipe <= ours
    extra = ours - recipe
    types = {o.get_friendly_name(): o.get_type_name() for o in ops}
    assert all(types[n] in ("Gather", "Convert", "Concat", "Squeeze", "Unsqueeze") for n in extra), extra
    assert any(types[n] == "Convolution" for n in ours)  # the DFL's fixed 1x1 conv, not a learned one


def test_reexport_replaces_and_keeps_output_atomic(shared, tmp_path):
    out = tmp_path / "m_openvino_model"
    first = export_model(shared.fp32_model, ExportConfig(precision="fp16", output=out))
    assert _meta(first)["precision"] == "fp16"
    second = export_model(shared.fp32_model, ExportConfig(precision="fp32", output=out))
    assert second == out.resolve() and _meta(second)["precision"] == "fp32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_openvino_model"]


# -- bad input ----------------------------------------------------------------------------

def test_missing_ultralytics_extra_is_one_line(shared, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import ultralytics -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'yolo-ov\[export\]'") as info:
        export_model(shared.pt_model, ExportConfig(output=tmp_path / "x_openvino_model"))
    assert info.value.extra == "export" and info.value.package == "ultralytics"
    _no_leftovers(tmp_path, "x_openvino_model")
    result = CliRunner().invoke(app, ["export", str(shared.pt_model), "-o", str(tmp_path / "y_openvino_model")])
    assert result.exit_code == 5
    assert result.output.strip().count("\n") == 0 and "yolo-ov[export]" in result.output


@pytest.mark.export
def test_pt_of_a_task_yolo_ov_does_not_run(tmp_path):
    """Every detect/segment/pose/obb/classify checkpoint exports (tests/test_export_tasks.py); a depth model
    does not, with one line naming its task, and leaves nothing behind."""
    from ultralytics import YOLO

    depth = tmp_path / "depth.pt"
    YOLO("yolo26n-depth.yaml").save(depth)
    with pytest.raises(ExportError, match="a 'depth' model; yolo-ov exports detect, segment, pose, obb, classify"):
        export_model(depth, ExportConfig(output=tmp_path / "d_openvino_model"))
    _no_leftovers(tmp_path, "d_openvino_model")


@pytest.mark.export
def test_corrupt_pt_fails_and_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match=r"bad\.pt: not an Ultralytics YOLO checkpoint"):
        export_model(bad, ExportConfig(output=tmp_path / "b_openvino_model"))
    _no_leftovers(tmp_path, "b_openvino_model")


def test_failures_leave_no_folder(shared, tmp_path):
    # already INT8
    with pytest.raises(ExportError, match="already quantized"):
        export_model(shared.int8_model, ExportConfig(precision="int8", data=shared.coco96,
                                                     output=tmp_path / "a_openvino_model"))
    _no_leftovers(tmp_path, "a_openvino_model")
    # a static graph cannot become dynamic (its anchors are baked in): an error, not a broken model
    with pytest.raises(ExportError, match="exported for a fixed input size"):
        export_model(shared.fp32_model, ExportConfig(dynamic=True, output=tmp_path / "b_openvino_model"))
    _no_leftovers(tmp_path, "b_openvino_model")
    with pytest.raises(ConfigError, match="multiple of the model stride"):
        export_model(shared.fp32_model, ExportConfig(imgsz=336, output=tmp_path / "b_openvino_model"))
    _no_leftovers(tmp_path, "b_openvino_model")
    # a calibration folder without images
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no image files"):
        export_model(shared.fp32_model, ExportConfig(precision="int8", data=tmp_path / "empty",
                                                     output=tmp_path / "c_openvino_model"))
    _no_leftovers(tmp_path, "c_openvino_model")
    # calibration images that are all unreadable
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        with pytest.raises(CalibrationError, match="none of the 1 calibration images"):
            export_model(shared.fp32_model, ExportConfig(precision="int8", data=tmp_path / "junk",
                                                         output=tmp_path / "d_openvino_model"))
    _no_leftovers(tmp_path, "d_openvino_model")


def test_bad_configs_and_outputs(shared, tmp_path):
    with pytest.raises(ConfigError, match="INT8 export needs calibration images"):
        ExportConfig(precision="int8")
    with pytest.raises(ConfigError, match="precision 'int4' is not one of"):
        ExportConfig(precision="int4")
    with pytest.raises(ConfigError, match="max_drop applies to INT8"):
        ExportConfig(max_drop=0.01)
    with pytest.raises(ConfigError, match="max_drop must be within"):
        ExportConfig(precision="int8", data=tmp_path, max_drop=5)
    with pytest.raises(ExportError, match="no such model"):
        export_model(tmp_path / "missing.pt", ExportConfig(output=tmp_path / "o"))
    (tmp_path / "model.tflite").write_bytes(b"x")
    with pytest.raises(ExportError, match="unsupported model file"):
        export_model(tmp_path / "model.tflite", ExportConfig(output=tmp_path / "o"))
    busy = tmp_path / "busy_openvino_model"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ExportError, match="holds files other than a model"):
        export_model(shared.fp32_model, ExportConfig(output=busy))
    assert (busy / "notes.txt").read_text(encoding="utf-8") == "mine"
    with pytest.raises(ExportError, match="the source model's folder"):
        export_model(shared.fp32_model, ExportConfig(output=shared.fp32_model))
    with pytest.warns(ExportWarning, match="only recognises OpenVINO folders named"):
        export_model(shared.fp32_model, ExportConfig(output=tmp_path / "plain"))


def _small_dataset(shared, root: Path, n: int) -> Path:
    """The first ``n`` coco96 images (symlinked) with their labels: a labelled set small enough to iterate on."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for image in shared.coco96_images[:n]:
        (root / "images" / image.name).symlink_to(image)
        label = shared.coco96 / "labels" / f"{image.stem}.txt"
        if label.exists():
            (root / "labels" / label.name).symlink_to(label)
    names = yaml.safe_load((shared.coco96 / "data.yaml").read_text(encoding="utf-8"))["names"]
    (root / "data.yaml").write_text(yaml.safe_dump({"val": "images", "names": names}), encoding="utf-8")
    return root


@pytest.mark.slow
@pytest.mark.export
def test_accuracy_controlled_int8(shared, tmp_path):
    """--max-drop: NNCF reverts layers to float until the (f32-measured) mAP drop is within bounds."""
    data = _small_dataset(shared, tmp_path / "small", 24)
    f = export_model(shared.pt_model, ExportConfig(imgsz=320, output=tmp_path / "f_openvino_model"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        q = export_model(f, ExportConfig(precision="int8", data=data, calib_size=24, max_drop=0.005,
                                         output=tmp_path / "q_openvino_model"))
    rec = _meta(q)["yolo_ov"]["quantization"]
    assert rec["method"] == "nncf.quantize_with_accuracy_control" and rec["max_drop"] == 0.005
    assert rec["nncf_f32_float_map50_95"] - rec["nncf_f32_int8_map50_95"] <= 0.005
    # re-measured as the runtime runs it (host pre-processing vs in-graph: equal up to bf16 rounding)
    assert rec["runtime_float_map50_95"] == pytest.approx(validate(f, data).map50_95, abs=0.003)
    assert rec["runtime_int8_map50_95"] == pytest.approx(validate(q, data).map50_95, abs=0.003)
    assert 0 < _fq_count(q) == rec["fake_quantize_ops"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        plain = export_model(f, ExportConfig(precision="int8", data=data, calib_size=24,
                                             output=tmp_path / "p_openvino_model"))
    if rec["nncf_f32_float_map50_95"] - rec["nncf_f32_initial_int8_map50_95"] > 0.005:
        assert _fq_count(q) < _fq_count(plain)  # layers went back to float to meet max_drop
    else:
        assert _fq_count(q) == _fq_count(plain)  # nothing needed reverting
