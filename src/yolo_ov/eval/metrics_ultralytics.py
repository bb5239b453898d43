"""Ultralytics' own validation metrics, written here from their documented algorithm (numpy only).

``yolo-ov val --protocol ultralytics`` must land on the figure Ultralytics'
``val`` prints, and that figure is not COCO's: Ultralytics matches and
integrates its precision-recall curve its own way. This module is an
independent implementation of that algorithm (Ultralytics is AGPL-3.0, this
project Apache-2.0: nothing here is copied), under the names Ultralytics
uses so a reader can hold the two side by side:

* :func:`match_predictions`: per image and per IoU threshold (0.50:0.05:0.95),
  detections are taken in descending confidence order; each claims the
  still-unclaimed ground-truth object **of its class** with the highest IoU,
  and is a true positive when that IoU reaches the threshold. (COCO's
  matching is the same greedy idea, but COCO also ignores crowd regions and
  splits by area.)
* :func:`compute_ap`: the precision envelope (running maximum from the
  right) of the curve padded with ``(0, 1)`` before it and a drop to
  precision 0 right after the last recall reached; the envelope is sampled
  by **linear interpolation** at 101 recall points and integrated with the
  **trapezoid rule**. COCO instead takes, at each of 101 recall points, the
  envelope's value at the first curve point with recall at or above it, and
  averages (a step function). The two differ by a few thousandths of mAP on
  the same detections.
* :func:`ap_per_class`: detections of all images pooled and sorted by
  confidence; AP per class over the classes that have labels (a class with
  labels but no detections has AP 0; detections of classes without labels
  are ignored); mAP is the mean over those classes. Precision and recall
  are read at the confidence that maximises the (box-filtered) mean F1, as
  Ultralytics reports them.

Matching scores for the other tasks: :func:`box_iou` (boxes), :func:`mask_iou`
(segmentation masks), :func:`keypoint_oks` (pose, COCO's object keypoint
similarity with the box area x 0.53 as Ultralytics uses), :func:`probiou`
(oriented boxes: the overlap of the boxes' Gaussian approximations, which
Ultralytics' OBB validation and rotated NMS use instead of polygon IoU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ops.rotated import probiou  # one implementation, shared with the OBB head's rotated NMS

__all__ = [
    "AP_RECALL_POINTS",
    "COCO_KEYPOINT_SIGMAS",
    "IOU_THRESHOLDS",
    "APResult",
    "ap_per_class",
    "box_iou",
    "compute_ap",
    "keypoint_oks",
    "mask_iou",
    "match_predictions",
    "probiou",
]

#: The 10 IoU thresholds of mAP50-95.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: Recall points the precision envelope is sampled at (Ultralytics' and COCO's 101).
AP_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: COCO's per-keypoint OKS sigmas for the 17 person keypoints (COCO keypoint evaluation).
COCO_KEYPOINT_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89],
    dtype=np.float64,
) / 10.0
#: Ultralytics' object area for OKS: the box area times this (from xtcocotools' COCO keypoint evaluation).
OKS_AREA_FACTOR = 0.53

_EPS = 1e-16
_CURVE_POINTS = 1000  # confidence grid of the precision/recall/F1 curves
_F1_SMOOTHING = 0.1  # box-filter width, as a fraction of the curve, before taking the best F1


def box_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """IoU of every ``xyxy`` box in ``a`` (N, 4) with every box in ``b`` (M, 4): (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + eps)


def mask_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """IoU of every binary mask in ``a`` (N, ...) with every mask in ``b`` (M, ...) of the same size: (N, M)."""
    fa = np.asarray(a).reshape(len(a), -1).astype(np.float32)
    fb = np.asarray(b).reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(axis=1)[:, None] + fb.sum(axis=1)[None, :] - inter
    return (inter / (union + eps)).astype(np.float64)


def keypoint_oks(
    gt: np.ndarray, pred: np.ndarray, area: np.ndarray, sigmas: np.ndarray = COCO_KEYPOINT_SIGMAS,
    eps: float = 1e-7,
) -> np.ndarray:
    """Object keypoint similarity of every labelled object with every prediction: (N, M).

    Args:
        gt: (N, K, 3) labelled keypoints ``x, y, visibility``; keypoints with
            visibility 0 are not scored.
        pred: (M, K, 2 or 3) predicted keypoints (``x, y[, confidence]``).
        area: (N,) object scale: Ultralytics passes the box area x :data:`OKS_AREA_FACTOR`.
        sigmas: (K,) per-keypoint falloff (COCO's for person keypoints).
    """
    gt = np.asarray(gt, np.float64)
    pred = np.asarray(pred, np.float64)
    sig = np.asarray(sigmas, np.float64)
    d2 = ((gt[:, None, :, :2] - pred[None, :, :, :2]) ** 2).sum(axis=-1)  # (N, M, K)
    e = d2 / ((2 * sig) ** 2 * (np.asarray(area, np.float64)[:, None, None] + eps) * 2)
    seen = gt[..., 2] != 0  # (N, K)
    return (np.exp(-e) * seen[:, None, :]).sum(axis=-1) / (seen.sum(axis=-1)[:, None] + eps)


def match_predictions(
    pred_cls: np.ndarray, true_cls: np.ndarray, iou: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS
) -> np.ndarray:
    """Which detections of one image are true positives at each IoU threshold.

    Args:
        pred_cls: (D,) classes of the detections, **in descending confidence order**.
        true_cls: (L,) classes of the labelled objects.
        iou: (L, D) IoU (or OKS) of each labelled object with each detection.
        thresholds: (T,) IoU thresholds.

    Returns:
        (D, T) bool: detection ``j`` is a true positive at threshold ``t``.
    """
    pred_cls = np.asarray(pred_cls)
    true_cls = np.asarray(true_cls)
    thresholds = np.asarray(thresholds, np.float64)
    correct = np.zeros((len(pred_cls), len(thresholds)), dtype=bool)
    if not len(pred_cls) or not len(true_cls):
        return correct
    score = np.where(true_cls[:, None] == pred_cls[None, :], np.asarray(iou, np.float64), 0.0)
    claimed = np.zeros((len(true_cls), len(thresholds)), dtype=bool)
    cols = np.arange(len(thresholds))
    for j in np.flatnonzero((score >= thresholds.min()).any(axis=0)):  # only detections that can match anything
        free = np.where(claimed, 0.0, score[:, j, None])  # (L, T): IoU with each object not yet claimed
        best = free.argmax(axis=0)
        hit = free[best, cols] >= thresholds
        correct[j] = hit
        claimed[best[hit], cols[hit]] = True
    return correct


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Ultralytics' AP of one precision-recall curve (points in descending-confidence order).

    The curve is padded with precision 1 at recall 0 and, after its last
    point, with precision 0 (at the last recall, then at recall 1); its
    envelope (running maximum from the right) is linearly interpolated at
    :data:`AP_RECALL_POINTS` and integrated with the trapezoid rule.
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    last = recall[-1] if len(recall) else 1.0
    r = np.concatenate(([0.0], recall, [last, 1.0]))
    p = np.concatenate(([1.0], precision, [0.0, 0.0]))
    envelope = np.maximum.accumulate(p[::-1])[::-1]
    y = np.interp(AP_RECALL_POINTS, r, envelope)
    dx = np.diff(AP_RECALL_POINTS)
    return float(((y[1:] + y[:-1]) * dx).sum() / 2)


@dataclass(frozen=True)
class APResult:
    """Per-class AP at every IoU threshold, and Ultralytics' summary figures.

    Attributes:
        classes: (C,) class ids that have labels, ascending.
        instances: (C,) labelled objects per class.
        ap: (C, T) AP per class and IoU threshold.
        precision, recall: (C,) at the confidence of the best mean F1.
    """

    classes: np.ndarray
    instances: np.ndarray
    ap: np.ndarray
    precision: np.ndarray
    recall: np.ndarray

    @property
    def map50_95(self) -> float:
        return float(self.ap.mean()) if self.ap.size else 0.0

    @property
    def map50(self) -> float:
        return float(self.ap[:, 0].mean()) if self.ap.size else 0.0

    @property
    def mean_precision(self) -> float:
        return float(self.precision.mean()) if self.precision.size else 0.0

    @property
    def mean_recall(self) -> float:
        return float(self.recall.mean()) if self.recall.size else 0.0


def ap_per_class(
    tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray
) -> APResult:
    """Ultralytics' AP per class from pooled detections.

    Args:
        tp: (D, T) true-positive flags of every detection of every image
            (from :func:`match_predictions`).
        conf: (D,) their confidences.
        pred_cls: (D,) their classes.
        target_cls: (L,) the class of every labelled object of every image.
    """
    tp = np.asarray(tp, bool).reshape(len(conf), -1)
    conf = np.asarray(conf, np.float64)
    pred_cls = np.asarray(pred_cls)
    order = np.argsort(-conf)  # Ultralytics' default (quick) sort: ties keep numpy's order, as there
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, counts = np.unique(np.asarray(target_cls), return_counts=True)
    n_t = tp.shape[1] if tp.ndim == 2 else len(IOU_THRESHOLDS)
    ap = np.zeros((len(classes), n_t))
    grid = np.linspace(0.0, 1.0, _CURVE_POINTS)
    p_curve = np.zeros((len(classes), _CURVE_POINTS))
    r_curve = np.zeros((len(classes), _CURVE_POINTS))
    for k, (c, n_labels) in enumerate(zip(classes, counts, strict=True)):
        mine = pred_cls == c
        if not mine.any():
            continue
        tpc = tp[mine].cumsum(axis=0)
        fpc = (~tp[mine]).cumsum(axis=0)
        recall = tpc / (n_labels + _EPS)
        precision = tpc / (tpc + fpc)
        # confidence falls along the curve, so interpolate on its negation (np.interp needs rising x)
        r_curve[k] = np.interp(-grid, -conf[mine], recall[:, 0], left=0)
        p_curve[k] = np.interp(-grid, -conf[mine], precision[:, 0], left=1)
        for t in range(n_t):
            ap[k, t] = compute_ap(recall[:, t], precision[:, t])
    f1 = 2 * p_curve * r_curve / (p_curve + r_curve + _EPS)
    best = int(_box_filter(f1.mean(axis=0), _F1_SMOOTHING).argmax()) if len(classes) else 0
    return APResult(
        classes=classes.astype(np.int64), instances=counts.astype(np.int64), ap=ap,
        precision=p_curve[:, best] if len(classes) else np.zeros(0),
        recall=r_curve[:, best] if len(classes) else np.zeros(0),
    )


def _box_filter(y: np.ndarray, fraction: float) -> np.ndarray:
    """Moving average over ``fraction`` of the curve (odd width), edges padded with the end values."""
    width = round(len(y) * fraction * 2) // 2 + 1
    half = width // 2
    padded = np.concatenate((np.full(half, y[0]), y, np.full(half, y[-1])))
    return np.convolve(padded, np.ones(width) / width, mode="valid")
