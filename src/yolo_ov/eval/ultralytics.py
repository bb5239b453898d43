"""Score results the way Ultralytics' ``val`` does (``--protocol ultralytics``).

Per image, Ultralytics matches detections (descending confidence) with the
labelled objects of their class (:func:`~yolo_ov.eval.metrics_ultralytics.match_predictions`)
by box IoU, by mask IoU (segmentation) and by OKS (pose), pools every
image's matches and computes its own AP (:func:`~yolo_ov.eval.metrics_ultralytics.ap_per_class`).
This module feeds it the same inputs:

* **Boxes and keypoints** are compared in the pixels of each result's
  ``image_shape``. Under the ``ultralytics`` protocol the validator hands the
  model images already resized to the network size (the long side), so
  those are the network's pixels less the padding: IoU and OKS do not change
  with a shift, so this is Ultralytics' comparison. Ultralytics does not
  clip boxes or keypoints to the image before scoring; the validator
  attaches the unclipped ones (``data["val_xyxy"]``, ``data["val_keypoints"]``,
  :func:`ultralytics_extras`) and they are used when present (on coco96
  clipping moved YOLOv8n INT8 box mAP50-95 by 0.0002 and pose mAP50-95 by
  0.007). OKS uses the labelled box's area x 0.53 and visibility > 0 as
  Ultralytics does.
* **Masks** are compared where Ultralytics compares them: on the
  prototypes' grid, a quarter of the letterboxed network input (160x160 at
  640). Labelled polygons are filled at full input resolution and shrunk 4x
  (bilinear, as its ``polygon2mask``), overlapping objects drawn largest
  first so a smaller object owns the pixels it covers (its
  ``overlap_mask``). Predicted masks are Ultralytics' ``process_mask``
  without upsampling: ``coefficients @ prototypes > 0`` on the grid, cut to
  the box scaled to the grid (from the network outputs: the validator
  attaches them to each result as ``data["mask_grid"]``, see
  :func:`ultralytics_extras`).
  Full-resolution masks cannot stand in for them: which grid cells a
  thresholded, upsampled mask implies is ambiguous along every edge, and
  mask AP at IoU 0.9-0.95 moved by up to 0.01 with the guess on coco96. A
  result without ``mask_grid`` falls back to that guess (the mean of each
  cell's centre pixels), so treat such a figure as approximate.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..imaging.letterbox import letterbox_geometry
from ..ops.rotated import probiou
from ..results import Detections
from .dataset import ImageLabels, YoloDataset
from .metrics_ultralytics import (
    OKS_AREA_FACTOR,
    APResult,
    ap_per_class,
    box_iou,
    keypoint_oks,
    mask_iou,
    match_predictions,
)

__all__ = ["MASK_RATIO", "rotated_labels", "score_ultralytics", "ultralytics_extras"]

#: Masks are compared at 1/MASK_RATIO of the network input (Ultralytics' mask_ratio).
MASK_RATIO = 4


class _Pool:
    """Matches of every image, pooled for :func:`ap_per_class`."""

    def __init__(self) -> None:
        self.tp: list[np.ndarray] = []
        self.conf: list[np.ndarray] = []
        self.pred_cls: list[np.ndarray] = []
        self.target_cls: list[np.ndarray] = []

    def add(self, tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> None:
        self.tp.append(tp)
        self.conf.append(conf)
        self.pred_cls.append(pred_cls)
        self.target_cls.append(target_cls)

    def result(self) -> APResult:
        return ap_per_class(
            np.concatenate(self.tp) if self.tp else np.zeros((0, 10), bool),
            np.concatenate(self.conf) if self.conf else np.zeros(0),
            np.concatenate(self.pred_cls) if self.pred_cls else np.zeros(0, np.int64),
            np.concatenate(self.target_cls) if self.target_cls else np.zeros(0, np.int64),
        )


def score_ultralytics(
    dataset: YoloDataset, got: dict[int, Detections], *, task: str, network_hw: tuple[int, int],
    sigmas: np.ndarray | None = None,
) -> dict[str, APResult]:
    """Ultralytics' AP of the boxes (``"box"``), and of the masks (``"mask"``,
    ``segment``) or keypoints (``"pose"``, with OKS ``sigmas``).

    ``got`` maps item index -> result; items without one count as all misses.
    """
    pools = {"box": _Pool(), "mask": _Pool(), "pose": _Pool()}
    for i, item in enumerate(dataset.items):
        det = got.get(i)
        gt_cls = item.class_id.astype(np.int64)
        if det is None or not len(det):
            empty = np.zeros((0, 10), bool)
            for name in pools:
                pools[name].add(empty, np.zeros(0), np.zeros(0, np.int64), gt_cls)
            continue
        order = np.argsort(-det.confidence, kind="stable")
        det = det[order]
        conf = det.confidence.astype(np.float64)
        cls = det.class_id.astype(np.int64)
        shape = det.image_shape
        gt_boxes = item.xyxy(shape)
        if task == "obb":  # rotated boxes, matched by probiou as Ultralytics' OBB validator does
            iou = probiou(rotated_labels(item, shape), np.asarray(det.data["xywhr"], np.float64))
            pools["box"].add(match_predictions(cls, gt_cls, iou), conf, cls, gt_cls)
            continue
        boxes = det.data.get("val_xyxy", det.xyxy)
        pools["box"].add(match_predictions(cls, gt_cls, box_iou(gt_boxes, boxes)), conf, cls, gt_cls)
        if task == "segment":
            gt_masks, gt_order = _label_masks(item, shape, network_hw)
            grid = det.data.get("mask_grid")
            n_cells = (network_hw[0] // MASK_RATIO) * (network_hw[1] // MASK_RATIO)
            pred_masks = (np.unpackbits(grid, axis=1, count=n_cells).astype(bool) if grid is not None
                          else _prediction_masks(det, network_hw))
            iou = mask_iou(gt_masks, pred_masks) if len(gt_order) else np.zeros((0, len(det)))
            pools["mask"].add(match_predictions(cls, gt_cls[gt_order], iou), conf, cls, gt_cls)
        if task == "pose":
            gt_kpts = item.keypoints_px(shape)
            area = (gt_boxes[:, 2:] - gt_boxes[:, :2]).prod(axis=1) * OKS_AREA_FACTOR
            kpts = det.data.get("val_keypoints", det.data["keypoints"])
            oks = keypoint_oks(gt_kpts, np.asarray(kpts), area, sigmas)  # type: ignore[arg-type]
            pools["pose"].add(match_predictions(cls, gt_cls, oks), conf, cls, gt_cls)
    kinds = ["box"] + (["mask"] if task == "segment" else []) + (["pose"] if task == "pose" else [])
    return {kind: pools[kind].result() for kind in kinds}


def rotated_labels(item: ImageLabels, shape: tuple[int, int]) -> np.ndarray:
    """The labelled objects as rotated boxes ``(N, 5)`` ``cx, cy, w, h, angle`` in pixels of ``shape``:
    the minimum-area rectangle of each labelled polygon (DOTA-style labels give its four corners), as
    Ultralytics converts them (``cv2.minAreaRect``)."""
    out = np.zeros((len(item), 5), np.float64)
    for k, poly in enumerate(item.polygons(shape)):
        (cx, cy), (w, h), angle = cv2.minAreaRect(poly.astype(np.float32))
        out[k] = (cx, cy, w, h, np.deg2rad(angle))
    return out


def _network_geometry(shape: tuple[int, int], network_hw: tuple[int, int]) -> tuple[float, int, int]:
    """``(gain, pad_left, pad_top)`` of an image of ``shape`` in the letterboxed network input."""
    geo = letterbox_geometry(shape, network_hw)
    return geo.scale, geo.pad_left, geo.pad_top


def _label_masks(
    item: ImageLabels, shape: tuple[int, int], network_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Labelled masks on the quarter-resolution network grid, overlaps resolved, and their object order.

    Returns ``(L, gh * gw)`` bool masks and the object index of each row
    (largest object first).
    """
    n = len(item)
    gh, gw = network_hw[0] // MASK_RATIO, network_hw[1] // MASK_RATIO
    if not n:
        return np.zeros((0, gh * gw), bool), np.zeros(0, np.int64)
    gain, left, top = _network_geometry(shape, network_hw)
    small = []
    for poly in item.polygons(shape):
        full = np.zeros(network_hw, np.uint8)
        pts = (poly * gain + (left, top)).astype(np.int32)  # integer vertices, as Ultralytics' polygon2mask
        cv2.fillPoly(full, [pts.reshape(-1, 1, 2)], 1)
        small.append(cv2.resize(full, (gw, gh), interpolation=cv2.INTER_LINEAR))
    stack = np.stack(small)
    order = np.argsort(-stack.reshape(n, -1).sum(axis=1))  # largest first; later (smaller) objects win overlaps
    owner = np.zeros((gh, gw), np.int64)
    for rank, k in enumerate(order, start=1):
        owner[stack[k] > 0] = rank
    masks = owner.reshape(1, -1) == np.arange(1, n + 1)[:, None]
    return masks, order.astype(np.int64)


def _prediction_masks(det: Detections, network_hw: tuple[int, int]) -> np.ndarray:
    """Each predicted mask on the quarter-resolution network grid: ``(D, gh * gw)`` bool."""
    masks = det.data["masks"]
    gh, gw = network_hw[0] // MASK_RATIO, network_hw[1] // MASK_RATIO
    out = np.zeros((len(masks), gh, gw), bool)
    gain, left, top = _network_geometry(det.image_shape, network_hw)
    if abs(gain - 1.0) > 1e-9:  # results not at network scale (default protocol): resample the whole mask
        for k in range(len(masks)):
            full = np.zeros(network_hw, np.uint8)
            h, w = round(det.image_shape[0] * gain), round(det.image_shape[1] * gain)
            full[top:top + h, left:left + w] = cv2.resize(masks.mask(k).astype(np.uint8), (w, h),
                                                          interpolation=cv2.INTER_NEAREST)
            out[k] = cv2.resize(full.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA) >= 0.5
        return out.reshape(len(masks), gh * gw)
    for k, ((x, y), crop) in enumerate(zip(masks.origins, masks.crops, strict=True)):
        if not crop.size:
            continue
        x0, y0 = int(x) + left, int(y) + top  # the crop's place in the network input
        cols, wx = _cell_taps(x0, crop.shape[1], gw)
        rows, wy = _cell_taps(y0, crop.shape[0], gh)
        if len(cols) and len(rows):
            out[k, rows[:, None], cols[None, :]] = (wy @ crop.astype(np.float32) @ wx.T) >= 0.5
    return out.reshape(len(masks), gh * gw)


def _cell_taps(start: int, size: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid cells a crop covers along one axis, and which of its pixels decide each cell.

    Ultralytics keeps a quarter-resolution cell ``j`` when its first input
    pixel ``4j`` lies in the box (its ``crop_mask`` on box / 4), and the cell's
    value is the mask logit at the cell's centre; at full resolution the two
    pixels nearest that centre (``4j + 1``, ``4j + 2``) straddle it. So a cell
    is kept when pixel ``4j`` is in the crop and takes the mean of its centre
    pixels inside the crop (pixel ``4j`` alone when they fall outside).

    Returns the cell indices ``(n,)`` and an ``(n, size)`` averaging matrix.
    """
    r = MASK_RATIO
    first = -(-start // r)  # the first cell whose pixel 4j is at or after start
    last = min(-(-(start + size) // r), cells)  # cells with 4j < start + size
    idx = np.arange(max(first, 0), last)
    weights = np.zeros((len(idx), size), np.float32)
    for n, j in enumerate(idx):
        centre = [p - start for p in (r * j + 1, r * j + 2) if start <= p < start + size]
        taps = centre or [r * j - start]
        weights[n, taps] = 1.0 / len(taps)
    return idx, weights



def ultralytics_extras(
    det: Detections, rows: np.ndarray, protos: np.ndarray | None, *, task: str, num_classes: int,
    end2end: bool, network_hw: tuple[int, int], kpt_shape: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """What Ultralytics' validator scores that a deployed result no longer holds, from the network outputs.

    Ultralytics matches and scores in network pixels, before anything is
    clipped to the image: ``"val_xyxy"`` are the unclipped boxes, and for
    pose ``"val_keypoints"`` the unclipped keypoints (both in the result's
    pixels); for segmentation ``"mask_grid"`` are its ``process_mask``
    masks on the prototype grid, as packed bits ``(N, ceil(gh * gw / 8))``.

    Args:
        det: one image's result (its confidences and classes identify the rows).
        rows: the image's detection output: ``(4 + nc + extra, anchors)`` raw
            (centre ``xywh``, class scores, then mask coefficients or
            keypoints) or ``(N, 6 + extra)`` end-to-end (``x1 y1 x2 y2 score class``).
        protos: ``(nm, gh, gw)`` prototypes (segmentation).
        network_hw: the letterboxed network input.

    Each detection's row is found by its exact score and class (ties: the
    nearest box), so the values come from the very row the head decoded.
    """
    if end2end:
        boxes, extra = rows[:, :4], rows[:, 6:]
        scores, classes = rows[:, 4], rows[:, 5].astype(np.int64)
    else:
        xywh = rows[:4].T
        boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
        extra = rows[4 + num_classes:].T
    geo = letterbox_geometry(det.image_shape, network_hw)
    pad = np.array([geo.pad_left, geo.pad_top] * 2, np.float64)
    shown = det.xyxy.astype(np.float64) * geo.scale + pad
    cls = det.class_id.astype(np.int64)
    # each detection's score row: (D, rows) with -inf where the class differs (end-to-end)
    table = np.where(classes[None, :] == cls[:, None], scores[None, :], -np.inf) if end2end else rows[4 + cls]
    equal = table == det.confidence[:, None]
    picked = equal.argmax(axis=1)
    for k in np.flatnonzero(equal.sum(axis=1) != 1):  # no exact score (should not happen) or a tie
        hits = np.flatnonzero(equal[k])
        if not len(hits):
            hits = np.array([int(np.argmin(np.abs(table[k] - det.confidence[k])))])
        picked[k] = hits[int(np.argmin(np.abs(np.clip(boxes[hits], pad, None) - shown[k]).sum(axis=1)))]
    net_boxes = boxes[picked].astype(np.float64)
    out = {"val_xyxy": ((net_boxes - pad) / geo.scale).astype(np.float32)}
    if task == "pose" and kpt_shape is not None:
        k, d = kpt_shape
        kpts = extra[picked, :k * d].astype(np.float64).reshape(len(det), k, d).copy()
        kpts[..., :2] = (kpts[..., :2] - pad[:2]) / geo.scale
        out["val_keypoints"] = kpts.astype(np.float32)
    if task == "segment" and protos is not None:
        nm, gh, gw = protos.shape
        coefs = extra[picked, :nm].astype(np.float32)
        flat = protos.astype(np.float32, copy=False)
        box = net_boxes * np.array([gw / network_hw[1], gh / network_hw[0]] * 2)  # to the grid, as Ultralytics
        # Ultralytics keeps grid cells c with box_x1 <= c < box_x2 (rows alike): for integer c, c from
        # ceil(x1) to ceil(x2) - 1. Only those cells are computed (crop first).
        lo = np.clip(np.ceil(box[:, :2]), 0, [gw, gh]).astype(np.int64)
        hi = np.clip(np.ceil(box[:, 2:]), 0, [gw, gh]).astype(np.int64)
        masks = np.zeros((len(det), gh, gw), bool)
        for k in range(len(det)):
            (x0, y0), (x1, y1) = lo[k], hi[k]
            if x0 < x1 and y0 < y1:
                window = flat[:, y0:y1, x0:x1].reshape(nm, -1)
                masks[k, y0:y1, x0:x1] = (coefs[k] @ window).reshape(y1 - y0, x1 - x0) > 0
        out["mask_grid"] = np.packbits(masks.reshape(len(det), -1), axis=1)
    return out
