"""Classification head: Ultralytics' crop in, class probabilities and top-5 out.

Pre-processing is not a letterbox: the short side is resized to the model's
size and the centre cropped (``classify_transforms``: Pillow's antialiased
bilinear resize, mean 0 and std 1, i.e. only the /255 the graph already
does). So this head keeps its crop: no shape specialisation. The network's
output is used as probabilities when it already is one (Ultralytics' exports
end in a softmax), and soft-maxed otherwise (a bare logits head).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import DetectConfig
from ..errors import ModelLoadError
from ..imaging.resample import resize_short_side
from ..results import Classification
from ..runtime.model import ModelInfo
from ._common import dim
from .base import Head, register_head

__all__ = ["ClassifyHead", "Crop"]


@dataclass(frozen=True)
class Crop:
    """The geometry of a classification input: only the original size matters afterwards."""

    original: tuple[int, int]


@register_head
class ClassifyHead(Head):
    """``(C,)`` scores per image -> :class:`~yolo_ov.results.Classification`."""

    task = "classify"
    end2end = False
    specializable = False

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info)
        classes = dim(info.outputs[0].shape, 1)
        if len(info.outputs[0].shape.strip("[]").split(",")) != 2:
            raise ModelLoadError(f"{info.path}: a classification model needs a (B, classes) output, "
                                 f"got {info.outputs[0].shape}")
        if classes is not None and info.names_source != "default COCO names" and classes != len(info.names):
            raise ModelLoadError(f"{info.path}: metadata lists {len(info.names)} class names but the output has "
                                 f"{classes} classes")

    def prepare(self, image: np.ndarray, target_hw: tuple[int, int],
                original_hw: tuple[int, int] | None = None) -> tuple[np.ndarray, Crop]:
        return resize_short_side(image, target_hw), Crop(tuple(image.shape[:2]))  # type: ignore[arg-type]

    def decode_reduction(self, original_hw: tuple[int, int], target_hw: tuple[int, int]) -> int:
        return 1  # the crop's resize is not the letterbox's: always decoded in full

    def decode(self, outputs: Sequence[np.ndarray], geo: Crop, cfg: DetectConfig) -> Classification:
        scores = np.asarray(outputs[0], np.float32).reshape(-1)
        if not _is_distribution(scores):
            exp = np.exp(scores - scores.max())
            scores = exp / exp.sum()
        return Classification(scores, self.names, geo.original)


def _is_distribution(scores: np.ndarray) -> bool:
    return bool(scores.min() >= 0.0 and abs(float(scores.sum()) - 1.0) < 1e-3)
