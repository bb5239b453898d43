"""The tile grid of sliced inference: SAHI's, position for position.

:func:`tile_grid` reimplements SAHI 0.12.8's ``sahi.slicing.get_slice_bboxes``
from its documented algorithm (not copied), so that the same image size, tile
size and overlap give the same tiles as SAHI, in the same order:

- the step is ``tile - int(overlap * tile)`` (the overlap in pixels is truncated);
- rows top to bottom, tiles left to right; a tile that would cross the right or
  bottom edge is pushed back inside so that it ends at the edge
  (``x0 = max(0, W - tile_w)``): edge tiles keep the full tile size and
  overlap their neighbour by more than the ratio;
- an image smaller than the tile in a dimension gives one tile spanning that
  dimension (smaller than the tile, and the only case where a tile is not full size).

:func:`tile_views` cuts the tiles out of a decoded image as NumPy views (no copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TileGrid", "tile_grid", "tile_views"]


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one image.

    Attributes:
        boxes: ``(N, 4)`` int ``x0, y0, x1, y1`` (``x1``/``y1`` exclusive) in image pixels, SAHI's order.
        image_hw: ``(height, width)`` of the image.
        tile_hw: the requested tile ``(height, width)``.
        tile_larger_than_image: the image is smaller than the tile in at least one dimension
            (its tiles are then cut to the image there): said once per image, so a caller can warn once.
    """

    boxes: np.ndarray
    image_hw: tuple[int, int]
    tile_hw: tuple[int, int]
    tile_larger_than_image: bool

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def offsets(self) -> np.ndarray:
        """``(N, 2)`` int ``x, y`` of each tile's top-left corner: what its detections are shifted by."""
        return self.boxes[:, :2]


def tile_grid(image_hw: tuple[int, int], tile_hw: tuple[int, int],
              overlap_hw: tuple[float, float] = (0.2, 0.2)) -> TileGrid:
    """The tiles of an ``image_hw`` image: SAHI's ``get_slice_bboxes``, edge tiles and order included.

    Args:
        image_hw: ``(height, width)`` of the image.
        tile_hw: tile ``(height, width)``, positive.
        overlap_hw: overlap ratios ``(height, width)`` in ``[0, 1)``
            (validated by :class:`~yolo_ov.config.SliceConfig`; checked again here).

    Raises:
        ValueError: a non-positive size or an overlap outside ``[0, 1)``.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    th, tw = int(tile_hw[0]), int(tile_hw[1])
    if h <= 0 or w <= 0 or th <= 0 or tw <= 0:
        raise ValueError(f"image {image_hw} and tile {tile_hw} must be positive sizes")
    if not all(0.0 <= float(r) < 1.0 for r in overlap_hw):
        raise ValueError(f"overlap ratios must be within [0, 1), got {overlap_hw}")
    oy, ox = int(float(overlap_hw[0]) * th), int(float(overlap_hw[1]) * tw)
    # SAHI's loop: a row's bottom is y0 + th; a tile that crosses an edge is
    # clamped to end at it and moved back by the tile size (not below 0). The
    # clamped y0 is what the rest of that row uses and what the next row steps from.
    boxes: list[tuple[int, int, int, int]] = []
    y0 = y1 = 0
    while y1 < h:
        x0 = x1 = 0
        y1 = y0 + th
        while x1 < w:
            x1 = x0 + tw
            if y1 > h or x1 > w:
                x1, y1 = min(w, x1), min(h, y1)
                x0, y0 = max(0, x1 - tw), max(0, y1 - th)
            boxes.append((x0, y0, x1, y1))
            x0 = x1 - ox
        y0 = y1 - oy
    return TileGrid(np.array(boxes, np.int64).reshape(-1, 4), (h, w), (th, tw), th > h or tw > w)


def tile_views(image: np.ndarray, grid: TileGrid) -> list[np.ndarray]:
    """Each tile of ``grid`` as a view into ``image`` (``HxW[xC]``): no pixel is copied.

    The views are not C-contiguous (their rows keep the image's stride); the
    letterbox reads them as they are.
    """
    if tuple(image.shape[:2]) != grid.image_hw:
        raise ValueError(f"image is {image.shape[:2]}, the grid was made for {grid.image_hw}")
    return [image[y0:y1, x0:x1] for x0, y0, x1, y1 in grid.boxes.tolist()]
