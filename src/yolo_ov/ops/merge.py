"""Merging the detections of overlapping tiles: SAHI's postprocess, reimplemented on arrays.

Each function here reimplements, from SAHI 0.12.8's documented algorithm (not
copied), the function named in its docstring, with the same ordering and
tie-breaks, so that a sliced run merges exactly as SAHI's
``get_sliced_prediction`` does:

1. **Plan** (:func:`plan_merge`): which detections go together.
   ``greedynmm`` (SAHI ``GreedyNMMPostprocess``), ``nmm`` (``NMMPostprocess``,
   transitive) or ``nms`` (``NMSPostprocess``), per class (SAHI ``batched_*``)
   or across classes, over ``ios`` (intersection over the smaller box) or
   ``iou``. Candidates are visited by score, highest first, ties broken by
   ``x1, y1, x2, y2`` ascending then by index (SAHI ``_score_tiebreak_order``);
   the overlaps are computed in float32 as SAHI's numpy backend does
   (its ``tonumpy`` is float32), so a pair exactly at the threshold falls the same way.
2. **Apply** (:func:`apply_merge`): SAHI ``_apply_merge``. Each keeper absorbs
   its planned detections one by one, and only if it still matches the keeper
   *as merged so far* (SAHI's ``has_match``, float64): a box planned into a
   group (transitively, in ``nmm``) that no longer matches is dropped, as in SAHI.
   A pair merge (SAHI ``merge_object_prediction_pair``) is the union of the
   boxes, the higher score, and the class of the strictly higher-scored one
   (the absorbed one's on a tie).
3. **Masks** (:func:`merge_masks`): the masks of a group OR-ed, which is what
   SAHI's polygon union computes (SAHI goes through polygons and shapely;
   here the bitmaps are OR-ed, so there is no polygon rounding).

Rotated boxes (OBB): SAHI 0.12.8 forces ``nms`` for OBB models and measures
the overlap on the axis-aligned boxes around the rotated ones; it has no
rotated overlap. :func:`plan_merge` does that when ``rotated`` is ``None``, and
with ``rotated`` (``(N, 5)`` ``cx, cy, w, h, angle``) measures the overlap with
Ultralytics' ``probiou`` instead (symmetric, so ``ios`` and ``iou`` are the same there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .masks import Masks

# probiou lives in eval/ today; the redesign branch moves it to ops/ (then this import follows it).
from .rotated import probiou

__all__ = ["MERGES", "METRICS", "MergeResult", "apply_merge", "merge_masks", "overlap_matrix", "plan_merge",
           "score_order"]

MERGES = ("greedynmm", "nmm", "nms")
METRICS = ("ios", "iou")


@dataclass(frozen=True)
class MergeResult:
    """The merged detections, as arrays, and where each came from.

    Attributes:
        xyxy: ``(M, 4)`` float32 merged boxes.
        confidence: ``(M,)`` float32 merged scores.
        class_id: ``(M,)`` int32 merged classes.
        groups: for each merged detection, the input rows merged into it, the keeper first.
            Per-detection data follows from it (masks OR-ed over the group, keypoints
            and rotated boxes taken from the keeper).
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    groups: list[list[int]]

    @property
    def keepers(self) -> np.ndarray:
        """``(M,)`` the row each merged detection was kept from."""
        return np.array([g[0] for g in self.groups], np.int64)


def score_order(xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rows by score, highest first; ties by ``x1, y1, x2, y2`` ascending, then by row
    (SAHI ``_score_tiebreak_order``: a stable lexicographic sort)."""
    b = np.asarray(xyxy, np.float32)
    s = np.asarray(scores, np.float32)
    return np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], -s))


def overlap_matrix(xyxy: np.ndarray, metric: str = "ios") -> np.ndarray:
    """``(N, N)`` float32 pairwise ``ios`` or ``iou`` of ``xyxy`` boxes
    (SAHI ``compute_metric_matrix``; 0 where the denominator is 0)."""
    b = np.asarray(xyxy, np.float32).reshape(-1, 4)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.maximum(np.float32(0), np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]))
    ih = np.maximum(np.float32(0), np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]))
    inter = iw * ih
    den = np.minimum(area[:, None], area[None, :]) if metric == "ios" else area[:, None] + area[None, :] - inter
    out = np.zeros(inter.shape, np.float32)
    np.divide(inter, den, out=out, where=den > 0)
    return out


def _nms(matrix: np.ndarray, order: np.ndarray, threshold: float) -> dict[int, list[int]]:
    """SAHI ``nms_from_matrix``: keep the best unsuppressed box, suppress all it matches."""
    suppressed = np.zeros(len(order), bool)
    keep: dict[int, list[int]] = {}
    for idx in order.tolist():
        if suppressed[idx]:
            continue
        keep[idx] = []
        suppressed |= matrix[idx] >= threshold
    return keep


def _greedy_nmm(matrix: np.ndarray, order: np.ndarray, threshold: float) -> dict[int, list[int]]:
    """SAHI ``greedy_nmm_from_matrix``: each keeper takes every lower-ranked, unclaimed box it matches,
    in rank order; nothing is transitive."""
    claimed = np.zeros(len(order), bool)
    groups: dict[int, list[int]] = {}
    for pos, idx in enumerate(order.tolist()):
        if claimed[idx]:
            continue
        rest = order[pos + 1:]
        rest = rest[~claimed[rest]]
        take = rest[matrix[idx, rest] >= threshold]
        claimed[take] = True
        groups[idx] = take.tolist()
    return groups


def _nmm(matrix: np.ndarray, order: np.ndarray, xyxy: np.ndarray, scores: np.ndarray,
         threshold: float) -> dict[int, list[int]]:
    """SAHI ``nmm_from_matrix`` (transitive): boxes are visited by rank; a box that is already in a
    group brings the unclaimed boxes it dominates and matches into that same group.

    ``i`` dominates ``j`` when ``j`` scores lower, or the same with coordinates
    ``x1, y1, x2, y2`` not lexicographically above ``i``'s; a group's members are
    listed in row order per visited box (``np.where``), as SAHI does.
    """
    n = len(order)
    b = np.asarray(xyxy, np.float32)
    s = np.asarray(scores, np.float32)
    lower = s[:, None] > s[None, :]
    equal = s[:, None] == s[None, :]
    i_lt_j = np.zeros((n, n), bool)
    same = np.ones((n, n), bool)
    for col in range(4):
        i_lt_j |= same & (b[:, None, col] < b[None, :, col])
        same &= b[:, None, col] == b[None, :, col]
    dominates = ~np.eye(n, dtype=bool) & (lower | (equal & ~i_lt_j))
    claimable = dominates & (matrix >= threshold)
    owner = np.full(n, -1, np.int64)
    groups: dict[int, list[int]] = {}
    for idx in order.tolist():
        if owner[idx] < 0:
            owner[idx] = idx
            groups[idx] = []
        keeper = int(owner[idx])
        new = np.flatnonzero(claimable[idx] & (owner < 0))
        owner[new] = keeper
        groups[keeper].extend(new.tolist())
    return groups


def _plan_one(xyxy: np.ndarray, scores: np.ndarray, merge: str, metric: str, threshold: float,
              rotated: np.ndarray | None) -> dict[int, list[int]]:
    matrix = probiou(rotated, rotated).astype(np.float32) if rotated is not None else overlap_matrix(xyxy, metric)
    order = score_order(xyxy, scores)
    if merge == "nms":
        return _nms(matrix, order, threshold)
    if merge == "greedynmm":
        return _greedy_nmm(matrix, order, threshold)
    return _nmm(matrix, order, xyxy, scores, threshold)


def plan_merge(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, *, merge: str = "greedynmm",
               metric: str = "ios", threshold: float = 0.5, class_agnostic: bool = False,
               rotated: np.ndarray | None = None) -> dict[int, list[int]]:
    """Which rows merge: ``{keeper: [rows planned into it, in SAHI's order]}``, in output order.

    SAHI ``greedy_nmm`` / ``nmm`` / ``nms`` and their ``batched_*`` forms
    (``_batched_apply``): per class, classes in ascending id order, each
    class's keepers by rank; for ``nms`` the keepers of all classes are then
    sorted by score (stable), as SAHI's batched NMS returns them. ``nms`` plans
    no members (suppressed rows are simply not kept).
    """
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    class_id = np.asarray(class_id).reshape(-1)
    if len(xyxy) == 0:
        return {}
    if class_agnostic:
        return _plan_one(xyxy, scores, merge, metric, threshold, rotated)
    plan: dict[int, list[int]] = {}
    for c in np.unique(class_id.astype(np.float32)):  # SAHI keys classes by its float32 array
        rows = np.flatnonzero(class_id.astype(np.float32) == c)
        local = _plan_one(xyxy[rows], scores[rows], merge, metric, threshold,
                          None if rotated is None else np.asarray(rotated)[rows])
        for keep, members in local.items():
            plan[int(rows[keep])] = [int(rows[m]) for m in members]
    if merge == "nms":
        ranked = sorted(plan, key=lambda i: scores[i], reverse=True)
        plan = {i: plan[i] for i in ranked}
    return plan


def _matches(a: np.ndarray, b: np.ndarray, metric: str, threshold: float) -> bool:
    """SAHI ``has_match`` on two boxes, in float64 (a zero denominator never matches)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    den = min(area_a, area_b) if metric == "ios" else area_a + area_b - inter
    return bool(den > 0 and inter / den >= threshold)


def apply_merge(plan: dict[int, list[int]], xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, *,
                metric: str = "ios", threshold: float = 0.5) -> MergeResult:
    """SAHI ``_apply_merge`` with ``merge_object_prediction_pair``: fold each planned row into its keeper
    while it still matches the keeper as merged so far (box union, max score, class of the higher score)."""
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4).astype(np.float64)
    conf = np.asarray(scores, np.float32).reshape(-1)
    cls = np.asarray(class_id).reshape(-1)
    out_boxes, out_conf, out_cls, groups = [], [], [], []
    for keep, members in plan.items():
        box, score, klass, group = boxes[keep].copy(), conf[keep], cls[keep], [keep]
        for m in members:
            if not _matches(box, boxes[m], metric, threshold):
                continue
            box[:2] = np.minimum(box[:2], boxes[m, :2])
            box[2:] = np.maximum(box[2:], boxes[m, 2:])
            klass = klass if score > conf[m] else cls[m]
            score = max(score, conf[m])
            group.append(m)
        out_boxes.append(box)
        out_conf.append(score)
        out_cls.append(klass)
        groups.append(group)
    return MergeResult(np.array(out_boxes, np.float32).reshape(-1, 4), np.array(out_conf, np.float32),
                       np.array(out_cls, np.int32), groups)


def merge_masks(masks: Masks, groups: Sequence[Sequence[int]]) -> Masks:
    """One mask per group: the OR of its members' masks (SAHI ``get_merged_mask``, on bitmaps).

    Each merged crop spans the union of its members' crops; only those pixels are touched.
    """
    origins = np.zeros((len(groups), 2), np.int64)
    crops: list[np.ndarray] = []
    boxes = masks.boxes
    for g, rows in enumerate(groups):
        rows = list(rows)
        if len(rows) == 1:
            origins[g] = masks.origins[rows[0]]
            crops.append(masks.crops[rows[0]])
            continue
        x0, y0 = boxes[rows, 0].min(), boxes[rows, 1].min()
        x1, y1 = boxes[rows, 2].max(), boxes[rows, 3].max()
        crop = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), bool)
        for r in rows:
            (x, y), c = masks.origins[r], masks.crops[r]
            crop[y - y0:y - y0 + c.shape[0], x - x0:x - x0 + c.shape[1]] |= c
        origins[g] = (x0, y0)
        crops.append(crop)
    return Masks(masks.image_shape, origins, crops)
