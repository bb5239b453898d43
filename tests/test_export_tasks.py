"""Export and INT8 for every task: Ultralytics builds the graph, the ignored scope comes from its structure.

No trained FP32 or ``.pt`` form of the segment/pose/OBB/classify models is
available here, so these tests use Ultralytics' own architectures built from
its model YAMLs with random weights (structure only): what matters is the
graph each head exports to, and which of its operations INT8 keeps in float.
The reference for that is Ultralytics' exporter (``export_openvino``): every
``Sigmoid``, plus every operation named directly under the head module or its
DFL; the structural scope must hold all of those and stop at the learned
convolutions, so the backbone and the head's convolutions are quantized.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolo_ov.export.convert import ExportConfig, export_model
from yolo_ov.export.quantize import count_fake_quantize, head_ignored_scope

pytestmark = pytest.mark.export

TASK_YAMLS = {"segment": "yolo11n-seg.yaml", "pose": "yolo11n-pose.yaml", "obb": "yolo11n-obb.yaml",
              "classify": "yolo11n-cls.yaml"}


@pytest.fixture(scope="module")
def task_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One ``.pt`` per task, Ultralytics' architecture from its YAML with random weights."""
    pytest.importorskip("ultralytics", reason="needs the export extra: pip install 'yolo-ov[export]'")
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("task_pts")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for task, name in TASK_YAMLS.items():
            model = YOLO(name)
            assert model.task == task
            path = root / name.replace(".yaml", ".pt")
            model.save(str(path))
            out[task] = path
    return out


@pytest.fixture(scope="module")
def task_irs(task_checkpoints, tmp_path_factory) -> dict[str, Path]:
    """Each checkpoint exported to an FP32 OpenVINO folder by yolo-ov (small inputs: structure only)."""
    root = tmp_path_factory.mktemp("task_irs")
    return {
        task: export_model(pt, ExportConfig(imgsz=224 if task == "classify" else 320,
                                            output=root / f"{pt.stem}_openvino_model"))
        for task, pt in task_checkpoints.items()
    }


def _read(folder: Path):
    from yolo_ov.runtime.core import get_core

    return get_core().read_model(str(next(folder.glob("*.xml"))))


def _ultralytics_scope(model) -> set[str]:
    """The ops Ultralytics' ``export_openvino`` passes to NNCF's IgnoredScope (its rule, re-stated), less
    constants (folded anchors and indices keep their op's name; nothing quantizes them)."""
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() != "Constant"]
    sigmoids = [op.get_friendly_name() for op in ops if op.get_type_name() == "Sigmoid"]
    if not sigmoids:
        return set()
    head = sigmoids[-1].split("/", 1)[0]
    return {op.get_friendly_name() for op in ops
            if op.get_type_name() == "Sigmoid" or op.get_friendly_name().startswith((f"{head}/", f"{head}.dfl"))}


def _ops(model, names: set[str]) -> list:
    return [op for op in model.get_ordered_ops() if op.get_friendly_name() in names]


def _out_channels(op) -> int:
    shape = op.input_value(1).get_partial_shape()
    return shape[0].get_length() if shape.rank.is_static and shape[0].is_static else -1


@pytest.mark.parametrize("task", list(TASK_YAMLS))
def test_export_every_task_and_its_metadata(task, task_irs):
    folder = task_irs[task]
    meta = yaml.safe_load((folder / "metadata.yaml").read_text(encoding="utf-8"))
    assert meta["task"] == task and meta["precision"] == "fp32"
    assert meta["imgsz"] == ([224, 224] if task == "classify" else [320, 320])
    if task == "pose":
        assert meta["kpt_shape"] == [17, 3]  # Ultralytics needs it to load the model, the head to decode it
    from yolo_ov import Detector

    with Detector(folder, conf=0.0) as det:  # random weights: any output will do, the head must decode it
        assert det.model_info.task == task
        frame = np.full((240, 320, 3), 128, np.uint8)
        result = det(frame)
        if task == "classify":
            assert len(result.top5) == 5
        else:
            key = {"segment": "masks", "pose": "keypoints", "obb": "xywhr"}[task]
            assert key in result.data


@pytest.mark.parametrize("task", list(TASK_YAMLS))
def test_ignored_scope_holds_ultralytics_float_ops(task, task_irs):
    model = _read(task_irs[task])
    ours = set(head_ignored_scope(model))
    theirs = _ultralytics_scope(model)
    assert theirs <= ours, sorted(theirs - ours)[:10]
    # the backbone and the head's convolutions are quantized: no convolution with many outputs is ignored
    convs = [op for op in _ops(model, ours) if op.get_type_name() in ("Convolution", "GroupConvolution")]
    assert all(_out_channels(op) == 1 for op in convs), [(op.get_friendly_name(), _out_channels(op)) for op in convs]
    kinds = {op.get_type_name() for op in _ops(model, ours)}
    if task == "segment":
        # the mask-coefficient rows and the prototypes' last step (its activation) stay float
        proto_out = model.outputs[1].get_node().input_value(0).get_node()
        assert proto_out.get_friendly_name() in ours
        head_concat = model.outputs[0].get_node().input_value(0).get_node()
        assert head_concat.get_type_name() == "Concat" and head_concat.get_friendly_name() in ours
        coefficient_rows = [v.get_node() for v in head_concat.input_values()][-1]
        assert coefficient_rows.get_friendly_name() in ours  # the concatenated 32 mask coefficients
    elif task == "pose":
        # keypoint decode: x, y scaled by stride around the anchors, visibility through a sigmoid
        sigmoids = [op for op in model.get_ordered_ops() if op.get_type_name() == "Sigmoid"]
        assert len(sigmoids) >= 2 and all(op.get_friendly_name() in ours for op in sigmoids)
        assert {"Multiply", "Add"} <= kinds
    elif task == "obb":
        # the angle branch: its sigmoid, the angle arithmetic and the rotation (cos/sin) of the box decode
        assert {"Cos", "Sin", "Sigmoid"} <= kinds
        angle_convs = [op for op in convs if "dfl" not in op.get_friendly_name()]
        assert angle_convs, "the one-channel angle convolutions stay float with their decode"
    elif task == "classify":
        assert kinds == {"Softmax"}  # Ultralytics ignores nothing there; the softmax alone stays float


@pytest.mark.slow
def test_int8_segment_from_pt_keeps_head_float_and_loads_in_ultralytics(task_checkpoints, shared, tmp_path):
    """A segmentation .pt to INT8: calibrated through the head's own pre-processing, its scope unquantized."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for image in shared.coco96_images[:8]:
        shutil.copy(image, calib / image.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 8 images: the "at least 300" warning is expected
        config = ExportConfig(precision="int8", imgsz=320, data=calib, output=tmp_path / "seg_int8_openvino_model")
        out = export_model(task_checkpoints["segment"], config)
    model = _read(out)
    assert count_fake_quantize(model) > 50
    meta = yaml.safe_load((out / "metadata.yaml").read_text(encoding="utf-8"))
    quant = meta["yolo_ov"]["quantization"]
    assert meta["task"] == "segment" and quant["calibration_images"] == 8 and quant["ignored_head_ops"] >= 30
    # nothing NNCF was told to ignore got a quantizer on its inputs
    float_config = ExportConfig(imgsz=320, output=tmp_path / "seg_openvino_model")
    float_model = _read(export_model(task_checkpoints["segment"], float_config))
    scope = set(head_ignored_scope(float_model))
    fed = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() in scope
           and any(v.get_node().get_type_name() == "FakeQuantize" for v in op.input_values())]
    assert not fed, fed[:5]
    pytest.importorskip("ultralytics")
    from ultralytics import YOLO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = YOLO(str(out), task="segment").predict(str(shared.coco96_images[0]), imgsz=320, conf=0.0,
                                                     verbose=False)
    assert res[0].masks is not None or res[0].boxes is not None



@pytest.mark.slow
@pytest.mark.parametrize("task", ["pose", "obb", "classify"])
def test_int8_from_ir_keeps_each_head_float(task, task_irs, shared, tmp_path):
    """FP32 IR -> INT8 (the ONNX/IR path, no torch): each head's scope gets no quantizer, metadata survives."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for image in shared.coco96_images[:6]:
        shutil.copy(image, calib / image.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export_model(task_irs[task], ExportConfig(precision="int8", data=calib,
                                                        output=tmp_path / f"{task}_int8_openvino_model"))
    model = _read(out)
    scope = set(head_ignored_scope(_read(task_irs[task])))
    assert count_fake_quantize(model) > 20
    fed = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() in scope
           and any(v.get_node().get_type_name() == "FakeQuantize" for v in op.input_values())]
    assert not fed, fed[:5]
    meta = yaml.safe_load((out / "metadata.yaml").read_text(encoding="utf-8"))
    assert meta["task"] == task and meta["precision"] == "int8"
    assert meta["yolo_ov"]["quantization"]["ignored_head_ops"] == len(scope)
    if task == "pose":
        assert meta["kpt_shape"] == [17, 3]


@pytest.mark.slow
def test_accuracy_control_measures_a_classifier_by_top1(task_checkpoints, shared, tmp_path):
    """--max-drop on a classifier: the labelled split is class folders, the bounded figure top-1."""
    from yolo_ov.eval.dataset import load_classify_dataset, match_classes
    from yolo_ov.export.quantize import _MapValidation

    data = tmp_path / "cls"
    for k, image in enumerate(shared.coco96_images[:12]):
        folder = data / "val" / str(k % 3)  # Ultralytics names a YAML-built classifier's classes 0, 1, ...
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export_model(task_checkpoints["classify"], ExportConfig(
            precision="int8", data=data, max_drop=0.5, output=tmp_path / "cls_int8_openvino_model"))
    quant = yaml.safe_load((out / "metadata.yaml").read_text(encoding="utf-8"))["yolo_ov"]["quantization"]
    assert quant["method"] == "nncf.quantize_with_accuracy_control" and quant["accuracy_metric"] == "top1"
    for key in ("nncf_f32_float_map50_95", "runtime_float_map50_95", "runtime_int8_map50_95"):
        assert 0.0 <= quant[key] <= 1.0  # top-1 of the random-weight model, as the primary figure
    # the figure NNCF bounded is top-1 over the class folders, mapped to the model's class names
    from yolo_ov.heads import select_head
    from yolo_ov.runtime.core import get_core
    from yolo_ov.runtime.model import inspect_model

    model = _read(out)
    info = inspect_model(model, next(out.glob("*.xml")))
    ds = match_classes(load_classify_dataset(data), info.names)
    assert sorted(set(ds.class_id.tolist())) == [0, 1, 2]
    value = _MapValidation(ds, info.imgsz, select_head(info))(get_core().compile_model(model, "CPU"), range(len(ds)))
    assert value == pytest.approx(quant["runtime_int8_map50_95"], abs=1e-9)


@pytest.mark.parametrize("task", ["segment", "obb"])
def test_scope_from_onnx_graphs(task, task_checkpoints, tmp_path):
    """From ONNX (names are ONNX's, not Ultralytics' module paths) the structural walk finds the same head parts."""
    from ultralytics import YOLO

    pt = tmp_path / task_checkpoints[task].name
    shutil.copy(task_checkpoints[task], pt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx = Path(YOLO(str(pt)).export(format="onnx", imgsz=320, simplify=False, verbose=False))
    folder = export_model(onnx, ExportConfig(output=tmp_path / f"{task}_onnx_openvino_model"))
    model = _read(folder)
    scope = set(head_ignored_scope(model))
    ops = _ops(model, scope)
    convs = [op for op in ops if op.get_type_name() in ("Convolution", "GroupConvolution")]
    assert all(_out_channels(op) == 1 for op in convs)
    kinds = {op.get_type_name() for op in ops}
    assert {"Softmax", "Sigmoid"} <= kinds  # the DFL and the class scores
    if task == "segment":
        head_concat = model.outputs[0].get_node().input_value(0).get_node()
        assert head_concat.get_friendly_name() in scope
        assert [v.get_node() for v in head_concat.input_values()][-1].get_friendly_name() in scope
        assert model.outputs[1].get_node().input_value(0).get_node().get_friendly_name() in scope
    else:
        assert {"Cos", "Sin"} <= kinds
