"""Short trails behind tracked objects, drawn on the frames of a video.

A trail is the path of a track's box centre over its last few frames, in
the track's colour (the one :func:`~yolo_ov.io.draw.draw` gives
its box). One :class:`Trails` follows every stream of a run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import cv2
import numpy as np

from ..io.draw import palette_color
from ..results import Detections

__all__ = ["Trails"]


class Trails:
    """Remembers recent centres per (stream, track id) and draws them.

    Args:
        length: points per trail (frames).
        forget_after: frames after which a track no longer seen is dropped.

    Example:
        >>> trails = Trails(length=8)
        >>> r = Detections([[10, 10, 30, 30]], [0.9], [0], data={"track_id": np.array([4])})
        >>> trails.draw(np.zeros((40, 40, 3), np.uint8), r).shape
        (40, 40, 3)
    """

    def __init__(self, *, length: int = 30, forget_after: int = 60) -> None:
        self.length = length
        self.forget_after = forget_after
        self._paths: dict[tuple[int, int], deque[tuple[int, int]]] = {}
        self._seen: dict[tuple[int, int], int] = {}
        self._ticks: dict[int, int] = {}

    def draw(self, image: np.ndarray, result: Detections) -> np.ndarray:
        """Add ``result``'s tracks to their trails and draw every live trail of its stream on ``image`` (in place)."""
        ids = result.data.get("track_id")
        if ids is None:
            return image
        stream = result.stream or 0
        tick = self._ticks[stream] = self._ticks.get(stream, 0) + 1
        centres = ((result.xyxy[:, :2] + result.xyxy[:, 2:]) / 2).astype(int)
        for tid, (x, y) in zip(np.asarray(ids).tolist(), centres.tolist(), strict=True):
            key = (stream, tid)
            self._paths.setdefault(key, deque(maxlen=self.length)).append((x, y))
            self._seen[key] = tick
        lw = max(round(sum(image.shape[:2]) / 2 * 0.002), 1)
        for key in [k for k in self._paths if k[0] == stream]:
            if tick - self._seen[key] > self.forget_after:
                del self._paths[key], self._seen[key]
                continue
            path = self._paths[key]
            if len(path) > 1 and self._seen[key] == tick:
                pts = np.asarray(path, np.int32).reshape(-1, 1, 2)
                cv2.polylines(image, [pts], False, palette_color(key[1]), lw, cv2.LINE_AA)
        return image

    def annotate(self, pairs: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        """Pass ``(result, image)`` pairs through, drawing trails on the images of tracked results."""
        for result, image in pairs:
            if image is not None and isinstance(result, Detections):
                self.draw(image, result)
            yield result, image
