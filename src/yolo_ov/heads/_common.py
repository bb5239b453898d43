"""Decoding steps every task head shares: candidate selection, NMS with extra
columns carried along, and mapping points from the letterbox back to the image.

They follow Ultralytics' ``non_max_suppression`` (``ultralytics/utils/nms.py``)
and ``ops.scale_coords``: the confidence filter, multi-label or best class,
the class filter, the candidate cap, class-aware NMS, ``max_det``; the task's
extra rows (mask coefficients, keypoints, the angle) follow each kept box.
"""

from __future__ import annotations

import numpy as np

from ..config import DetectConfig
from ..eval.metrics_ultralytics import probiou  # Ultralytics' batch_probiou, shared with OBB validation
from ..imaging.letterbox import Letterbox
from ..ops.boxes import nms

__all__ = [
    "Kept", "decode_end2end_rows", "decode_raw_rows", "dim", "probiou", "rotated_nms", "scale_points",
    "scale_xywhr", "scale_xyxy", "xywh_to_xyxy",
]

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


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    xyxy = np.empty_like(xywh)
    half = xywh[:, 2:4] / 2
    xyxy[:, :2] = xywh[:, :2] - half
    xyxy[:, 2:] = xywh[:, :2] + half
    return xyxy


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


def rotated_nms(xywhr: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou: float, *,
                agnostic: bool = False, max_wh: float = 7680.0) -> np.ndarray:
    """Ultralytics' rotated NMS: fast-NMS over ``probiou``, classes kept apart by offsetting centres.

    Fast-NMS (not greedy): a box goes when any higher-scored box overlaps it
    more than ``iou``, even one that was itself suppressed; this is what
    Ultralytics does for OBB, so the same boxes survive.
    """
    if not len(xywhr):
        return _EMPTY_I
    boxes = xywhr.astype(np.float64).copy()
    if not agnostic:
        boxes[:, :2] += class_id[:, None].astype(np.float64) * max_wh
    order = np.argsort(-scores, kind="stable")
    ious = np.triu(probiou(boxes[order], boxes[order]), k=1)
    return order[(ious > iou).sum(axis=0) <= 0]


def scale_points(xy: np.ndarray, geo: Letterbox, *, clip: bool = True) -> np.ndarray:
    """Map ``(..., 2)`` network-pixel points to the original image (Ultralytics' ``scale_coords``)."""
    gain_y, gain_x = _gains(geo)
    out = xy.astype(np.float32, copy=True)
    out[..., 0] = (out[..., 0] - geo.pad_left) / gain_x
    out[..., 1] = (out[..., 1] - geo.pad_top) / gain_y
    if clip:
        h, w = geo.original
        out[..., 0] = out[..., 0].clip(0, w)
        out[..., 1] = out[..., 1].clip(0, h)
    return out


def scale_xyxy(xyxy: np.ndarray, geo: Letterbox) -> np.ndarray:
    """Map network-pixel ``xyxy`` boxes to the original image and clip (Ultralytics' ``scale_boxes``)."""
    out = scale_points(xyxy.reshape(-1, 2, 2), geo, clip=True)
    return out.reshape(-1, 4)


def scale_xywhr(xywhr: np.ndarray, geo: Letterbox) -> np.ndarray:
    """Map network-pixel rotated boxes to the original image (``scale_boxes(xywh=True)``: not clipped)."""
    gain_y, gain_x = _gains(geo)
    out = xywhr.astype(np.float32, copy=True)
    out[:, 0] = (out[:, 0] - geo.pad_left) / gain_x
    out[:, 1] = (out[:, 1] - geo.pad_top) / gain_y
    out[:, 2] /= gain_x
    out[:, 3] /= gain_y
    return out


def _gains(geo: Letterbox) -> tuple[float, float]:
    """Per-axis gains as Ultralytics' ``scale_boxes``/``scale_coords`` compute them (resized / original side)."""
    (h0, w0), (nh, nw) = geo.original, geo.resized
    return nh / h0, nw / w0


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
