"""Test helpers for fan-out / fan-in on the fake detector (tests/fakes.py).

``Grid`` splits an image into ``rows x cols`` tiles (numpy views) and merges
the tiles' ``Detections`` by concatenating them with each box shifted by its
tile's offset: the merge a sliced-inference feature would do, written here
so the pipeline's fan-out is tested without ``Detections.merge``.
"""

from __future__ import annotations

import threading

import numpy as np

from yolo_ov.errors import InputError
from yolo_ov.pipeline import Part
from yolo_ov.results import Detections


class Grid:
    """``rows x cols`` tiles; ``empty`` (a tile index) makes that tile an empty slice (a failing part)."""

    def __init__(self, rows: int = 2, cols: int = 2, *, empty: int | None = None,
                 fail_on: set[int] | None = None) -> None:
        self.rows, self.cols = rows, cols
        self.empty = empty
        self.fail_on = fail_on or set()  # image values whose split raises InputError
        self.splits = 0
        self._lock = threading.Lock()

    @property
    def parts(self) -> int:
        return self.rows * self.cols

    def split(self, image: np.ndarray, original_hw: tuple[int, int]) -> list[Part]:
        with self._lock:
            self.splits += 1
        value = int(image[0, 0, 0])
        if value in self.fail_on:
            raise InputError(f"value {value}: cannot split", f"v{value}")
        h, w = original_hw
        th, tw = h // self.rows, w // self.cols
        parts = []
        for r in range(self.rows):
            for c in range(self.cols):
                y, x = r * th, c * tw
                view = image[y:y + th, x:x + tw]
                if self.empty is not None and len(parts) == self.empty:
                    view = image[y:y, x:x + tw]
                parts.append(Part(view, (x, y)))
        return parts

    def merge(self, results: list[Detections], parts: list[Part], original_hw: tuple[int, int]) -> Detections:
        shifts = [np.array([p.offset[0], p.offset[1]] * 2, np.float32) for p in parts]
        xyxy = np.concatenate([r.xyxy + s for r, s in zip(results, shifts, strict=True)]).reshape(-1, 4)
        conf = np.concatenate([r.confidence for r in results])
        cls = np.concatenate([r.class_id for r in results])
        return Detections(xyxy, conf, cls, results[0].names, original_hw)


def tiled_image(values: list[int], rows: int, cols: int, tile: tuple[int, int] = (64, 64)) -> np.ndarray:
    """An image of ``rows x cols`` uniform tiles with the given grey values (row-major)."""
    th, tw = tile
    image = np.zeros((rows * th, cols * tw, 3), np.uint8)
    for k, v in enumerate(values):
        r, c = divmod(k, cols)
        image[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = v
    return image


def tile_boxes(values: list[int], rows: int, cols: int, tile: tuple[int, int] = (64, 64)) -> np.ndarray:
    """The boxes the fake detector + :class:`Grid` give for :func:`tiled_image` (tiles at the model's size)."""
    th, tw = tile
    boxes = []
    for k, v in enumerate(values):
        r, c = divmod(k, cols)
        side = 8.0 + v / 8.0
        x, y = c * tw, r * th
        boxes.append([x + 4.0, y + 4.0, x + 4.0 + side, y + 4.0 + side])
    return np.array(boxes, np.float32)


def yolo_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("yolo-ov") and t.is_alive()]
