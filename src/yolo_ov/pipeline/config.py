"""Settings of the throughput pipeline: one frozen, keyword-only object."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["DEFAULT_WORKERS", "LARGE_IMAGE_PIXELS", "MAX_AUTO_WORKERS", "PipelineConfig", "Specialize"]

#: Host threads for decode/letterbox/post-processing a run starts with.
#: Measured on a 2-core CPU (see benchmarks/results/throughput.md): one worker
#: keeps both inference streams fed for in-memory frames and JPEG folders of
#: camera-sized photos, and a second one only competes with inference for the
#: cores.
DEFAULT_WORKERS = 1
#: ... but a 4K JPEG takes about 45 ms to decode in full against about 22 ms
#: of device time per image (Intel Xeon with AMX, benchmarks/results/highres.md):
#: once a run meets an image of at least this many pixels, a second worker
#: decodes beside the first (``workers=None``, the default).
LARGE_IMAGE_PIXELS = 4_000_000
#: The most workers the automatic setting grows to.
MAX_AUTO_WORKERS = 2


class Specialize(str, enum.Enum):
    """Shape specialisation: compile the model for the letterbox a source needs.

    ``AUTO`` (default): on for videos and cameras (one exact shape per stream,
    where every frame shares one size and the gain is largest), off for
    images, so an image gives the same answer in every mode (the model's own
    square input, as Ultralytics uses). ``ON``: also for image folders (a few
    bucketed shapes: faster, but boxes and confidences then differ slightly
    from the square input's). ``OFF``: always the model's own input shape.
    """

    AUTO = "auto"
    ON = "on"
    OFF = "off"

    @classmethod
    def parse(cls, value: str | bool | Specialize | None) -> Specialize:
        if isinstance(value, Specialize):
            return value
        if value is None:
            return cls.AUTO
        if isinstance(value, bool):
            return cls.ON if value else cls.OFF
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"specialize={value!r}: expected 'auto', 'on', 'off' or a bool") from None


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """How the throughput pipeline runs.

    Attributes:
        ordered: yield results in input order (default); ``False`` yields
            each as soon as it is done.
        num_requests: inference requests in flight (default: the runtime
            config's ``num_requests``, else twice the compiled model's
            ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``: measured best on 2 cores).
        workers: host threads for decode, letterbox and post-processing
            (default ``None``: one, and two once a run meets an image of
            :data:`LARGE_IMAGE_PIXELS` or more, whose decoding would otherwise
            leave the device waiting).
        max_pending: most inputs between being read and being yielded
            (default: a few per request; fewer for live sources so the
            newest frame is always next). Bounds memory on endless sources.
        timeout_s: a request not answered within this many seconds raises
            :class:`~yolo_ov.errors.InferenceError` instead of hanging.
        specialize: shape specialisation (see :class:`Specialize`).
        max_shapes: most extra compiled input shapes kept for one pipeline
            (folders use at most 5: see ``lanes.BUCKETS``).
        max_queue: ``submit()``: most images accepted but not yet started on
            a request; one more raises :class:`~yolo_ov.errors.OverloadedError`
            at once instead of queueing without bound.
        max_wait_ms: ``submit()`` with a compiled batch > 1: how long a
            partly filled batch waits for more images before it is sent.
    """

    ordered: bool = True
    num_requests: int | None = None
    workers: int | None = None
    max_pending: int | None = None
    timeout_s: float = 60.0
    specialize: Specialize = Specialize.AUTO
    max_shapes: int = 6
    max_queue: int = 64
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "specialize", Specialize.parse(self.specialize))
        for name in ("num_requests", "max_pending"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or isinstance(self.workers, bool)
                                         or self.workers < 1):
            raise ConfigError(f"workers must be a positive integer (or unset: automatic), got {self.workers!r}")
        if not isinstance(self.max_shapes, int) or self.max_shapes < 0:
            raise ConfigError(f"max_shapes must be a non-negative integer, got {self.max_shapes!r}")
        if not isinstance(self.max_queue, int) or isinstance(self.max_queue, bool) or self.max_queue < 1:
            raise ConfigError(f"max_queue must be a positive integer, got {self.max_queue!r}")
        if not float(self.max_wait_ms) >= 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if not float(self.timeout_s) > 0:
            raise ConfigError(f"timeout_s must be positive, got {self.timeout_s!r}")
