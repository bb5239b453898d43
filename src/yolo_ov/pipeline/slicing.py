"""Sliced inference, the sequential reference: what SAHI's ``get_sliced_prediction`` computes.

:func:`predict_sliced` runs one image the simple way, tile after tile, and is
the reference the concurrent version (the tiles of one image as concurrent
requests through the pipeline's fan-out/fan-in) is checked against. It is
made of the three parts the concurrent version reuses:

- :func:`plan_tiles`: the tiles (SAHI's grid, :func:`~yolo_ov.imaging.tiles.tile_grid`)
  and whether a full-image pass is added (SAHI adds it only when there is more than one tile);
- per tile, ``predict(view)`` on a view of the decoded image (the letterbox of
  each tile into the model's input is the detector's, as SAHI's Ultralytics
  backend letterboxes each slice into ``image_size``), then :func:`shift_detections`
  into full-image coordinates;
- :func:`merge_parts`: the fan-in, SAHI's postprocess (:mod:`yolo_ov.ops.merge`)
  over the tiles' detections in tile order followed by the full pass's.

What SAHI's Ultralytics backend does to each tile's predictions before the
merge, and is reproduced in :func:`merge_parts`: boxes with no width or height
are dropped; a segmentation prediction whose mask is empty is dropped. SAHI
also replaces a segmentation box by the bounds of its mask polygon (integer,
the last pixel's index as the maximum): ``sahi_boxes=True`` does the same,
so boxes of segmentation results compare with SAHI's one to one; by default
boxes stay the model's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import SliceConfig
from ..errors import ConfigError
from ..imaging.tiles import TileGrid, tile_grid, tile_views
from ..ops.masks import Masks
from ..ops.merge import apply_merge, merge_masks, plan_merge
from ..results import Detections

__all__ = ["concat_detections", "merge_parts", "plan_tiles", "predict_sliced", "shift_detections"]

Predict = Callable[[np.ndarray], Detections]


def plan_tiles(image_hw: tuple[int, int], cfg: SliceConfig) -> tuple[TileGrid, bool]:
    """The tiles of an ``image_hw`` image and whether a full-image pass joins them.

    The full pass runs when ``cfg.full_pass`` and the image is more than one
    tile (SAHI: ``num_slices > 1 and perform_standard_pred``): an image that is
    one tile is not run twice.
    """
    grid = tile_grid(image_hw, cfg.tile_hw, cfg.overlap_hw)
    return grid, bool(cfg.full_pass and len(grid) > 1)


def shift_detections(det: Detections, dx: int, dy: int, full_shape: tuple[int, int]) -> Detections:
    """``det`` (of a tile whose top-left is ``dx, dy``) in the coordinates of the full image.

    Boxes, masks (placed into the full image), keypoints and rotated boxes move;
    other per-detection data is kept. A small local helper: ``Detections.offset``
    replaces it once the results branch lands.
    """
    shift = np.array([dx, dy, dx, dy], np.float32)
    data: dict[str, Any] = {}
    for key, value in det.data.items():
        if isinstance(value, Masks):
            data[key] = Masks(full_shape, value.origins + np.array([dx, dy], np.int64), value.crops)
        elif key == "keypoints":
            kp = np.array(value, np.float32, copy=True)
            kp[..., 0] += dx
            kp[..., 1] += dy
            data[key] = kp
        elif key == "xywhr":
            r = np.array(value, np.float32, copy=True)
            r[:, 0] += dx
            r[:, 1] += dy
            data[key] = r
        else:
            data[key] = value
    return Detections(det.xyxy + shift, det.confidence, det.class_id, det.names, full_shape, det.source,
                      det.stream, det.frame, det.timing, data)


def _concat(values: Sequence[Any], full_shape: tuple[int, int]) -> Any:
    if isinstance(values[0], Masks):
        origins = np.concatenate([m.origins for m in values]) if values else np.zeros((0, 2), np.int64)
        return Masks(full_shape, origins, [c for m in values for c in m.crops])
    return np.concatenate([np.asarray(v) for v in values])


def concat_detections(parts: Sequence[Detections], full_shape: tuple[int, int],
                      names: dict[int, str] | None = None) -> Detections:
    """The rows of ``parts`` (already in full-image coordinates) one after the other.

    Data fields present in every part are concatenated; a field missing from
    one part is dropped (parts of one model always have the same fields).
    """
    names = dict(names if names is not None else (parts[0].names if parts else {}))
    if not parts:
        return Detections.empty(names=names, image_shape=full_shape)
    keys = [k for k in parts[0].data if all(k in p.data for p in parts)]
    data = {k: _concat([p.data[k] for p in parts], full_shape) for k in keys}
    return Detections(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.confidence for p in parts]),
                      np.concatenate([p.class_id for p in parts]), names, full_shape, data=data)


def _sahi_filter(det: Detections, sahi_boxes: bool) -> Detections:
    """What SAHI's Ultralytics backend drops or rewrites per prediction (see the module docstring)."""
    keep = (det.xyxy[:, 2] > det.xyxy[:, 0]) & (det.xyxy[:, 3] > det.xyxy[:, 1])
    masks = det.data.get("masks")
    if isinstance(masks, Masks):
        keep &= masks.area > 0
    if not keep.all():
        det = det[keep]
    masks = det.data.get("masks")
    if sahi_boxes and isinstance(masks, Masks) and len(masks):
        det.xyxy = mask_bounds(masks)
    return det


def mask_bounds(masks: Masks) -> np.ndarray:
    """``(N, 4)`` float32 pixel bounds of each (non-empty) mask as SAHI reports a segmentation box:
    the first and the *last* pixel's column and row (the polygon's bounds), not the last + 1."""
    out = np.zeros((len(masks), 4), np.float32)
    for i, ((x, y), crop) in enumerate(zip(masks.origins, masks.crops, strict=True)):
        cols = np.flatnonzero(crop.any(axis=0))
        rows = np.flatnonzero(crop.any(axis=1))
        if len(cols):
            out[i] = (x + cols[0], y + rows[0], x + cols[-1], y + rows[-1])
    return out


def merge_parts(parts: Sequence[Detections], cfg: SliceConfig, full_shape: tuple[int, int], *,
                names: dict[int, str] | None = None, sahi_boxes: bool = False,
                obb_probiou: bool = True) -> Detections:
    """The fan-in: the tiles' detections (tile order, then the full pass), shifted already, merged as SAHI does.

    Rotated boxes (``data["xywhr"]``) are always merged by ``nms`` (SAHI forces
    it for OBB models, a rotated box has no union); with ``obb_probiou`` their
    overlap is Ultralytics' ``probiou``, without it the axis-aligned ``ios``/``iou``
    of their enclosing boxes, as SAHI 0.12.8 does. Masks of a merged group are
    OR-ed; keypoints and rotated boxes are the keeper's.
    """
    parts = [_sahi_filter(p, sahi_boxes) for p in parts]
    allrows = concat_detections(parts, full_shape, names)
    rotated = allrows.data.get("xywhr")
    merge = "nms" if rotated is not None else cfg.merge
    if len(allrows) <= 1:  # SAHI does not postprocess a single prediction
        return allrows
    plan = plan_merge(allrows.xyxy, allrows.confidence, allrows.class_id, merge=merge, metric=cfg.metric,
                      threshold=cfg.threshold, class_agnostic=cfg.class_agnostic,
                      rotated=np.asarray(rotated) if rotated is not None and obb_probiou else None)
    merged = apply_merge(plan, allrows.xyxy, allrows.confidence, allrows.class_id, metric=cfg.metric,
                         threshold=cfg.threshold)
    keepers = merged.keepers
    data: dict[str, Any] = {}
    for key, value in allrows.data.items():
        data[key] = merge_masks(value, merged.groups) if isinstance(value, Masks) else np.asarray(value)[keepers]
    xyxy = merged.xyxy
    if sahi_boxes and isinstance(data.get("masks"), Masks):
        xyxy = mask_bounds(data["masks"])  # SAHI: the box of a merged mask is its polygon's bounds
    return Detections(xyxy, merged.confidence, merged.class_id, allrows.names, full_shape, data=data)


def predict_sliced(predict: Predict, image: np.ndarray, cfg: SliceConfig, *, source: str | None = None,
                   sahi_boxes: bool = False, obb_probiou: bool = True) -> Detections:
    """Sliced prediction of one decoded BGR image, one tile after another (the reference).

    Args:
        predict: one image in, its :class:`Detections` out, in that image's pixels:
            a latency-mode :class:`~yolo_ov.detector.Detector` (its ``__call__``) letterboxes
            each tile into the model's input as SAHI's backend does.
        image: the decoded ``HxWx3`` BGR image; tiles are views into it.
        cfg: the slicing settings.
        sahi_boxes, obb_probiou: see :func:`merge_parts`.

    Returns:
        The merged :class:`Detections` of the whole image, with ``slices``: the
        number of tiles (the full pass not counted, as SAHI counts them).

    Raises:
        ConfigError: ``predict`` classifies (a :class:`~yolo_ov.results.Classification`): nothing to slice.
    """
    full_shape = (int(image.shape[0]), int(image.shape[1]))
    grid, full_pass = plan_tiles(full_shape, cfg)
    parts: list[Detections] = []
    names: dict[int, str] | None = None
    for (dx, dy), view in zip(grid.offsets.tolist(), tile_views(image, grid), strict=True):
        det = predict(view)
        if not isinstance(det, Detections):
            raise ConfigError("slicing needs a model that finds boxes; a classification model cannot be sliced")
        names = dict(det.names)
        parts.append(shift_detections(det, dx, dy, full_shape))
    if full_pass:
        parts.append(predict(image))
    result = merge_parts(parts, cfg, full_shape, names=names, sahi_boxes=sahi_boxes, obb_probiou=obb_probiou)
    result.source = source
    result.slices = len(grid)  # type: ignore[attr-defined]  # a real field once the pipeline integration lands
    return result
