"""Camera-motion compensation for BoT-SORT: sparse optical flow with OpenCV.

Between two frames the camera's own motion (pan, shake, zoom) moves every
box; BoT-SORT estimates it as a similarity transform from corners tracked on
the background and moves each track's Kalman state by it before matching.
This is the ``sparseOptFlow`` method of BoT-SORT and Ultralytics' default:
Shi-Tomasi corners on a half-size greyscale frame, pyramidal Lucas-Kanade
flow to the next frame, and a RANSAC partial affine (rotation, uniform scale,
translation) fitted to the moved corners. On a static camera it returns
(nearly) the identity.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

__all__ = ["SparseFlowMotion"]

log = logging.getLogger(__name__)

_CORNERS = {"maxCorners": 400, "qualityLevel": 0.01, "minDistance": 1, "blockSize": 3, "useHarrisDetector": False}
#: Fewer matched corners than this and the estimate is not trusted (identity).
_MIN_POINTS = 5


class SparseFlowMotion:
    """Frame-to-frame camera motion as a 2x3 affine, in full-frame pixels.

    Args:
        downscale: the frame is shrunk by this factor before corner detection
            and flow (2: half size, as BoT-SORT does; 1 keeps full size).

    Example:
        >>> motion = SparseFlowMotion()
        >>> frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
        >>> motion.apply(frame).round(3).tolist()  # the first frame has no motion
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """

    def __init__(self, downscale: int = 2) -> None:
        self.downscale = max(int(downscale), 1)
        self._previous: np.ndarray | None = None
        self._points: np.ndarray | None = None

    def reset(self) -> None:
        self._previous = None
        self._points = None

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """The motion from the previous frame given to this one (identity for the first)."""
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 and frame.shape[2] == 3 else frame
        if gray.ndim == 3:
            gray = gray[..., 0]
        if self.downscale > 1:
            h, w = gray.shape[:2]
            gray = cv2.resize(gray, (w // self.downscale, h // self.downscale))
        points = cv2.goodFeaturesToTrack(gray, mask=None, **_CORNERS)
        affine = np.eye(2, 3)
        previous, prev_points = self._previous, self._points
        self._previous, self._points = gray, points
        if previous is None or prev_points is None or previous.shape != gray.shape:
            return affine
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, gray, prev_points, None)
        good = status.ravel().astype(bool)
        if int(good.sum()) < _MIN_POINTS:
            log.debug("camera motion: %d matched corners, keeping identity", int(good.sum()))
            return affine
        estimate, _ = cv2.estimateAffinePartial2D(prev_points[good], moved[good], method=cv2.RANSAC)
        if estimate is None:
            return affine
        estimate[:, 2] *= self.downscale
        return estimate
