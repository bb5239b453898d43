"""Instance masks at original-image resolution, stored as box-sized crops.

A segmentation model's mask is ``coefficients @ prototypes`` at a quarter of
the input resolution, upsampled bilinearly and thresholded at 0 (sigmoid 0.5),
then cut to its box (Ultralytics' ``ops.process_mask``). Every pixel outside
the box is zero, so :class:`Masks` keeps only the crop inside each box: an
``N x H x W`` stack for a 4K frame would be gigabytes, the crops are a few
hundred kilobytes. :func:`masks_from_prototypes` computes each crop directly
at original resolution: only the prototype window under the box is combined,
and only the box's pixels are interpolated (crop first, then upsample).

COCO run-length encoding goes through ``faster-coco-eval``'s mask API (the
``pycocotools`` encoding, in C++); the validator scores with the same library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..imaging.letterbox import Letterbox

__all__ = ["Masks", "masks_from_prototypes"]


class Masks:
    """Boolean instance masks of one image, one box-sized crop per detection.

    Args:
        image_shape: ``(height, width)`` of the original image.
        origins: ``(N, 2)`` int ``x, y`` of each crop's top-left pixel.
        crops: ``N`` boolean ``(h_i, w_i)`` arrays.

    Example:
        >>> m = Masks((4, 6), np.array([[1, 1]]), [np.ones((2, 3), bool)])
        >>> int(m.area[0]), m.dense().shape
        (6, (1, 4, 6))
    """

    __slots__ = ("crops", "image_shape", "origins")

    def __init__(self, image_shape: tuple[int, int], origins: np.ndarray, crops: Sequence[np.ndarray]) -> None:
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.origins = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
        self.crops = list(crops)
        if len(self.crops) != len(self.origins):
            raise ValueError(f"{len(self.origins)} origins but {len(self.crops)} crops")

    @classmethod
    def empty(cls, image_shape: tuple[int, int]) -> Masks:
        return cls(image_shape, np.zeros((0, 2), np.int64), [])

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: Any) -> Masks:
        """The masks of the selected rows (int, slice, boolean mask or index array)."""
        rows = np.arange(len(self))[index]
        rows = np.atleast_1d(rows)
        return Masks(self.image_shape, self.origins[rows], [self.crops[int(i)] for i in rows])

    def __repr__(self) -> str:
        return f"Masks(n={len(self)}, image_shape={self.image_shape})"

    @classmethod
    def concat(cls, parts: Sequence[Masks]) -> Masks:
        """The masks of ``parts`` one after the other (the crops are shared, not copied).

        Raises:
            ValueError: no parts, or parts of different image shapes.
        """
        if not parts:
            raise ValueError("Masks.concat needs at least one Masks (the image shape comes from them)")
        shapes = {m.image_shape for m in parts}
        if len(shapes) != 1:
            raise ValueError(f"Masks.concat: the parts have different image shapes {sorted(shapes)}")
        origins = np.concatenate([m.origins for m in parts], axis=0)
        return cls(parts[0].image_shape, origins, [c for m in parts for c in m.crops])

    def offset(self, dx: int, dy: int, image_shape: tuple[int, int]) -> Masks:
        """These masks moved by ``(dx, dy)`` whole pixels into an image of ``image_shape`` ``(h, w)``.

        A mask computed on a crop (a tile) whose top-left corner sits at
        ``(dx, dy)`` of the full image: only the placement changes, the crops
        are shared (no pixel is copied). A crop reaching past the new image is
        cut to it (a view of the crop), so every mask stays inside its image.
        """
        if int(dx) != dx or int(dy) != dy:
            raise ValueError(f"masks move by whole pixels; got an offset of ({dx}, {dy})")
        h, w = int(image_shape[0]), int(image_shape[1])
        origins = self.origins + np.array([int(dx), int(dy)], np.int64)
        crops: list[np.ndarray] = []
        for i, crop in enumerate(self.crops):
            x, y = (int(v) for v in origins[i])
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = max(min(x + crop.shape[1], w), x0), max(min(y + crop.shape[0], h), y0)
            if (x0, y0, x1 - x0, y1 - y0) != (x, y, crop.shape[1], crop.shape[0]):
                crop = crop[y0 - y : y1 - y, x0 - x : x1 - x]
                origins[i] = (x0, y0)
            crops.append(crop)
        return Masks((h, w), origins, crops)

    @property
    def boxes(self) -> np.ndarray:
        """``(N, 4)`` int ``x0, y0, x1, y1`` (exclusive) of each crop."""
        sizes = np.array([c.shape[::-1] for c in self.crops], dtype=np.int64).reshape(-1, 2)
        return np.concatenate([self.origins, self.origins + sizes], axis=1)

    @property
    def area(self) -> np.ndarray:
        """``(N,)`` pixels in each mask."""
        return np.array([int(c.sum()) for c in self.crops], dtype=np.int64)

    def mask(self, i: int) -> np.ndarray:
        """Mask ``i`` as a full ``(H, W)`` boolean image."""
        out = np.zeros(self.image_shape, bool)
        self._paste(out, i)
        return out

    def dense(self) -> np.ndarray:
        """All masks as an ``(N, H, W)`` boolean array (memory: ``N * H * W`` bytes)."""
        out = np.zeros((len(self), *self.image_shape), bool)
        for i in range(len(self)):
            self._paste(out[i], i)
        return out

    def _paste(self, out: np.ndarray, i: int) -> None:
        (x, y), crop = self.origins[i], self.crops[i]
        out[y : y + crop.shape[0], x : x + crop.shape[1]] = crop

    def to_rle(self) -> list[dict[str, Any]]:
        """COCO compressed RLE per mask: ``{"size": [h, w], "counts": "<string>"}`` (column-major runs)."""
        from faster_coco_eval.core import mask as mask_api

        out = []
        full = np.zeros(self.image_shape, np.uint8, order="F")
        for i, crop in enumerate(self.crops):
            (x, y) = self.origins[i]
            region = full[y : y + crop.shape[0], x : x + crop.shape[1]]
            region[...] = crop
            rle = mask_api.encode(full)
            region[...] = 0
            counts = rle["counts"]
            out.append({"size": [int(v) for v in rle["size"]],
                        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts})
        return out

    def polygons(self) -> list[np.ndarray]:
        """The largest outer contour of each mask as ``(P, 2)`` float32 ``x, y`` original pixels
        (empty ``(0, 2)`` for an empty mask)."""
        out = []
        for (x, y), crop in zip(self.origins, self.crops, strict=True):
            contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            if not contours:
                out.append(np.zeros((0, 2), np.float32))
                continue
            best = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
            out.append(best.reshape(-1, 2).astype(np.float32) + np.array([x, y], np.float32))
        return out


def masks_from_prototypes(protos: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray, geo: Letterbox,
                          input_hw: tuple[int, int]) -> Masks:
    """Ultralytics' ``process_mask(..., upsample=True)``, evaluated at original-image pixels.

    Args:
        protos: ``(nm, mh, mw)`` prototypes (a quarter of the input size).
        coefficients: ``(N, nm)`` mask coefficients of the kept detections.
        boxes: ``(N, 4)`` their boxes in network-input pixels (not clipped).
        geo: the letterbox that made the input.
        input_hw: the network input ``(H, W)``.

    Ultralytics upsamples the mask logits to the input (bilinear,
    ``align_corners=False``), thresholds at 0 and zeroes input pixels outside
    the box. Here each original pixel is mapped to its position in the input
    (``x * gain + pad``, so with a gain of 1 it lands exactly on an input
    pixel), the logits are interpolated there with the same formula, and only
    pixels whose input position lies in the box are computed, from the
    prototype window under the box.
    """
    h0, w0 = geo.original
    nm, mh, mw = protos.shape
    (nh, nw), (H, W) = geo.resized, input_hw
    rx = (np.arange(w0) + 0.5) * (nw / w0) + geo.pad_left - 0.5  # input-space index of each original column
    ry = (np.arange(h0) + 0.5) * (nh / h0) + geo.pad_top - 0.5
    x0, x1, lx = _bilinear_taps(rx, mw / W, mw)
    y0, y1, ly = _bilinear_taps(ry, mh / H, mh)
    flat = protos.reshape(nm, mh, mw)
    origins = np.zeros((len(boxes), 2), np.int64)
    crops: list[np.ndarray] = []
    for i, (bx1, by1, bx2, by2) in enumerate(boxes.astype(np.float64)):
        a, b = np.searchsorted(rx, bx1, "left"), np.searchsorted(rx, bx2, "left")  # bx1 <= r < bx2
        c, d = np.searchsorted(ry, by1, "left"), np.searchsorted(ry, by2, "left")
        origins[i] = (a, c)
        if a >= b or c >= d:
            crops.append(np.zeros((max(d - c, 0), max(b - a, 0)), bool))
            continue
        cs, ce = int(x0[a]), int(x1[b - 1]) + 1  # the prototype window under the box
        rs, re = int(y0[c]), int(y1[d - 1]) + 1
        logits = (coefficients[i] @ flat[:, rs:re, cs:ce].reshape(nm, -1)).reshape(re - rs, ce - cs)
        wx = lx[a:b]
        horiz = logits[:, x0[a:b] - cs] * (1 - wx) + logits[:, x1[a:b] - cs] * wx
        wy = ly[c:d, None]
        values = horiz[y0[c:d] - rs] * (1 - wy) + horiz[y1[c:d] - rs] * wy
        crops.append(values > 0)
    return Masks((h0, w0), origins, crops)


def _bilinear_taps(dst: np.ndarray, scale: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's bilinear source taps (``align_corners=False``) for destination indices ``dst``.

    ``src = max((dst + 0.5) * scale - 0.5, 0)``; taps ``floor(src)`` and the next
    one (clamped at the edge); weight of the second tap ``src - floor(src)``.
    """
    src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    first = np.minimum(np.floor(src).astype(np.int64), size - 1)
    second = np.minimum(first + 1, size - 1)
    return first, second, (src - first).astype(np.float32)
