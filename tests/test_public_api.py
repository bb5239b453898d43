"""The public API is pinned: what ``yolo_ov`` and its documented subpackages export (httpx's way).

Adding a name to, or removing one from, an ``__all__`` below is a decision about
the public API: make it here, with the change. Each name must also exist (a
lazily provided one, such as the server's FastAPI app, may need its extra).
"""

from __future__ import annotations

import importlib

import pytest

from yolo_ov.errors import MissingExtraError

PUBLIC = {
    "yolo_ov": [
        "CalibrationError", "Classification", "CompiledInfo", "ConfigError", "DatasetError", "DetectConfig",
        "Detections", "Detector", "DeviceError", "Engine", "ExportError", "Failure", "FakeEngine", "HeadType",
        "InferenceError", "InputError", "LoadTimings", "MissingExtraError", "Mode", "ModelInfo", "ModelLoadError",
        "OutputError", "OverloadedError", "PipelineConfig", "Precision", "RuntimeConfig", "SliceConfig", "Specialize",
        "TensorSpec", "Timings", "YoloOvError", "__version__", "available_devices", "load_runtime_config",
    ],
    "yolo_ov.runtime": [
        "CompiledInfo", "Engine", "FakeEngine", "HeadType", "LoadTimings", "ModelInfo", "OpenVINOEngine",
        "TensorSpec", "available_devices", "load",
    ],
    "yolo_ov.pipeline": [
        "DEFAULT_WORKERS", "FanOut", "Part", "Pipeline", "PipelineConfig", "RunStats", "SlotKeeper", "Specialize",
        "StreamRun", "SubmitStats",
    ],
    "yolo_ov.results": [
        "DATA_FORMATTERS", "DATA_OFFSETS", "Classification", "Detections", "Failure", "Result", "Timings",
    ],
    "yolo_ov.export": [
        "PRECISIONS", "ExportConfig", "ExportWarning", "default_output", "export_model", "place_model_folder",
    ],
    "yolo_ov.serve": [
        "ModelSpec", "ServeConfig", "ServeState", "create_app", "model_spec", "models_from", "require_extra",
    ],
    "yolo_ov.track": [
        "Counters", "FrameTracks", "Line", "LiveStreams", "TrackRun", "TrackedObjects", "Tracker", "TrackerConfig",
        "Trails", "Zone", "frame_agreement", "id_counter", "idf1", "load_tracker_config", "track",
    ],
    "yolo_ov.ray": [
        "BatchConfig", "BatchResult", "Scaling", "build_app", "connect", "deployment", "driver_model", "map_detections",
        "predict_dataset", "require_extra", "run", "ship_model", "shutdown",
    ],
    "yolo_ov.watch": [
        "BoardConfig", "CameraBoard", "CameraConfig", "CameraInfo", "CameraObserver", "CameraStats", "WatchConfig",
        "WatchService", "load_watch_config",
    ],
    "yolo_ov.bench": [
        "SCHEMA_VERSION", "BenchReport", "LatencyStats", "Measurement", "ModeResult", "StartTimes", "load_inputs",
        "machine_facts", "markdown_summary", "measure_end_to_end", "measure_model_only", "measure_startup",
        "run_bench", "synthetic_frames", "write_report", "write_tune_report",
    ],
    "yolo_ov.bench.serve_sweep": [
        "LatencySummary", "ServerTimes", "StepResult", "SweepConfig", "SweepReport", "Window", "is_stable",
        "run_sweep",
    ],
    "yolo_ov.bench.serve_report": ["HEADERS", "csv_rows", "markdown_table", "table_rows", "write_csv", "write_plot"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_pinned(module):
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module]), f"{module}.__all__ changed: update the pin with it"
    assert len(set(mod.__all__)) == len(mod.__all__), "a name listed twice"


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_exported_name_exists(module):
    mod = importlib.import_module(module)
    for name in mod.__all__:
        try:
            getattr(mod, name)  # an AttributeError here is a name exported but missing
        except MissingExtraError:  # provided on demand, and only when its extra is installed
            continue


def test_one_engine_name():
    """``Engine`` is the contract (runtime.engine); the OpenVINO implementation is only ``OpenVINOEngine``."""
    import yolo_ov
    from yolo_ov.runtime import core, engine

    assert not hasattr(core, "Engine")
    assert "Engine" not in core.__all__
    assert yolo_ov.Engine is engine.Engine
    assert yolo_ov.runtime.Engine is engine.Engine
    assert yolo_ov.runtime.OpenVINOEngine is core.OpenVINOEngine


def test_classification_and_the_result_alias():
    import typing

    import yolo_ov
    from yolo_ov import results

    assert yolo_ov.Classification is results.Classification
    assert set(typing.get_args(results.Result)) == {results.Detections, results.Classification}
    assert isinstance(results.Detections.empty(), results.Result)
    assert not isinstance(results.Failure("x", "y"), results.Result)  # a failure is reported beside results
