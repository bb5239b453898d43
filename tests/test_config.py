"""Configuration objects validate themselves and round-trip through JSON."""

from __future__ import annotations

import json

import pytest

from yolo_ov import ConfigError, DetectConfig, Mode, Precision, RuntimeConfig, load_runtime_config
from yolo_ov.config import default_cache_dir


def test_runtime_defaults_and_properties(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_OV_CACHE_DIR", str(tmp_path))
    cfg = RuntimeConfig()
    assert cfg.mode is Mode.LATENCY and cfg.device == "CPU" and cfg.enable_mmap
    assert cfg.resolved_cache_dir == tmp_path / "ov_cache"
    assert cfg.ov_properties() == {"PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(tmp_path / "ov_cache")}


def test_overrides_map_to_openvino_properties():
    cfg = RuntimeConfig(mode="throughput", device="auto:gpu,cpu", cache_dir=None, num_streams=2,
                        inference_num_threads=1, inference_precision="fp16")
    assert cfg.device == "AUTO:GPU,CPU"
    assert cfg.inference_precision is Precision.F16
    assert cfg.ov_properties() == {
        "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "1",
        "INFERENCE_PRECISION_HINT": "f16",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "fast"}, "mode 'fast' is not one of"),
        ({"device": ""}, "device must be"),
        ({"num_streams": 0}, "num_streams must be a positive integer"),
        ({"batch": -1}, "batch must be"),
        ({"inference_precision": "int4"}, "inference_precision"),
        ({"imgsz": 16}, "at least 32"),
        ({"imgsz": "big"}, "imgsz must be"),
    ],
)
def test_runtime_config_rejects(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RuntimeConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"conf": 1.5}, "conf"), ({"iou": -0.1}, "iou"), ({"max_det": 0}, "max_det"), ({"classes": [-1]}, "classes")],
)
def test_detect_config_rejects(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DetectConfig(**kwargs)


def test_runtime_config_json_round_trip(tmp_path):
    cfg = RuntimeConfig(mode="throughput", num_streams=2, num_requests=4, imgsz=(384, 640), cache_dir=tmp_path)
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"runtime": cfg.to_dict(), "measured": {"fps": 1.0}}), encoding="utf-8")
    assert load_runtime_config(path) == cfg
    assert load_runtime_config(path, device="AUTO").device == "AUTO"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON config"),
        ('{"moed": "latency"}', "unknown runtime setting"),
        ("[1]", "JSON object"),
    ],
)
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_runtime_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_runtime_config(tmp_path / "none.json")


def test_default_cache_dir_respects_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("YOLO_OV_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "yolo-ov"


PUBLIC_API = {
    "CalibrationError", "CompiledInfo", "ConfigError", "DatasetError", "DetectConfig", "Detections", "Detector",
    "DeviceError", "ExportError", "Failure", "HeadType", "InferenceError", "InputError", "LoadTimings",
    "MissingExtraError", "Mode", "ModelInfo", "ModelLoadError", "Precision", "RuntimeConfig", "Timings",
    "YoloOvError", "__version__", "available_devices", "load_runtime_config",
    # the engine issue: submit(), the engine contract and its fake, all outputs described
    "Engine", "FakeEngine", "OverloadedError", "PipelineConfig", "Specialize", "TensorSpec",
    # the reliability issue: an output that cannot be written (exit 2 in the CLI)
    "OutputError",    # issue 21: sliced inference settings (SAHI's)
    "SliceConfig",
}


def test_public_api_is_pinned():
    """Adding to or removing from the public API is a decision: update this list with it."""
    import yolo_ov

    assert set(yolo_ov.__all__) == PUBLIC_API
    for name in yolo_ov.__all__:
        assert hasattr(yolo_ov, name), name
