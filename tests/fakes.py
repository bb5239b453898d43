"""A model without a model: a ``FakeEngine`` whose outputs follow the image, and the ``ModelInfo`` of a
YOLO detector that matches it, so the whole front door (``Detector``, the pipeline, ``submit()``, sinks, the
server, tracking) runs in the fast tier (``pytest -m "not model"``) with the real heads decoding.

The fake is an end-to-end detector (YOLOv10/YOLO26 layout, ``(B, N, 6)`` rows of ``x1 y1 x2 y2 score class``
in network pixels): for each frame it reports one object whose box, score and class are functions of the
frame's mean pixel value, so a test that feeds images of distinct uniform values knows which result belongs
to which image (:func:`expected_for`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolo_ov import Detector
from yolo_ov.config import DetectConfig, RuntimeConfig
from yolo_ov.pipeline import PipelineConfig
from yolo_ov.runtime.engine import FakeEngine
from yolo_ov.runtime.model import HeadType, ModelInfo, TensorSpec

NAMES = {0: "person", 1: "car", 2: "dog", 3: "cat"}
#: Rows the fake end-to-end head reports per frame (only the first one scores above zero).
ROWS = 8


def fake_info(imgsz: tuple[int, int] = (64, 64), names: dict[int, str] | None = None) -> ModelInfo:
    """The ``ModelInfo`` of an end-to-end detector of input ``imgsz`` (what ``inspect_model`` would read)."""
    h, w = imgsz
    return ModelInfo(path=Path("fake_openvino_model/fake.xml"), names=dict(names or NAMES), names_source="test",
                     imgsz=imgsz, stride=32, task="detect", head=HeadType.END2END,
                     inputs=(TensorSpec("images", f"[1,3,{h},{w}]"),),
                     outputs=(TensorSpec("output0", f"[1,{ROWS},6]"),), batch=1)


def scene_outputs(batch: np.ndarray, num_classes: int = len(NAMES)) -> list[np.ndarray]:
    """One object per frame: a square at (4, 4) of side ``8 + mean/8``, score ``0.5 + mean/1024``,
    class ``int(mean) % num_classes`` (vectorised over the batch)."""
    b = batch.shape[0]
    mean = batch.reshape(b, -1).mean(axis=1).astype(np.float32)
    out = np.zeros((b, ROWS, 6), np.float32)
    side = 8.0 + mean / 8.0
    out[:, 0, 0] = 4.0
    out[:, 0, 1] = 4.0
    out[:, 0, 2] = 4.0 + side
    out[:, 0, 3] = 4.0 + side
    out[:, 0, 4] = 0.5 + mean / 1024.0
    out[:, 0, 5] = np.floor(mean) % num_classes
    return [out]


def fake_engine(imgsz: tuple[int, int] = (64, 64), *, batch: int = 1, delay_s: float = 0.0, **kwargs) -> FakeEngine:
    return FakeEngine(scene_outputs, input_hw=imgsz, batch=batch, delay_s=delay_s, **kwargs)


def fake_detector(*, imgsz: tuple[int, int] = (64, 64), delay_s: float = 0.0, batch: int = 1,
                  mode: str = "latency", detect: DetectConfig | None = None,
                  pipeline: PipelineConfig | None = None, engine: FakeEngine | None = None) -> Detector:
    """A :class:`Detector` on the fake engine (close it, or use it as a context manager)."""
    engine = engine or fake_engine(imgsz, batch=batch, delay_s=delay_s)
    return Detector.from_engine(engine, fake_info(imgsz), runtime=RuntimeConfig(mode=mode), detect=detect,
                                pipeline=pipeline)


def uniform_image(value: int, hw: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A BGR image of one grey value (its letterbox at the model's own size has no padding)."""
    return np.full((*hw, 3), value, np.uint8)


def expected_for(value: int, num_classes: int = len(NAMES)) -> tuple[int, float]:
    """``(class_id, score)`` the fake reports for :func:`uniform_image` ``(value)`` at the model's size."""
    return int(value) % num_classes, 0.5 + value / 1024.0
