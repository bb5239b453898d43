"""The one box decoder: every task head turns its network rows into kept detections here.

It follows Ultralytics' ``non_max_suppression`` (``ultralytics/utils/nms.py``):
the confidence filter, multi-label or best class, the class filter, the
candidate cap (highest scores first, a stable sort), class-aware NMS,
``max_det``; the task's extra rows (mask coefficients, keypoints, the angle)
follow each kept box. End-to-end (NMS-free) outputs keep the rows over the
threshold in score order. The results are in network pixels; the heads map
them back with :mod:`yolo_ov.ops.boxes` (Ultralytics' per-axis gains).
The box operations themselves (NMS, rotated NMS, scaling) live in :mod:`yolo_ov.ops`.
"""

from __future__ import annotations

import numpy as np

from ..config import DetectConfig
from ..ops.boxes import nms, xywh_to_xyxy
from ..ops.rotated import rotated_nms

__all__ = ["Kept", "candidates", "decode_end2end_rows", "decode_raw_rows", "denormalize", "dim"]

_EMPTY_I = np.zeros(0, np.int64)


class Kept:
    """What survived decoding: network-pixel boxes, scores, classes and the task's extra columns."""

    __slots__ = ("boxes", "class_id", "confidence", "extra")

    def __init__(self, boxes: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, extra: np.ndarray) -> None:
        self.boxes = boxes.astype(np.float32, copy=False)
        self.confidence = confidence.astype(np.float32, copy=False)
        self.class_id = class_id.astype(np.int32, copy=False)
        self.extra = extra.astype(np.float32, copy=False)

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, idx: np.ndarray) -> Kept:
        return Kept(self.boxes[idx], self.confidence[idx], self.class_id[idx], self.extra[idx])


def candidates(scores: np.ndarray, cfg: DetectConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(anchors, confidence, class_id)`` above ``cfg.conf`` from ``(nc, N)`` class scores.

    Multi-label gives one row per (anchor, class) above the threshold; else the
    best class of each anchor. Then the class filter and the candidate cap.
    """
    if cfg.multi_label and len(scores) > 1:
        cls, anchors = np.nonzero(scores > cfg.conf)
        conf = scores[cls, anchors]
    else:
        best = scores.max(axis=0)
        anchors = np.flatnonzero(best > cfg.conf)
        conf = best[anchors]
        cls = scores[:, anchors].argmax(axis=0) if len(anchors) else _EMPTY_I
    if cfg.classes is not None and len(anchors):
        keep = np.isin(cls, cfg.classes)
        anchors, conf, cls = anchors[keep], conf[keep], cls[keep]
    if len(anchors) > cfg.max_candidates:
        top = np.argsort(-conf, kind="stable")[: cfg.max_candidates]
        anchors, conf, cls = anchors[top], conf[top], cls[top]
    return anchors, conf, cls


def decode_raw_rows(output: np.ndarray, nc: int, cfg: DetectConfig, *, rotated: bool = False) -> Kept:
    """One image's raw ``(4 + nc + extra, N)`` output -> the detections NMS keeps.

    ``rotated``: OBB rows (``xywh``, scores, angle): boxes stay ``xywhr`` and NMS
    is Ultralytics' rotated fast-NMS with ``probiou``.
    """
    anchors, conf, cls = candidates(output[4 : 4 + nc], cfg)
    extra_rows = output.shape[0] - 4 - nc
    if not len(anchors):
        return Kept(np.zeros((0, 5 if rotated else 4)), conf, cls, np.zeros((0, extra_rows)))
    boxes = output[:4, anchors].T
    extra = output[4 + nc :, anchors].T
    if rotated:
        boxes = np.concatenate([boxes, extra[:, -1:]], axis=1)  # xywh + angle
        keep = rotated_nms(boxes, conf, cls, cfg.iou, agnostic=cfg.agnostic)[: cfg.max_det]
    else:
        boxes = xywh_to_xyxy(boxes)
        keep = nms(boxes, conf, cls, cfg.iou, agnostic=cfg.agnostic)[: cfg.max_det]
    return Kept(boxes[keep], conf[keep], cls[keep], extra[keep])


def decode_end2end_rows(output: np.ndarray, cfg: DetectConfig, *, box_cols: int = 4) -> Kept:
    """One image's end-to-end ``(N, box + 2 + extra)`` output: ``box, score, class, extra``.

    As Ultralytics: keep rows over ``cfg.conf`` (and of ``cfg.classes``), in the
    model's order (already sorted by score), at most ``cfg.max_det``. The
    model may return the same box twice with different classes; both stay.
    """
    conf = output[:, box_cols]
    cls = output[:, box_cols + 1]
    keep = conf > cfg.conf
    if cfg.classes is not None:
        keep &= np.isin(cls.astype(np.int64), cfg.classes)
    rows = output[keep]
    rows = rows[np.argsort(-rows[:, box_cols], kind="stable")[: cfg.max_det]]
    return Kept(rows[:, :box_cols], rows[:, box_cols], rows[:, box_cols + 1].astype(np.int64), rows[:, box_cols + 2 :])


def dim(shape: str, axis: int) -> int | None:
    """One dimension of a ``[1,84,8400]``-style shape text (``None`` when dynamic or absent)."""
    dims = shape.strip("[]").split(",")
    if axis >= len(dims) or not dims[axis].strip().isdigit():
        return None
    return int(dims[axis])


def denormalize(output: np.ndarray, hw: tuple[int, int], *, end2end: bool, kpt_start: int | None = None,
                kpt_dims: int = 3) -> np.ndarray:
    """Boxes (and keypoints) in ``[0, 1]`` of the input -> input pixels, as Ultralytics' LiteRT backend does.

    Raw outputs hold one row per value (``(C, N)``); end-to-end outputs one
    column per value (``(N, C)``). ``kpt_start``: the first keypoint value.
    """
    h, w = hw
    out = output.astype(np.float32, copy=True)
    view = out if not end2end else out.T
    view[[0, 2]] *= w
    view[[1, 3]] *= h
    if kpt_start is not None:
        view[kpt_start::kpt_dims] *= w
        view[kpt_start + 1 :: kpt_dims] *= h
    return out
