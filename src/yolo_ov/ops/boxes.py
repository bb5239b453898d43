"""Axis-aligned box operations: NMS, ``xywh`` <-> ``xyxy``, and mapping from the letterbox back to the image.

Pure NumPy and OpenCV, no state. Decoding a network's output (which rows are
candidates, which survive) is the heads' job (:mod:`yolo_ov.heads._common`);
rotated boxes are in :mod:`yolo_ov.ops.rotated`. NMS is OpenCV's C++
``NMSBoxesBatched`` (class-aware by offsetting classes, like Ultralytics).
The scaling follows Ultralytics' ``ops.scale_boxes`` and ``ops.scale_coords``:
the padding removed, then each axis divided by its own gain (the letterbox
rounds each side, so the two gains differ slightly), then clipped.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..imaging.letterbox import Letterbox

__all__ = ["clip_xyxy", "nms", "scale_points", "scale_xywhr", "scale_xyxy", "xywh_to_xyxy", "xyxy_to_xywh"]


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


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """Centre ``x, y, w, h`` (first four columns) -> corners ``x1, y1, x2, y2``."""
    xyxy = np.empty_like(xywh[:, :4])
    half = xywh[:, 2:4] / 2
    xyxy[:, :2] = xywh[:, :2] - half
    xyxy[:, 2:] = xywh[:, :2] + half
    return xyxy


def xyxy_to_xywh(xyxy: np.ndarray) -> np.ndarray:
    """Corners ``x1, y1, x2, y2`` -> centre ``x, y, w, h``."""
    xywh = np.empty_like(xyxy[:, :4])
    xywh[:, :2] = (xyxy[:, :2] + xyxy[:, 2:4]) / 2
    xywh[:, 2:] = xyxy[:, 2:4] - xyxy[:, :2]
    return xywh


def clip_xyxy(xyxy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A copy of ``xyxy`` boxes clipped to an image of ``shape`` ``(h, w)``."""
    h, w = shape
    out = xyxy.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


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
