"""Compare two trackings of the same frames: object agreement per frame, and IDF1.

Used to hold this package's trackers to Ultralytics' own (the reference in
the tests), and ``--detect-every N`` to every-frame tracking (the benchmark).

* :func:`frame_agreement`: per frame, tracked objects of one side with a
  same-class counterpart on the other at IoU >= a threshold (a one-to-one
  optimal matching per frame), as a share of each side's objects.
* :func:`idf1`: the identity F1 score of Ristani et al. (2016), the MOT
  benchmarks' IDF1: every truth id is paired with at most one predicted id
  (a global optimal assignment maximising the frames on which the pair
  overlaps at IoU >= 0.5), and ``IDF1 = 2 IDTP / (truth boxes + predicted
  boxes)``. Class is not used, as in the MOT definition. The assignment is
  ``lap.lapjv`` (the same Jonker-Volgenant solver the trackers use); the
  tests check it against ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lap
import numpy as np

from .matching import assign, box_iou

__all__ = ["Agreement", "FrameTracks", "frame_agreement", "idf1"]


@dataclass(frozen=True)
class FrameTracks:
    """One frame's tracked objects: ``xyxy (N, 4)``, ``class_id (N,)``, ``track_id (N,)``."""

    xyxy: np.ndarray
    class_id: np.ndarray
    track_id: np.ndarray

    @classmethod
    def of(cls, xyxy: object, class_id: object, track_id: object) -> FrameTracks:
        return cls(np.asarray(xyxy, np.float64).reshape(-1, 4), np.asarray(class_id, np.int64).reshape(-1),
                   np.asarray(track_id, np.int64).reshape(-1))


@dataclass(frozen=True)
class Agreement:
    """How many objects of each side found a counterpart."""

    matched: int
    left: int
    right: int

    @property
    def left_share(self) -> float:
        """Share of the left side's objects matched (1.0 when it had none)."""
        return self.matched / self.left if self.left else 1.0

    @property
    def right_share(self) -> float:
        return self.matched / self.right if self.right else 1.0

    @property
    def both_ways(self) -> float:
        """The smaller of the two shares."""
        return min(self.left_share, self.right_share)


def _class_matches(a: FrameTracks, b: FrameTracks, iou: float) -> np.ndarray:
    cost = 1.0 - box_iou(a.xyxy, b.xyxy)
    cost[a.class_id[:, None] != b.class_id[None, :]] = 2.0
    pairs, _, _ = assign(cost, 1.0 - iou)
    return pairs


def frame_agreement(left: Sequence[FrameTracks], right: Sequence[FrameTracks], *, iou: float = 0.5) -> Agreement:
    """Objects matched one-to-one per frame (same class, IoU >= ``iou``), summed over frames.

    Example:
        >>> f = FrameTracks.of([[0, 0, 10, 10]], [0], [1])
        >>> frame_agreement([f], [f]).both_ways
        1.0
    """
    if len(left) != len(right):
        raise ValueError(f"different numbers of frames: {len(left)} and {len(right)}")
    matched = n_left = n_right = 0
    for a, b in zip(left, right, strict=True):
        matched += len(_class_matches(a, b, iou))
        n_left += len(a.track_id)
        n_right += len(b.track_id)
    return Agreement(matched, n_left, n_right)


def idf1(truth: Sequence[FrameTracks], predicted: Sequence[FrameTracks], *, iou: float = 0.5) -> float:
    """The identity F1 score of ``predicted`` against ``truth`` (1.0: the same tracks).

    Example:
        >>> a = [FrameTracks.of([[0, 0, 10, 10]], [0], [7])] * 3
        >>> b = [FrameTracks.of([[0, 0, 10, 10]], [0], [1])] * 3
        >>> idf1(a, b)
        1.0
    """
    if len(truth) != len(predicted):
        raise ValueError(f"different numbers of frames: {len(truth)} and {len(predicted)}")
    truth_ids = sorted({int(i) for f in truth for i in f.track_id})
    pred_ids = sorted({int(i) for f in predicted for i in f.track_id})
    n_truth = sum(len(f.track_id) for f in truth)
    n_pred = sum(len(f.track_id) for f in predicted)
    if n_truth + n_pred == 0:
        return 1.0
    if not truth_ids or not pred_ids:
        return 0.0
    ti = {t: k for k, t in enumerate(truth_ids)}
    pi = {p: k for k, p in enumerate(pred_ids)}
    together = np.zeros((len(truth_ids), len(pred_ids)))
    for a, b in zip(truth, predicted, strict=True):
        if not len(a.track_id) or not len(b.track_id):
            continue
        rows, cols = np.nonzero(box_iou(a.xyxy, b.xyxy) >= iou)
        np.add.at(together, ([ti[int(a.track_id[r])] for r in rows], [pi[int(b.track_id[c])] for c in cols]), 1)
    idtp = _max_assignment(together)
    return 2.0 * idtp / (n_truth + n_pred)


def _max_assignment(weights: np.ndarray) -> float:
    """The largest sum of ``weights`` over a one-to-one pairing of rows and columns."""
    _, row_to_col, _ = lap.lapjv(-weights, extend_cost=True)
    rows = np.flatnonzero(row_to_col >= 0)
    return float(weights[rows, row_to_col[rows]].sum())
