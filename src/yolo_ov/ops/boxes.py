"""Turn raw network outputs into detections in original-image pixels.

Two head types are supported:

* ``raw`` (YOLOv8/YOLO11 style): ``(4 + nc, N)`` per image, boxes as centre
  ``xywh`` followed by per-class scores; needs confidence filtering and NMS.
* ``end2end`` (YOLOv10/YOLO26 style): ``(N, 6)`` per image, rows of
  ``x1, y1, x2, y2, score, class``; already de-duplicated.

Everything is vectorised numpy; NMS is OpenCV's C++ ``NMSBoxesBatched``
(class-aware by offsetting classes, like Ultralytics). No OpenVINO import.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..config import DetectConfig
from ..imaging.letterbox import Letterbox
from ..runtime.model import HeadType

__all__ = ["decode_end2end", "decode_raw", "nms", "postprocess", "scale_boxes", "xywhr_to_corners"]

_EMPTY = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))


def decode_raw(output: np.ndarray, cfg: DetectConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's ``(4 + nc, N)`` raw output (network pixels) and run NMS.

    Returns ``(xyxy, confidence, class_id)`` sorted by confidence, at most
    ``cfg.max_det`` rows.
    """
    scores = output[4:]
    if cfg.multi_label:
        cls, anchors = np.nonzero(scores > cfg.conf)
        conf = scores[cls, anchors]
    else:
        best = scores.max(axis=0)
        anchors = np.flatnonzero(best > cfg.conf)
        conf = best[anchors]
        cls = scores[:, anchors].argmax(axis=0) if len(anchors) else np.zeros(0, np.int64)
    if cfg.classes is not None and len(anchors):
        keep = np.isin(cls, cfg.classes)
        anchors, conf, cls = anchors[keep], conf[keep], cls[keep]
    if not len(anchors):
        return _EMPTY
    if len(anchors) > cfg.max_candidates:
        top = np.argpartition(-conf, cfg.max_candidates)[: cfg.max_candidates]
        anchors, conf, cls = anchors[top], conf[top], cls[top]
    xywh = output[:4, anchors].T
    xyxy = np.empty_like(xywh)
    half = xywh[:, 2:] / 2
    xyxy[:, :2] = xywh[:, :2] - half
    xyxy[:, 2:] = xywh[:, :2] + half
    keep = nms(xyxy, conf, cls, cfg.iou, agnostic=cfg.agnostic)[: cfg.max_det]
    return xyxy[keep].astype(np.float32), conf[keep].astype(np.float32), cls[keep].astype(np.int32)


def decode_end2end(output: np.ndarray, cfg: DetectConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's ``(N, 6)`` end-to-end output (no NMS needed)."""
    conf = output[:, 4]
    keep = conf > cfg.conf
    if cfg.classes is not None:
        keep &= np.isin(output[:, 5].astype(np.int64), cfg.classes)
    rows = output[keep]
    order = np.argsort(-rows[:, 4], kind="stable")[: cfg.max_det]
    rows = rows[order]
    return rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int32)


def nms(
    xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou: float, *, agnostic: bool = False
) -> np.ndarray:
    """Indices of the boxes NMS keeps, highest score first.

    Class-aware unless ``agnostic``: boxes of different classes never
    suppress each other.
    """
    if not len(xyxy):
        return np.zeros(0, np.int64)
    boxes = xyxy.astype(np.float64)
    boxes[:, 2:] -= boxes[:, :2]  # OpenCV wants x, y, w, h
    score_list = scores.astype(np.float32)
    if agnostic:
        idx = cv2.dnn.NMSBoxes(boxes, score_list, 0.0, float(iou))
    else:
        idx = cv2.dnn.NMSBoxesBatched(boxes, score_list, class_id.astype(np.int32), 0.0, float(iou))
    return np.asarray(idx, dtype=np.int64).reshape(-1)


def scale_boxes(xyxy: np.ndarray, geo: Letterbox) -> np.ndarray:
    """Map boxes from network pixels back to the original image and clip them."""
    out = xyxy.copy()
    out[:, [0, 2]] -= geo.pad_left
    out[:, [1, 3]] -= geo.pad_top
    out /= geo.scale
    h, w = geo.original
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def postprocess(
    output: np.ndarray, geo: Letterbox, head: HeadType, cfg: DetectConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output -> ``(xyxy, confidence, class_id)`` in original pixels."""
    decode = decode_raw if head is HeadType.RAW else decode_end2end
    xyxy, conf, cls = decode(output, cfg)
    if len(xyxy):
        xyxy = scale_boxes(xyxy, geo)
    return xyxy, conf, cls


def xywhr_to_corners(xywhr: np.ndarray) -> np.ndarray:
    """``(N, 4, 2)`` corners of rotated boxes, in Ultralytics' order (``ops.xywhr2xyxyxyxy``)."""
    ctr = xywhr[:, None, :2]
    w, h, a = xywhr[:, 2:3], xywhr[:, 3:4], xywhr[:, 4:5]
    cos, sin = np.cos(a), np.sin(a)
    v1 = np.concatenate([w / 2 * cos, w / 2 * sin], axis=-1)[:, None]
    v2 = np.concatenate([-h / 2 * sin, h / 2 * cos], axis=-1)[:, None]
    return np.concatenate([ctr + v1 + v2, ctr + v1 - v2, ctr - v1 - v2, ctr - v1 + v2], axis=1).astype(np.float32)
