"""Pose heads (YOLOv8/YOLO11-pose raw, YOLO26-pose end-to-end).

Rows: ``box, class scores, K x (x, y[, visibility])``. Boxes are decoded as
for detection; each kept box's keypoints are mapped back to the image like
Ultralytics' ``ops.scale_coords`` (minus the padding, divided by the gain,
clipped to the image). Low-confidence keypoints keep their coordinates, as
Ultralytics keeps them. Result: :class:`~yolo_ov.results.Detections` with
``data["keypoints"]`` ``(N, K, D)`` float32 (``D = 3``: x, y, confidence).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import DetectConfig
from ..errors import ModelLoadError
from ..imaging.letterbox import Letterbox
from ..ops.boxes import scale_points, scale_xyxy
from ..results import Detections
from ..runtime.model import ModelInfo
from ._common import Kept, decode_end2end_rows, decode_raw_rows, denormalize, dim
from .base import Head, register_head

__all__ = ["EndToEndPoseHead", "PoseHead"]


class _PoseBase(Head):
    task = "pose"

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        self.kpt_shape = info.kpt_shape or (17, 3)
        if self.kpt_shape[1] not in (2, 3):
            raise ModelLoadError(f"{info.path}: keypoint shape {self.kpt_shape}: each keypoint must have 2 or 3 values")

    def _result(self, kept: Kept, geo: Letterbox) -> Detections:
        k, d = self.kpt_shape
        kpts = kept.extra[:, -k * d:].reshape(-1, k, d)
        if len(kept):
            kpts = kpts.copy()
            kpts[..., :2] = scale_points(kpts[..., :2], geo)
            xyxy = scale_xyxy(kept.boxes, geo)
        else:
            xyxy = kept.boxes
        return Detections(xyxy, kept.confidence, kept.class_id, self.names, geo.original,
                          data={"keypoints": kpts.astype(np.float32)})


@register_head
class PoseHead(_PoseBase):
    """Raw ``(4 + nc + K*D, N)`` rows: confidence filter, NMS, keypoints."""

    end2end = False

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        rows = dim(info.outputs[0].shape, 1)
        k, d = self.kpt_shape
        if rows is not None and rows != 4 + info.num_classes + k * d:
            raise ModelLoadError(f"{info.path}: a pose output of {rows} rows does not fit {info.num_classes} classes "
                                 f"and {k}x{d} keypoints (output {info.outputs[0].shape})")

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        out = outputs[0]
        if self.info.normalized_coords:
            out = denormalize(out, self.info.imgsz, end2end=False, kpt_start=4 + self.info.num_classes,
                              kpt_dims=self.kpt_shape[1])
        return self._result(decode_raw_rows(out, self.info.num_classes, cfg), geo)


@register_head
class EndToEndPoseHead(_PoseBase):
    """End-to-end ``(N, 6 + K*D)`` rows (``x1 y1 x2 y2 score class keypoints``); no NMS."""

    end2end = True

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        cols = dim(info.outputs[0].shape, 2)
        k, d = self.kpt_shape
        if cols is not None and cols != 6 + k * d:
            raise ModelLoadError(f"{info.path}: an end-to-end pose output needs 6 + {k}x{d} columns, "
                                 f"got {info.outputs[0].shape}")

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        out = outputs[0]
        if self.info.normalized_coords:
            out = denormalize(out, self.info.imgsz, end2end=True, kpt_start=6, kpt_dims=self.kpt_shape[1])
        return self._result(decode_end2end_rows(out, cfg), geo)
