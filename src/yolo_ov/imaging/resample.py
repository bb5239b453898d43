"""Ultralytics' classification pre-processing: short-side resize + centre crop, bit-exact.

Ultralytics resizes classification inputs with torchvision's ``Resize`` on a
PIL image, i.e. Pillow's antialiased bilinear filter (its support grows with
the reduction, so every source pixel contributes), then ``CenterCrop``.
OpenCV has no such filter (``INTER_LINEAR`` samples 4 pixels, ``INTER_AREA`` is
a box filter), and the difference moves top-5 confidences by more than a
percent on some images. This module reproduces Pillow's ``ImagingResample``
(coefficients, 22-bit fixed-point rounding, horizontal pass then vertical)
in vectorised NumPy, so the network sees the same bytes without adding
Pillow to the inference path. ``tests/test_tasks_units.py`` checks it against
Pillow byte for byte.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["center_crop_box", "pil_bilinear_resize", "resize_short_side", "short_side_size"]

_PRECISION_BITS = 32 - 8 - 2  # Pillow's 8-bit resampling precision


@lru_cache(maxsize=64)
def _coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for the bilinear filter.

    Returns ``(first, weights)``: each output pixel's first source index and
    its integer weights ``(out_size, taps)`` (zero past the pixel's window).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    taps = int(np.ceil(support)) * 2 + 1
    first = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, taps), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        x = np.arange(xmax)
        w = np.maximum(1.0 - np.abs((x + xmin - center + 0.5) / filterscale), 0.0)
        total = w.sum()
        if total != 0.0:
            w = w / total
        fixed = np.where(w < 0, np.trunc(-0.5 + w * (1 << _PRECISION_BITS)), np.trunc(0.5 + w * (1 << _PRECISION_BITS)))
        first[xx] = xmin
        weights[xx, :xmax] = fixed.astype(np.int64)
    return first, weights


def _pass(image: np.ndarray, out_size: int, axis: int, keep: slice | None = None) -> np.ndarray:
    """One separable pass of Pillow's 8-bit resampling along ``axis`` (0: rows, 1: columns).

    Bilinear weights are non-negative and sum to ``2**22``, so every
    accumulator stays below ``2**31``: int32 arithmetic is exact, one
    vectorised multiply-add per filter tap. ``keep``: compute only these
    output pixels (the centre crop), each exactly as in the full resize.
    """
    in_size = image.shape[axis]
    first, weights = _coefficients(in_size, out_size)
    if keep is not None:
        first, weights = first[keep], weights[keep]
    n_out = len(first)
    shape = [1] * image.ndim
    shape[axis] = n_out
    acc = np.full(tuple(n_out if a == axis else n for a, n in enumerate(image.shape)),
                  1 << (_PRECISION_BITS - 1), np.int32)
    for tap in range(weights.shape[1]):
        w = weights[:, tap]
        if not w.any():
            continue
        index = np.minimum(first + tap, in_size - 1)  # clipped taps have weight 0
        acc += np.take(image, index, axis=axis).astype(np.int32) * w.astype(np.int32).reshape(shape)
    return np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)


def pil_bilinear_resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Pillow's ``Image.resize((w, h), BILINEAR)`` of an 8-bit ``HxW`` or ``HxWxC`` array."""
    h, w = size_hw
    out = image
    if w != image.shape[1]:
        out = _pass(out, w, axis=1)
    if h != image.shape[0]:
        out = _pass(out, h, axis=0)
    return out


def short_side_size(hw: tuple[int, int], short: int) -> tuple[int, int]:
    """torchvision ``Resize(short)``'s output ``(h, w)``: the short side to ``short``, the long one truncated."""
    h, w = hw
    if w <= h:
        return (int(short * h / w), short)
    return (short, int(short * w / h))


def center_crop_box(hw: tuple[int, int], crop_hw: tuple[int, int]) -> tuple[int, int]:
    """torchvision ``CenterCrop``'s ``(top, left)`` (Python's round, half to even)."""
    return round((hw[0] - crop_hw[0]) / 2.0), round((hw[1] - crop_hw[1]) / 2.0)


def resize_short_side(image: np.ndarray, target_hw: tuple[int, int]) -> np.ndarray:
    """Ultralytics' ``classify_transforms`` geometry: resize the short side, centre-crop to ``target_hw``.

    A square target resizes the short side to its size (torchvision
    ``Resize(int)``); a rectangular one resizes to it exactly. Images smaller
    than the crop after resizing are zero-padded, as ``CenterCrop`` pads.
    """
    th, tw = target_hw
    size = short_side_size(image.shape[:2], th) if th == tw else (th, tw)
    if size[0] >= th and size[1] >= tw:  # the usual case: resize only the pixels the crop keeps
        top, left = center_crop_box(size, (th, tw))
        out = image
        if size[1] != image.shape[1]:
            out = _pass(out, size[1], axis=1, keep=slice(left, left + tw))
        else:
            out = out[:, left : left + tw]
        out = _pass(out, size[0], axis=0, keep=slice(top, top + th)) if size[0] != image.shape[0] else out[top:top + th]
        return np.ascontiguousarray(out)
    resized = image if size == image.shape[:2] else pil_bilinear_resize(image, size)
    h, w = resized.shape[:2]
    if h < th or w < tw:
        pad_t, pad_l = max(th - h, 0) // 2, max(tw - w, 0) // 2
        padded = np.zeros((max(h, th), max(w, tw), *resized.shape[2:]), np.uint8)
        padded[pad_t : pad_t + h, pad_l : pad_l + w] = resized
        resized, h, w = padded, padded.shape[0], padded.shape[1]
    top, left = center_crop_box((h, w), (th, tw))
    return np.ascontiguousarray(resized[top : top + th, left : left + tw])
