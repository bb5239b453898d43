"""Detection heads: YOLOv8/YOLO11 raw output with NMS, and end-to-end output (YOLOv10/YOLO26)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import DetectConfig
from ..errors import ModelLoadError
from ..imaging.letterbox import Letterbox
from ..ops.boxes import scale_xyxy
from ..results import Detections
from ..runtime.model import ModelInfo
from ._common import Kept, decode_end2end_rows, decode_raw_rows, dim
from .base import Head, register_head

__all__ = ["DetectHead", "EndToEndDetectHead"]


@register_head
class DetectHead(Head):
    """``(4 + nc, N)`` per image: centre ``xywh`` then class scores; confidence filter + NMS."""

    task = "detect"
    end2end = False

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        rows = dim(info.outputs[0].shape, 1)
        if rows is not None and rows != 4 + info.num_classes:
            raise ModelLoadError(
                f"{info.path}: a detection output of {rows} rows does not fit {info.num_classes} classes "
                f"(expected 4 + classes; output {info.outputs[0].shape})"
            )

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        return _detections(decode_raw_rows(outputs[0], self.info.num_classes, cfg), geo, self.names)


@register_head
class EndToEndDetectHead(Head):
    """``(N, 6)`` per image: ``x1, y1, x2, y2, score, class``, already de-duplicated (no NMS)."""

    task = "detect"
    end2end = True

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        cols = dim(info.outputs[0].shape, 2)
        if cols is not None and cols != 6:
            raise ModelLoadError(f"{info.path}: an end-to-end detection output must have 6 columns "
                                 f"(x1 y1 x2 y2 score class), got {info.outputs[0].shape}")

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        return _detections(decode_end2end_rows(outputs[0], cfg), geo, self.names)


def _detections(kept: Kept, geo: Letterbox, names: dict[int, str]) -> Detections:
    xyxy = scale_xyxy(kept.boxes, geo) if len(kept) else kept.boxes
    return Detections(xyxy, kept.confidence, kept.class_id, names, geo.original)
