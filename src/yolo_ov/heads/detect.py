"""Detection heads: YOLOv8/YOLO11 raw output with NMS, and end-to-end output (YOLOv10/YOLO26)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import DetectConfig
from ..errors import ModelLoadError
from ..imaging.letterbox import Letterbox
from ..ops.boxes import decode_end2end, decode_raw, scale_boxes
from ..results import Detections
from ..runtime.model import ModelInfo
from .base import Head, register_head

__all__ = ["DetectHead", "EndToEndDetectHead"]


@register_head
class DetectHead(Head):
    """``(4 + nc, N)`` per image: centre ``xywh`` then class scores; confidence filter + NMS."""

    task = "detect"
    end2end = False

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        rows = _dim(info.outputs[0].shape, 1)
        if rows is not None and rows != 4 + info.num_classes:
            raise ModelLoadError(
                f"{info.path}: a detection output of {rows} rows does not fit {info.num_classes} classes "
                f"(expected 4 + classes; output {info.outputs[0].shape})"
            )

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        xyxy, conf, cls = decode_raw(outputs[0], cfg)
        return _detections(xyxy, conf, cls, geo, self.names)


@register_head
class EndToEndDetectHead(Head):
    """``(N, 6)`` per image: ``x1, y1, x2, y2, score, class``, already de-duplicated (no NMS)."""

    task = "detect"
    end2end = True

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        cols = _dim(info.outputs[0].shape, 2)
        if cols is not None and cols != 6:
            raise ModelLoadError(f"{info.path}: an end-to-end detection output must have 6 columns "
                                 f"(x1 y1 x2 y2 score class), got {info.outputs[0].shape}")

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        xyxy, conf, cls = decode_end2end(outputs[0], cfg)
        return _detections(xyxy, conf, cls, geo, self.names)


def _detections(xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray, geo: Letterbox,
                names: dict[int, str]) -> Detections:
    if len(xyxy):
        xyxy = scale_boxes(xyxy, geo)
    return Detections(xyxy, conf, cls, names, geo.original)


def _dim(shape: str, axis: int) -> int | None:
    """One dimension of a ``[1,84,8400]``-style shape text (``None`` when dynamic or absent)."""
    dims = shape.strip("[]").split(",")
    if axis >= len(dims) or not dims[axis].strip().isdigit():
        return None
    return int(dims[axis])
