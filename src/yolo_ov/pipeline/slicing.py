"""Sliced inference: what SAHI's ``get_sliced_prediction`` computes, with the tiles in flight at once.

:class:`SliceFanOut` is the pipeline's :class:`~yolo_ov.pipeline.steps.FanOut`
for slicing: it splits a decoded image into SAHI's tiles (views, no copy) plus
the full-image pass, every part goes out as its own inference request (the
latency path puts one image's parts in flight at once; a stream interleaves
the parts of many images, its read-ahead bound counted in parts), and when the
last part is in, :meth:`SliceFanOut.merge` places them in the image and merges
them as SAHI does. :func:`predict_sliced` runs one image the simple way, tile
after tile: the reference the concurrent version is checked against. Both are
made of the same parts:

- :func:`plan_tiles`: the tiles (SAHI's grid, :func:`~yolo_ov.imaging.tiles.tile_grid`)
  and whether a full-image pass is added (SAHI adds it only when there is more than one tile);
- per tile, ``predict(view)`` on a view of the decoded image (the letterbox of
  each tile into the model's input is the detector's, as SAHI's Ultralytics
  backend letterboxes each slice into ``image_size``), then
  :meth:`~yolo_ov.results.Detections.offset` into full-image coordinates;
- :func:`merge_parts`: the fan-in, :meth:`~yolo_ov.results.Detections.merge` then
  SAHI's postprocess (:mod:`yolo_ov.ops.merge`) over the tiles' detections in
  tile order followed by the full pass's.

What SAHI's Ultralytics backend does to each tile's predictions before the
merge, and is reproduced in :func:`merge_parts`: boxes with no width or height
are dropped; a segmentation prediction whose mask is empty is dropped. SAHI
also replaces a segmentation box by the bounds of its mask polygon (integer,
the last pixel's index as the maximum): ``sahi_boxes=True`` does the same,
so boxes of segmentation results compare with SAHI's one to one; by default
boxes stay the model's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import SliceConfig
from ..errors import ConfigError
from ..imaging.tiles import TileGrid, tile_grid, tile_views
from ..ops.masks import Masks
from ..ops.merge import apply_merge, merge_masks, plan_merge
from ..results import Detections
from .steps import Part

__all__ = ["SliceFanOut", "mask_bounds", "merge_parts", "plan_tiles", "predict_sliced"]

log = logging.getLogger("yolo_ov")

#: The one line a classification model gets when asked to slice.
NO_BOXES = ("slicing needs a model that finds boxes (detect, segment, pose, obb); "
            "a classification model cannot be sliced")

Predict = Callable[[np.ndarray], Detections]


def plan_tiles(image_hw: tuple[int, int], cfg: SliceConfig) -> tuple[TileGrid, bool]:
    """The tiles of an ``image_hw`` image and whether a full-image pass joins them.

    The full pass runs when ``cfg.full_pass`` and the image is more than one
    tile (SAHI: ``num_slices > 1 and perform_standard_pred``): an image that is
    one tile is not run twice.
    """
    grid = tile_grid(image_hw, cfg.tile_hw, cfg.overlap_hw)
    return grid, bool(cfg.full_pass and len(grid) > 1)


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
    allrows = Detections.merge(parts, names=names, image_shape=full_shape)
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


class SliceFanOut:
    """The :class:`~yolo_ov.pipeline.steps.FanOut` of sliced inference: SAHI's tiles + full pass, SAHI's merge.

    Give it to any path of a :class:`~yolo_ov.detector.Detector` as ``fanout=``
    (or use ``slicing=``, which makes one): ``split`` cuts the decoded image into
    the tiles of ``cfg`` (numpy views: no pixel copied) followed by the whole
    image when ``cfg.full_pass`` and there is more than one tile (an image that is
    one tile is not run twice); ``merge`` moves each tile's detections into the
    image (:meth:`~yolo_ov.results.Detections.offset`), concatenates them in part
    order (:meth:`~yolo_ov.results.Detections.merge`) and applies SAHI's
    postprocess (:func:`merge_parts`). The result's ``slices`` is the number of tiles.

    A tile larger than the image (the image is then one tile cut to it) is
    logged once per fan-out, not once per image.

    Args:
        cfg: the slicing settings.
        sahi_boxes, obb_probiou: see :func:`merge_parts`.
    """

    def __init__(self, cfg: SliceConfig, *, sahi_boxes: bool = False, obb_probiou: bool = True) -> None:
        if not isinstance(cfg, SliceConfig):
            raise ConfigError(f"slicing must be a SliceConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.sahi_boxes = sahi_boxes
        self.obb_probiou = obb_probiou
        self._warned = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SliceFanOut({self.cfg!r})"

    def split(self, image: np.ndarray, original_hw: tuple[int, int]) -> list[Part]:
        """The tiles of ``image`` (views, tile order as SAHI's), then the full image when it runs too."""
        grid, full_pass = plan_tiles(original_hw, self.cfg)
        if grid.tile_larger_than_image:
            self._warn_once(original_hw)
        parts = [Part(view, (int(x), int(y))) for (x, y), view in zip(grid.offsets.tolist(), tile_views(image, grid),
                                                                        strict=True)]
        if full_pass:
            parts.append(Part(image, (0, 0)))
        return parts

    def merge(self, results: list[Any], parts: list[Part], original_hw: tuple[int, int]) -> Detections:
        """The parts' results (each in its part's pixels) as the image's one merged :class:`Detections`.

        Raises:
            ConfigError: a part's result has no boxes (a classification model).
        """
        full = (int(original_hw[0]), int(original_hw[1]))
        moved = []
        for result, part in zip(results, parts, strict=True):
            if not isinstance(result, Detections):
                raise ConfigError(NO_BOXES)
            moved.append(result.offset(part.offset[0], part.offset[1], full) if part.offset != (0, 0)
                         or result.image_shape != full else result)
        merged = merge_parts(moved, self.cfg, full, names=dict(results[0].names), sahi_boxes=self.sahi_boxes,
                             obb_probiou=self.obb_probiou)
        first = results[0]
        merged.source, merged.stream, merged.frame = first.source, first.stream, first.frame
        merged.slices = len(plan_tiles(full, self.cfg)[0])
        return merged

    def _warn_once(self, image_hw: tuple[int, int]) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        th, tw = self.cfg.tile_hw
        log.warning("slice %dx%d is larger than an image of %dx%d: such an image is one tile cut to its size "
                    "(said once per run)", th, tw, image_hw[0], image_hw[1])


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
            raise ConfigError(NO_BOXES)
        names = dict(det.names)
        parts.append(det.offset(dx, dy, full_shape))
    if full_pass:
        parts.append(predict(image))
    result = merge_parts(parts, cfg, full_shape, names=names, sahi_boxes=sahi_boxes, obb_probiou=obb_probiou)
    result.source = source
    result.slices = len(grid)
    return result
