"""Rotated boxes (``cx, cy, w, h, angle``): corners, Ultralytics' ``probiou`` and its rotated NMS.

The oriented-box head decodes with :func:`rotated_nms`, the results write and
draw corners with :func:`xywhr_to_corners`, and OBB validation matches
predictions to labels with :func:`probiou`: one implementation of each, here
at the bottom of the package (pure NumPy), so a head and an evaluator never
disagree about what overlapping means.
"""

from __future__ import annotations

import numpy as np

__all__ = ["probiou", "rotated_nms", "xywhr_to_corners"]

_EMPTY_I = np.zeros(0, np.int64)


def xywhr_to_corners(xywhr: np.ndarray) -> np.ndarray:
    """``(N, 4, 2)`` corners of rotated boxes, in Ultralytics' order (``ops.xywhr2xyxyxyxy``)."""
    ctr = xywhr[:, None, :2]
    w, h, a = xywhr[:, 2:3], xywhr[:, 3:4], xywhr[:, 4:5]
    cos, sin = np.cos(a), np.sin(a)
    v1 = np.concatenate([w / 2 * cos, w / 2 * sin], axis=-1)[:, None]
    v2 = np.concatenate([-h / 2 * sin, h / 2 * cos], axis=-1)[:, None]
    return np.concatenate([ctr + v1 + v2, ctr + v1 - v2, ctr - v1 - v2, ctr - v1 + v2], axis=1).astype(np.float32)


def probiou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Probabilistic IoU of every rotated box in ``a`` (N, 5) with every box in ``b`` (M, 5): (N, M).

    Boxes are ``cx, cy, w, h, angle`` (radians). Each box becomes the Gaussian
    with its centre and covariance ``R diag(w^2, h^2) R^T / 12``; the score is
    ``1 - Hellinger distance`` from their Bhattacharyya distance (clipped to
    ``[eps, 100]``), as Ultralytics computes it (``batch_probiou``). Ultralytics'
    OBB validation and rotated NMS both use it instead of a polygon IoU.
    """
    a = np.asarray(a, np.float64).reshape(-1, 5)
    b = np.asarray(b, np.float64).reshape(-1, 5)

    def cov(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w2, h2 = boxes[:, 2] ** 2 / 12, boxes[:, 3] ** 2 / 12
        cos, sin = np.cos(boxes[:, 4]), np.sin(boxes[:, 4])
        return w2 * cos**2 + h2 * sin**2, w2 * sin**2 + h2 * cos**2, (w2 - h2) * cos * sin

    a1, b1, c1 = (v[:, None] for v in cov(a))
    a2, b2, c2 = (v[None, :] for v in cov(b))
    dx = a[:, None, 0] - b[None, :, 0]
    dy = a[:, None, 1] - b[None, :, 1]
    sa, sb, sc = a1 + a2, b1 + b2, c1 + c2
    den = sa * sb - sc**2
    t1 = (sa * dy**2 + sb * dx**2) / (den + eps) * 0.25
    t2 = (sc * -dx * dy) / (den + eps) * 0.5
    t3 = 0.5 * np.log(den / (4 * np.sqrt(np.clip(a1 * b1 - c1**2, 0, None) * np.clip(a2 * b2 - c2**2, 0, None)) + eps)
                      + eps)
    bd = np.clip(t1 + t2 + t3, eps, 100.0)
    return 1 - np.sqrt(1 - np.exp(-bd) + eps)


def rotated_nms(xywhr: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou: float, *,
                agnostic: bool = False, max_wh: float = 7680.0) -> np.ndarray:
    """Ultralytics' rotated NMS: fast-NMS over :func:`probiou`, classes kept apart by offsetting centres.

    Fast-NMS (not greedy): a box goes when any higher-scored box overlaps it
    more than ``iou``, even one that was itself suppressed; this is what
    Ultralytics does for OBB, so the same boxes survive. Returns the kept
    indices, highest score first.
    """
    if not len(xywhr):
        return _EMPTY_I
    boxes = xywhr.astype(np.float64).copy()
    if not agnostic:
        boxes[:, :2] += class_id[:, None].astype(np.float64) * max_wh
    order = np.argsort(-scores, kind="stable")
    ious = np.triu(probiou(boxes[order], boxes[order]), k=1)
    return order[(ious > iou).sum(axis=0) <= 0]
