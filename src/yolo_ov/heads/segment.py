"""Instance segmentation heads (YOLOv8/YOLO11-seg raw, YOLO26-seg end-to-end).

Two outputs: per-anchor rows ``box, class scores, nm mask coefficients`` and
``(nm, H/4, W/4)`` mask prototypes. Boxes are decoded as for detection; each
kept box's mask is ``coefficients @ prototypes`` cut to the box, upsampled and
thresholded as Ultralytics' ``process_mask`` does (see :mod:`yolo_ov.ops.masks`).
Detections whose mask comes out empty in the image are dropped. Ultralytics
drops those empty in its letterboxed input, padding included, so it keeps a
box lying in the padding with an empty mask where yolo-ov drops it (measured
with random-weight YOLO26n-seg: 9 of about 1,130 detections, all on one image;
the shared YOLO11n-seg still matches Ultralytics on >= 99% of coco96's detections).
Result: :class:`~yolo_ov.results.Detections` with ``data["masks"]``, a
:class:`~yolo_ov.ops.masks.Masks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import DetectConfig
from ..errors import ModelLoadError
from ..imaging.letterbox import Letterbox
from ..ops.boxes import scale_xyxy
from ..ops.masks import Masks, masks_from_prototypes
from ..results import Detections
from ..runtime.model import ModelInfo
from ._common import Kept, decode_end2end_rows, decode_raw_rows, dim
from .base import Head, register_head

__all__ = ["EndToEndSegmentHead", "SegmentHead"]


class _SegmentBase(Head):
    task = "segment"

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        ranks = [len(t.shape.strip("[]").split(",")) for t in info.outputs]
        if len(ranks) != 2 or sorted(ranks) != [3, 4]:
            shapes = ", ".join(t.shape for t in info.outputs)
            raise ModelLoadError(f"{info.path}: a segmentation model needs two outputs, detections and "
                                 f"(B, masks, H, W) prototypes; found {shapes}")
        self.proto_index = ranks.index(4)
        self.det_index = 1 - self.proto_index
        self.num_masks = info.num_masks or 32

    def _result(self, kept: Kept, protos: np.ndarray, geo: Letterbox) -> Detections:
        if not len(kept):
            empty = {"masks": Masks.empty(geo.original)}
            return Detections.empty(names=self.names, image_shape=geo.original, data=empty)
        input_hw = (protos.shape[1] * 4, protos.shape[2] * 4)  # the prototypes are a quarter of the input
        masks = masks_from_prototypes(protos, kept.extra[:, -self.num_masks:], kept.boxes, geo, input_hw)
        keep = masks.area > 0
        xyxy = scale_xyxy(kept.boxes, geo)
        det = Detections(xyxy, kept.confidence, kept.class_id, self.names, geo.original, data={"masks": masks})
        return det if keep.all() else det[keep]


@register_head
class SegmentHead(_SegmentBase):
    """Raw ``(4 + nc + nm, N)`` rows + prototypes: confidence filter, NMS, masks."""

    end2end = False

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        rows = dim(info.outputs[self.det_index].shape, 1)
        if rows is not None and rows != 4 + info.num_classes + self.num_masks:
            raise ModelLoadError(
                f"{info.path}: a segmentation output of {rows} rows does not fit {info.num_classes} classes and "
                f"{self.num_masks} mask coefficients (output {info.outputs[self.det_index].shape})"
            )

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        kept = decode_raw_rows(outputs[self.det_index], self.info.num_classes, cfg)
        return self._result(kept, outputs[self.proto_index], geo)


@register_head
class EndToEndSegmentHead(_SegmentBase):
    """End-to-end ``(N, 6 + nm)`` rows (``x1 y1 x2 y2 score class coefficients``) + prototypes; no NMS."""

    end2end = True

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        cols = dim(info.outputs[self.det_index].shape, 2)
        if cols is not None and cols != 6 + self.num_masks:
            raise ModelLoadError(f"{info.path}: an end-to-end segmentation output needs 6 + {self.num_masks} "
                                 f"columns, got {info.outputs[self.det_index].shape}")

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        kept = decode_end2end_rows(outputs[self.det_index], cfg)
        return self._result(kept, outputs[self.proto_index], geo)
