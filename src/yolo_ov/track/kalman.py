"""A constant-velocity Kalman filter over boxes, vectorised over tracks.

The state of a track is 8 numbers: a box measurement ``(cx, cy, s, h)`` and
its velocity, where ``s`` is the aspect ratio ``w / h`` (the ``xyah``
layout SORT and ByteTrack use) or the width (``xywh``, BoT-SORT's). Noise
scales with the box size (position std ``h / 20``, velocity std ``h / 160``
per frame, the values of the SORT family and of Ultralytics' trackers), so
small and large objects are equally trusted.

Every function takes and returns arrays for ``N`` tracks at once: ``mean``
``(N, 8)`` and ``covariance`` ``(N, 8, 8)``; ``predict`` can step several
frames (a gap in a live stream, or frames the detector skipped).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BoxKalmanFilter"]

_STD_POSITION = 1.0 / 20
_STD_VELOCITY = 1.0 / 160

_MOTION = np.eye(8)
_MOTION[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t (one frame per step)


class BoxKalmanFilter:
    """Kalman filter for boxes in the ``xyah`` or ``xywh`` layout.

    Args:
        layout: ``"xyah"`` (ByteTrack) or ``"xywh"`` (BoT-SORT).

    Example:
        >>> kf = BoxKalmanFilter("xyah")
        >>> mean, cov = kf.initiate(np.array([[50.0, 60.0, 0.5, 40.0]]))
        >>> mean, cov = kf.predict(mean, cov, frozen=np.array([False]))
        >>> mean.shape, cov.shape
        ((1, 8), (1, 8, 8))
    """

    def __init__(self, layout: str = "xyah") -> None:
        if layout not in ("xyah", "xywh"):
            raise ValueError(f"layout must be 'xyah' or 'xywh', got {layout!r}")
        self.layout = layout

    # -- conversions -----------------------------------------------------------
    def to_measurement(self, xyxy: np.ndarray) -> np.ndarray:
        """``(N, 4)`` corner boxes -> ``(N, 4)`` measurements of this layout."""
        xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        w = xyxy[:, 2] - xyxy[:, 0]
        h = xyxy[:, 3] - xyxy[:, 1]
        third = w / h if self.layout == "xyah" else w
        return np.stack([xyxy[:, 0] + w / 2, xyxy[:, 1] + h / 2, third, h], axis=1)

    def to_xyxy(self, mean: np.ndarray) -> np.ndarray:
        """``(N, 8)`` states -> ``(N, 4)`` corner boxes."""
        mean = np.asarray(mean, dtype=np.float64).reshape(-1, 8)
        h = mean[:, 3]
        w = mean[:, 2] * h if self.layout == "xyah" else mean[:, 2]
        cx, cy = mean[:, 0], mean[:, 1]
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)

    # -- noise -----------------------------------------------------------------
    def _scales(self, values: np.ndarray, position: float, velocity: float) -> np.ndarray:
        """Per-state standard deviations ``(N, 8)`` from ``(N, 4)`` measurement-like values."""
        h = values[:, 3]
        if self.layout == "xyah":
            pos = np.stack([h, h, np.full_like(h, np.nan), h], axis=1) * position
            vel = np.stack([h, h, np.full_like(h, np.nan), h], axis=1) * velocity
            return np.concatenate([pos, vel], axis=1)
        w = values[:, 2]
        pos = np.stack([w, h, w, h], axis=1) * position
        vel = np.stack([w, h, w, h], axis=1) * velocity
        return np.concatenate([pos, vel], axis=1)

    def _aspect(self, std: np.ndarray, position: float, velocity: float) -> np.ndarray:
        if self.layout == "xyah":  # the aspect ratio has fixed, tiny noise
            std[:, 2] = position
            std[:, 6] = velocity
        return std

    # -- the filter --------------------------------------------------------------
    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from ``(N, 4)`` measurements: zero velocity, wide velocity uncertainty."""
        z = np.asarray(measurement, dtype=np.float64).reshape(-1, 4)
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        std = self._aspect(self._scales(z, 2 * _STD_POSITION, 10 * _STD_VELOCITY), 1e-2, 1e-5)
        cov = np.zeros((len(z), 8, 8))
        idx = np.arange(8)
        cov[:, idx, idx] = np.square(std)
        return mean, cov

    def predict(self, mean: np.ndarray, covariance: np.ndarray, *, frozen: np.ndarray,
                steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Advance ``steps`` frames. ``frozen`` (``(N,)`` bool) marks tracks not currently
        seen: their size velocity is zeroed before each step so a lost box does not
        keep growing or shrinking."""
        mean = np.array(mean, dtype=np.float64, copy=True).reshape(-1, 8)
        cov = np.array(covariance, dtype=np.float64, copy=True).reshape(-1, 8, 8)
        frozen = np.asarray(frozen, dtype=bool)
        size_velocity = [7] if self.layout == "xyah" else [6, 7]
        idx = np.arange(8)
        for _ in range(max(int(steps), 0)):
            if frozen.any():
                mean[np.ix_(frozen, size_velocity)] = 0.0
            std = self._aspect(self._scales(mean[:, :4], _STD_POSITION, _STD_VELOCITY), 1e-2, 1e-5)
            mean = mean @ _MOTION.T
            cov = _MOTION @ cov @ _MOTION.T
            cov[:, idx, idx] += np.square(std)
        return mean, cov

    def update(self, mean: np.ndarray, covariance: np.ndarray,
               measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct ``N`` states with their ``(N, 4)`` measurements."""
        mean = np.asarray(mean, dtype=np.float64).reshape(-1, 8)
        cov = np.asarray(covariance, dtype=np.float64).reshape(-1, 8, 8)
        z = np.asarray(measurement, dtype=np.float64).reshape(-1, 4)
        std = self._scales(mean[:, :4], _STD_POSITION, 0.0)[:, :4]
        if self.layout == "xyah":
            std[:, 2] = 1e-1
        projected_cov = cov[:, :4, :4].copy()
        idx = np.arange(4)
        projected_cov[:, idx, idx] += np.square(std)
        # K = P H^T S^-1, solved rather than inverted (S is symmetric positive definite).
        gain = np.linalg.solve(projected_cov, cov[:, :4, :].copy()).transpose(0, 2, 1)
        innovation = z - mean[:, :4]
        new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        new_cov = cov - gain @ projected_cov @ gain.transpose(0, 2, 1)
        return new_mean, new_cov

    def warp(self, mean: np.ndarray, covariance: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move states by a 2x3 camera-motion affine (BoT-SORT's compensation).

        Centres and their velocities follow the rotation-scale part plus the
        translation; sizes follow its absolute value, so they never flip sign.
        Only meaningful for the ``xywh`` layout.
        """
        mean = np.asarray(mean, dtype=np.float64).reshape(-1, 8)
        cov = np.asarray(covariance, dtype=np.float64).reshape(-1, 8, 8)
        rot = np.asarray(affine, dtype=np.float64)[:2, :2]
        block = np.kron(np.eye(4), rot)
        block[2:4, 2:4] = np.abs(rot)
        block[6:8, 6:8] = np.abs(rot)
        new_mean = mean @ block.T
        new_mean[:, :2] += np.asarray(affine, dtype=np.float64)[:2, 2]
        new_cov = block @ cov @ block.T
        return new_mean, new_cov
