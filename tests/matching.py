"""Compare detections with Ultralytics' reference predictions (the issue's criterion)."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N,4) and (M,4) xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def matched_fraction(
    src: tuple[np.ndarray, np.ndarray, np.ndarray],
    dst: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    min_conf: float = 0.3,
    min_iou: float = 0.9,
    conf_tol: float = 0.05,
) -> tuple[int, int]:
    """How many of ``src``'s detections (conf >= min_conf) have a same-class
    counterpart in ``dst`` with IoU >= min_iou and confidence within conf_tol.

    Returns (matched, total).
    """
    sb, sc, sk = src
    db, dc, dk = dst
    keep = sc >= min_conf
    sb, sc, sk = sb[keep], sc[keep], sk[keep]
    if not len(sb):
        return 0, 0
    if not len(db):
        return 0, len(sb)
    iou = box_iou(sb, db)
    ok = (iou >= min_iou) & (sk[:, None] == dk[None, :]) & (np.abs(sc[:, None] - dc[None, :]) <= conf_tol)
    return int(ok.any(axis=1).sum()), len(sb)
