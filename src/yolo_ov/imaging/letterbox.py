"""Host-side pre-processing: the letterbox, nothing more.

Everything after the letterbox (HWC->CHW, BGR->RGB, uint8->float, /255) runs
inside the OpenVINO graph (see :mod:`yolo_ov.runtime.core`), so the host only
resizes and pads an 8-bit image. The arithmetic mirrors Ultralytics'
``LetterBox`` exactly (same rounding of the resized size and of the padding)
so boxes agree with Ultralytics to the pixel. Pure OpenCV/numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["PAD_VALUE", "Letterbox", "letterbox", "letterbox_geometry", "min_rect_shape"]

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an original image maps into the network input.

    ``network = original * scale + (pad_left, pad_top)``.
    """

    scale: float
    pad_left: int
    pad_top: int
    resized: tuple[int, int]  # (height, width) of the image part, before padding
    original: tuple[int, int]  # (height, width) of the original image


def letterbox_geometry(original: tuple[int, int], target: tuple[int, int]) -> Letterbox:
    """Compute the letterbox of an ``original`` (h, w) image into ``target`` (h, w)."""
    h0, w0 = original
    th, tw = target
    r = min(th / h0, tw / w0)
    # At least one pixel: a sliver (8x5000 into 64x64) would round to zero rows, which OpenCV cannot resize to
    # (Ultralytics fails there); every other size rounds exactly as Ultralytics' LetterBox does.
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = (tw - new_w) / 2, (th - new_h) / 2
    left = round(dw - 0.1)
    top = round(dh - 0.1)
    return Letterbox(scale=r, pad_left=left, pad_top=top, resized=(new_h, new_w), original=(h0, w0))


def letterbox(image: np.ndarray, target: tuple[int, int], pad_value: int = PAD_VALUE, *,
              original_hw: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` keeping its aspect ratio and pad it, centred, to ``target``.

    Args:
        image: BGR ``uint8`` ``HxWx3``.
        target: network input ``(height, width)``.
        original_hw: when ``image`` was decoded at reduced size (see
            :func:`yolo_ov.imaging.decode.load_image_for`), the size of the full
            image: the geometry is that of the full image (so boxes map back
            to its pixels) and ``image`` is resized to the same letterbox.

    Returns:
        The ``target``-sized ``uint8`` image and its :class:`Letterbox` geometry.
    """
    geo = letterbox_geometry(original_hw or image.shape[:2], target)
    new_h, new_w = geo.resized
    if (new_h, new_w) != image.shape[:2]:
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    th, tw = target
    bottom = th - new_h - geo.pad_top
    right = tw - new_w - geo.pad_left
    if geo.pad_top or bottom or geo.pad_left or right:
        value = (pad_value, pad_value, pad_value)
        image = cv2.copyMakeBorder(image, geo.pad_top, bottom, geo.pad_left, right, cv2.BORDER_CONSTANT, value=value)
    return image, geo


def min_rect_shape(original: tuple[int, int], imgsz: tuple[int, int], stride: int = 32) -> tuple[int, int]:
    """The smallest stride-aligned (h, w) that holds ``original`` letterboxed into ``imgsz``.

    This is Ultralytics' ``LetterBox(auto=True)`` target: for a 16:9 video at
    640 it gives 384x640 instead of 640x640, so far less compute goes into
    padding. Used by shape specialisation.
    """
    geo = letterbox_geometry(original, imgsz)
    new_h, new_w = geo.resized
    th, tw = imgsz
    h = int(new_h + (th - new_h) % stride)
    w = int(new_w + (tw - new_w) % stride)
    return (h, w)
