"""Model forms, metadata, head detection and the clear errors around them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.tiny_models import end2end_model, map_model, raw_head_model, save
from yolo_ov import ConfigError, Detector, DeviceError, HeadType, ModelLoadError
from yolo_ov.default_model import default_model_path
from yolo_ov.runtime.core import validate_device
from yolo_ov.runtime.model import resolve_model_path


def test_folder_and_xml_load_the_same_model(shared, fp32_detector, image_path):
    xml = shared.fp32_model / "yolov8n.xml"
    with Detector(xml) as det:
        assert det.model_info.path == xml
        assert det.model_info.names_source == "metadata.yaml"
        np.testing.assert_array_equal(det(image_path).xyxy, fp32_detector(image_path).xyxy)


def test_model_info_from_metadata(fp32_detector):
    info = fp32_detector.model_info
    assert info.head is HeadType.RAW
    assert info.num_classes == 80 and info.names[0] == "person" and info.names[79] == "toothbrush"
    assert info.imgsz == (640, 640) and info.stride == 32 and info.task == "detect"
    assert info.input_shape == "[1,3,640,640]" and info.output_shape == "[1,84,8400]"


def test_names_from_rt_info_when_metadata_yaml_missing(shared, tmp_path):
    for f in ("yolov8n.xml", "yolov8n.bin"):
        shutil.copy(shared.int8_model / f, tmp_path / f)
    with Detector(tmp_path / "yolov8n.xml", warmup=False) as det:
        assert det.model_info.names_source == "rt_info"
        assert det.names[9] == "traffic light"  # rt_info stores 'traffic_light'


def test_compiled_info_reports_openvino_choices(fp32_detector):
    c = fp32_detector.compiled_info
    assert c.mode == "latency" and c.device == "CPU"
    assert c.num_streams == 1 and c.optimal_requests >= 1
    assert c.inference_precision in {"f32", "bf16", "f16"}
    assert c.execution_devices == ["CPU"]
    assert c.input_shape == (1, 640, 640, 3)
    assert fp32_detector.load_timings.compile_ms > 0 and fp32_detector.load_timings.first_inference_ms > 0


def test_throughput_mode_compiles_several_streams(shared):
    """Every machine here has 2 cores: the THROUGHPUT hint makes one stream per core,
    the LATENCY hint one stream for the whole CPU."""
    with Detector(shared.int8_model, mode="throughput", warmup=False) as det:
        tput = det.compiled_info
    with Detector(shared.int8_model, mode="latency", warmup=False) as det:
        lat = det.compiled_info
    assert tput.mode == "throughput" and lat.mode == "latency"
    assert lat.num_streams == 1
    assert tput.num_streams is not None and tput.num_streams >= 2
    assert tput.optimal_requests >= tput.num_streams


def test_imgsz_override_reshapes(shared, image_path):
    with Detector(shared.fp32_model, imgsz=(384, 640), warmup=False) as det:
        assert det.input_hw == (384, 640)
        assert len(det(image_path)) > 0


def test_onnx_model_loads_and_detects(onnx_model, image_path, fp32_detector):
    with Detector(onnx_model, warmup=False) as det:
        assert det.model_info.head is HeadType.RAW
        assert det.model_info.names[0] == "person"
        assert det.model_info.names_source != "default COCO names"
        assert [det.names[int(c)] for c in det(image_path).class_id][:2] == fp32_detector(image_path).class_names[:2]


def test_end2end_head(tmp_path):
    dets = np.zeros((300, 6), np.float32)
    dets[0] = [8, 16, 40, 48, 0.9, 2]
    dets[1] = [0, 0, 10, 10, 0.1, 1]
    xml = save(end2end_model(dets), tmp_path)
    with Detector(xml, imgsz=64) as det:
        assert det.model_info.head is HeadType.END2END
        assert det.model_info.names_source == "default COCO names"
        result = det(np.zeros((128, 128, 3), np.uint8))
    assert result.class_id.tolist() == [2]
    np.testing.assert_allclose(result.xyxy[0], [16, 32, 80, 96])


def test_raw_head_without_names_falls_back_to_coco(tmp_path):
    raw = np.zeros((6, 10), np.float32)  # 2 classes, 10 anchors
    raw[:4, 0] = [32, 32, 10, 10]
    raw[5, 0] = 0.8
    xml = save(raw_head_model(raw), tmp_path)
    with Detector(xml) as det:
        assert det.model_info.num_classes == 2
        r = det(np.zeros((64, 64, 3), np.uint8))
    assert r.class_names == ["bicycle"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t, s: t / "nothing_here", "model not found"),
        (lambda t, s: t, "no .xml model file"),
        (lambda t, s: save(map_model(), t), "not a YOLO model: expected a 2-D or 3-D first output"),
        (lambda t, s: (t / "m.xml").write_text("<net>broken",
            encoding="utf-8") and t / "m.xml", "weights file m.bin is missing"),
        (lambda t, s: ((t / "m.xml").write_text("<net>broken",
            encoding="utf-8"), (t / "m.bin").write_bytes(b"x")) and t / "m.xml",
         "OpenVINO cannot read this model"),
        (lambda t, s: s.pt_model, "a PyTorch checkpoint cannot be run directly"),
        (lambda t, s: (t / "m.tflite").write_bytes(b"x") and t / "m.tflite", "OpenVINO cannot read this model"),
        (lambda t, s: (t / "m.pb").write_bytes(b"x") and t / "m.pb", "unsupported model file"),
    ],
    ids=["missing", "folder-without-xml", "pixel-map", "missing-bin", "corrupt-xml", "pt", "corrupt-tflite",
         "other-suffix"],
)
def test_bad_models_give_one_line_errors(tmp_path, shared, make, message):
    path = make(tmp_path, shared)
    with pytest.raises(ModelLoadError) as info:
        Detector(path, warmup=False)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_not_a_yolo_model_names_the_shapes(tmp_path):
    xml = save(map_model(), tmp_path)
    with pytest.raises(ModelLoadError, match=r"outputs \[1,1,64,64\]"):
        Detector(xml, warmup=False)


@pytest.mark.parametrize(
    ("device", "ok"),
    [("CPU", True), ("AUTO", True), ("AUTO:CPU", True), ("MULTI:CPU", True), ("HETERO:CPU", True),
     ("AUTO:-CPU", True), ("GPU", False), ("NPU", False), ("AUTO:GPU,CPU", False), ("MULTI", False), ("CPU:0", False)],
)
def test_validate_device(device, ok):
    if ok:
        validate_device(device, ["CPU"])
    else:
        with pytest.raises(DeviceError):
            validate_device(device, ["CPU"])


def test_unavailable_device_error_lists_what_is_there(shared):
    with pytest.raises(DeviceError, match=r"'GPU' is not available.*available: CPU"):
        Detector(shared.fp32_model, device="GPU")


def test_auto_device_runs(shared, image_path):
    with Detector(shared.int8_model, device="AUTO", warmup=False) as det:
        assert len(det(image_path)) > 0


def test_conflicting_config_is_an_error(shared):
    from yolo_ov import RuntimeConfig

    with pytest.raises(ConfigError, match="not both"):
        Detector(shared.fp32_model, runtime=RuntimeConfig(), mode="throughput")


def test_default_model_from_env(shared, monkeypatch):
    monkeypatch.setenv("YOLO_OV_MODEL", str(shared.fp32_model))
    assert default_model_path() == shared.fp32_model / "yolov8n.xml"


def test_default_model_from_user_cache(shared, monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_OV_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "models" / "yolov8n_openvino_model"
    shutil.copytree(shared.fp32_model, cached)
    assert default_model_path() == cached / "yolov8n.xml"


def test_no_model_given_is_a_clear_error_without_a_default():
    with pytest.raises(ModelLoadError, match="no model given"):
        resolve_model_path(None)


def test_default_model_offline_gives_one_clear_line(monkeypatch, tmp_path):
    import yolo_ov.default_model as default_mod

    monkeypatch.setenv("YOLO_OV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(default_mod, "DEFAULT_WEIGHTS_URL", "http://127.0.0.1:9/yolov8n.pt")  # nothing listens
    with pytest.raises(ModelLoadError) as info:
        default_model_path()
    text = str(info.value)
    assert "--model" in text and "YOLO_OV_MODEL" in text and "\n" not in text
    assert ".tflite" in text  # every model kind --model takes is named
    assert not (tmp_path / "models" / "yolov8n.pt").exists()
    assert not list((tmp_path / "models").glob("*.part"))


def test_a_closed_detector_says_it_is_closed(shared, image_path):
    from yolo_ov import InferenceError

    det = Detector(shared.int8_model, mode="throughput", warmup=False)
    det.close()
    det.close()  # idempotent
    with pytest.raises(InferenceError, match="closed"):
        det(image_path)
    with pytest.raises(ConfigError, match="closed"):
        det.submit(image_path)
    with pytest.raises(ConfigError, match="closed"):
        det.stream([image_path])


def test_class_ids_the_model_lacks_are_a_usage_error(shared):
    with pytest.raises(ConfigError, match=r"classes \[80, 999\] do not exist in this model: its class ids are 0-79"):
        Detector(shared.int8_model, classes=[0, 80, 999], warmup=False)
