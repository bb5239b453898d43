"""Association costs and the assignment that matches tracks to detections.

The assignment is ``lap.lapjv`` (Jonker-Volgenant, the maintained ``lap``
package) with ``extend_cost`` and ``cost_limit``: pairs costlier than the
limit are never matched, and leaving a row or a column unmatched costs half
the limit. This is the same solver and the same formulation Ultralytics'
trackers use, so ties and near-ties resolve as they do there.
"""

from __future__ import annotations

import lap
import numpy as np

__all__ = ["assign", "box_iou", "fuse_scores", "iou_cost"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(N, 4)`` with every box in ``b`` ``(M, 4)`` (xyxy) -> ``(N, M)``.

    Example:
        >>> box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]])).round(3)
        array([[0.333]])
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / np.maximum(union, 1e-7)


def iou_cost(tracks_xyxy: np.ndarray, dets_xyxy: np.ndarray) -> np.ndarray:
    """``1 - IoU``: 0 for identical boxes, 1 for disjoint ones."""
    return 1.0 - box_iou(tracks_xyxy, dets_xyxy)


def fuse_scores(cost: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Weigh the IoU similarity by each detection's score: ``1 - IoU * score``.

    A confident detection then wins a contested track over a weak one with
    the same overlap.
    """
    if cost.size == 0:
        return cost
    return 1.0 - (1.0 - cost) * np.asarray(scores, dtype=np.float64)[None, :]


def assign(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost matching of rows (tracks) to columns (detections) within ``limit``.

    Returns ``(matches (K, 2), unmatched_rows, unmatched_cols)``, rows ascending.

    Example:
        >>> m, ur, uc = assign(np.array([[0.1, 0.9], [0.95, 0.3], [0.5, 0.6]]), 0.8)
        >>> m.tolist(), ur.tolist(), uc.tolist()
        ([[0, 0], [1, 1]], [2], [])
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.empty((0, 2), dtype=np.intp), np.arange(n), np.arange(m)
    _, row_to_col, col_to_row = lap.lapjv(np.ascontiguousarray(cost, dtype=np.float64),
                                          extend_cost=True, cost_limit=float(limit))
    rows = np.flatnonzero(row_to_col >= 0)
    matches = np.stack([rows, row_to_col[rows]], axis=1).astype(np.intp)
    return matches, np.flatnonzero(row_to_col < 0), np.flatnonzero(col_to_row < 0)
