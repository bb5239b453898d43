"""Oriented-box heads (YOLOv8/YOLO11-obb raw, YOLO26-obb end-to-end).

Rows: ``cx, cy, w, h``, class scores and the angle in radians (Ultralytics'
convention: the model's own angle, in ``[-pi/4, 3pi/4)``, not regularised).
Raw outputs go through Ultralytics' rotated NMS (fast-NMS over ``probiou``,
not a polygon IoU); end-to-end outputs need none. Boxes are mapped back like
Ultralytics' ``scale_boxes(xywh=True)``: centres shifted and all four values
divided by the gain, not clipped (an oriented box may reach past the image).
Result: :class:`~yolo_ov.results.Detections` whose ``xyxy`` is the axis-aligned
box around the four corners, with ``data["xywhr"]`` ``(N, 5)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import DetectConfig
from ..errors import ModelLoadError
from ..imaging.letterbox import Letterbox
from ..ops.boxes import scale_xywhr
from ..ops.rotated import xywhr_to_corners
from ..results import Detections
from ..runtime.model import ModelInfo
from ._common import Kept, decode_end2end_rows, decode_raw_rows, denormalize, dim
from .base import Head, register_head

__all__ = ["EndToEndOBBHead", "OBBHead"]


class _OBBBase(Head):
    task = "obb"

    def _result(self, kept: Kept, geo: Letterbox) -> Detections:
        xywhr = scale_xywhr(kept.boxes[:, :5], geo) if len(kept) else np.zeros((0, 5), np.float32)
        corners = xywhr_to_corners(xywhr)
        xyxy = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1) if len(kept) else np.zeros((0, 4))
        return Detections(xyxy, kept.confidence, kept.class_id, self.names, geo.original, data={"xywhr": xywhr})


@register_head
class OBBHead(_OBBBase):
    """Raw ``(4 + nc + 1, N)`` rows: confidence filter, rotated NMS."""

    end2end = False

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        rows = dim(info.outputs[0].shape, 1)
        if rows is not None and rows != 5 + info.num_classes:
            raise ModelLoadError(f"{info.path}: an OBB output of {rows} rows does not fit {info.num_classes} classes "
                                 f"(expected 4 + classes + angle; output {info.outputs[0].shape})")

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        out = outputs[0]
        if self.info.normalized_coords:
            out = denormalize(out, self.info.imgsz, end2end=False)
        return self._result(decode_raw_rows(out, self.info.num_classes, cfg, rotated=True), geo)


@register_head
class EndToEndOBBHead(_OBBBase):
    """End-to-end ``(N, 7)`` rows: ``cx cy w h score class angle``; no NMS."""

    end2end = True

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        cols = dim(info.outputs[0].shape, 2)
        if cols is not None and cols != 7:
            raise ModelLoadError(f"{info.path}: an end-to-end OBB output needs 7 columns "
                                 f"(cx cy w h score class angle), got {info.outputs[0].shape}")

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        out = outputs[0]
        if self.info.normalized_coords:
            out = denormalize(out, self.info.imgsz, end2end=True)
        kept = decode_end2end_rows(out, cfg)
        kept.boxes = np.concatenate([kept.boxes, kept.extra[:, -1:]], axis=1)  # xywh + angle
        return self._result(kept, geo)
