"""Whether compiling a video's own input shape can repay its compile time.

A specialised shape (1280x720 -> 384x640 at 640) saves compute on every frame
that uses it, but compiling it costs CPU time the pipeline would otherwise
spend on inference, and the frames that arrive while it compiles still run at
the model's own shape. A clip of a few dozen frames therefore ends *slower*
specialised. When the source says how many frames it holds and their size
(a video file's ``CAP_PROP_FRAME_COUNT``, see
:attr:`~yolo_ov.io.sources.FrameSource.expected_frames`), the automatic setting
keeps short clips at the model's own shape.

The rule: specialise when ``frames x (1 - area(shape) / area(model's own))``
exceeds :data:`COMPILE_COST_FRAMES`, the compile's cost in frames of the
model's own shape. Live sources, iterables and files that do not report
their length are always specialised (they are usually long), and so is a
shape that is already compiled in this pipeline (nothing left to pay).
``Specialize.ON`` is the user's explicit choice and is never second-guessed.
"""

from __future__ import annotations

from ..imaging.letterbox import min_rect_shape

__all__ = ["COMPILE_COST_FRAMES", "saving", "shape_pays_off", "video_shape_pays_off"]

#: The cost of compiling one extra shape, in frames of the model's own shape
#: that its saving must add up to. Measured with ``benchmarks/bench_shape_payoff.py``
#: (Intel Xeon with AMX, 2 cores, shared YOLOv8n, 384x640 extra shape, on a
#: busy machine, so CPU times rather than wall times): a compile from the warm
#: cache takes 0.46 s of CPU for the INT8 IR (0.23 s FP32; with an empty cache
#: 1.08 s / 0.40 s). At the ~105 frames/s the INT8 pipeline reaches on 2 cores
#: (README, throughput table) that is ~24 frames' worth of the pipeline's CPU,
#: and the ~50 frames that arrive while it compiles (~0.5 s) gain nothing: at
#: a 1.5x speed-up (16:9, 40% less area) the break-even is near 125 frames,
#: i.e. 125 x 0.4 = 50 frames of saving. The INT8 figure is used (the dearer
#: compile, so a short clip is never made slower); FP32 breaks even sooner.
#: The script's break-even rows check this on a quiet machine.
COMPILE_COST_FRAMES = 50.0


def saving(shape: tuple[int, int], base: tuple[int, int]) -> float:
    """The share of the model's own input area a ``shape`` letterbox saves (0 when none)."""
    return max(0.0, 1.0 - (shape[0] * shape[1]) / (base[0] * base[1]))


def shape_pays_off(frames: int | None, shape: tuple[int, int], base: tuple[int, int], *,
                   cost_frames: float = COMPILE_COST_FRAMES) -> bool:
    """Whether ``frames`` frames at ``shape`` instead of ``base`` repay one compile.

    Example:
        >>> shape_pays_off(20, (384, 640), (640, 640)), shape_pays_off(341, (384, 640), (640, 640))
        (False, True)
    """
    if frames is None:
        return True
    return frames * saving(shape, base) > cost_frames


def video_shape_pays_off(frames: int | None, frame_hw: tuple[int, int] | None, base: tuple[int, int],
                         stride: int, compiled: list[tuple[int, int]]) -> bool:
    """The automatic decision for a video source of ``frames`` frames of ``frame_hw``.

    Unknown length or size: specialise (as before this rule). A shape already
    among ``compiled``, or equal to ``base``, costs nothing.
    """
    if frames is None or frame_hw is None:
        return True
    shape = min_rect_shape(frame_hw, base, stride)
    if shape == base or shape in compiled:
        return True
    return shape_pays_off(frames, shape, base)
