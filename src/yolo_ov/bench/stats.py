"""Latency statistics the way ``benchmark_app`` reports them, plus the tails."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["LatencyStats"]

#: A run whose max is this many times its median is flagged as noisy.
NOISY_MAX_OVER_MEDIAN = 3.0


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per request (or per image), warm-up excluded."""

    count: int
    median_ms: float
    average_ms: float
    min_ms: float
    max_ms: float
    p90_ms: float
    p99_ms: float

    @classmethod
    def from_samples(cls, samples_ms: list[float] | np.ndarray) -> LatencyStats:
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan, nan)
        return cls(
            count=int(a.size),
            median_ms=float(np.median(a)),
            average_ms=float(a.mean()),
            min_ms=float(a.min()),
            max_ms=float(a.max()),
            p90_ms=float(np.percentile(a, 90)),
            p99_ms=float(np.percentile(a, 99)),
        )

    @property
    def noisy(self) -> bool:
        """A wide min-max spread: other work on the machine probably interfered."""
        return self.count > 0 and self.max_ms > NOISY_MAX_OVER_MEDIAN * self.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}
