"""COCO run-length encoding of binary masks, the form segmentation masks travel in.

A mask is sent as ``{"size": [h, w], "counts": "..."}``: COCO's compressed RLE
(column-major runs starting with a run of zeros, each run delta-coded against
the one two before and written 5 bits per character), exactly what
``pycocotools.mask.encode`` returns, so any COCO tool decodes it. Pure NumPy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rle_counts_to_string", "rle_encode"]


def rle_encode(mask: np.ndarray) -> dict[str, object]:
    """COCO compressed RLE of a 2-D mask (non-zero = inside).

    Example:
        >>> rle_encode(np.array([[0, 1], [1, 1]]))
        {'size': [2, 2], 'counts': '13'}
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    flat = (m != 0).ravel(order="F")
    if flat.size == 0:
        return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": ""}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size])))
    if flat[0]:
        runs = np.concatenate(([0], runs))  # runs always start with the zeros
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": rle_counts_to_string(runs.tolist())}


def rle_counts_to_string(counts: list[int]) -> str:
    """pycocotools' ``rleToString``: LEB128-like, 5 bits a character, offset by 48."""
    out: list[str] = []
    for i, run in enumerate(counts):
        x = int(run) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)
