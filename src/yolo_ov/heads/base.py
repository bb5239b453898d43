"""The head contract: one image's network outputs -> one result.

A head is chosen once per model, from its :class:`~yolo_ov.runtime.model.ModelInfo`
(task and output layout), and then called for every image by every runner:
the latency path, the throughput pipeline, ``submit()``, validation and INT8
accuracy control. Nothing else decodes, runs NMS or rescales, so adding a
task is one new head (plus its result fields, sink formatters and evaluator)
and nothing in the engine or the pipeline changes.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..config import DetectConfig
from ..errors import ModelLoadError
from ..imaging.decode import reduction_factor
from ..imaging.letterbox import letterbox
from ..runtime.model import ModelInfo

__all__ = ["HEADS", "Head", "register_head", "select_head", "supported_tasks"]


class Head(abc.ABC):
    """Turns one image's outputs, its pre-processing geometry and the detection
    settings into a result (a :class:`~yolo_ov.results.Detections`, or an
    image-level result for classification).

    Class attributes:
        task: the Ultralytics task this head decodes.
        end2end: whether it is for end-to-end (NMS-free) outputs.
        specializable: whether the input may be letterboxed into other shapes
            than the model's own (shape specialisation). Classification keeps
            its centre crop, so its head says ``False``.

    Subclasses validate the output shapes in ``__init__`` (one clear
    :class:`~yolo_ov.errors.ModelLoadError` at load, not a wrong result later).
    """

    task: ClassVar[str]
    end2end: ClassVar[bool] = False
    specializable: ClassVar[bool] = True

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.names = info.names
        if info.layout == "NHWC":  # TFLite graphs run at their own input size only (runtime.prepare)
            self.specializable = False

    def prepare(self, image: np.ndarray, target_hw: tuple[int, int],
                original_hw: tuple[int, int] | None = None) -> tuple[np.ndarray, Any]:
        """Host pre-processing of one BGR image into ``target_hw``: the letterbox by default.

        ``original_hw``: the full size when ``image`` was decoded reduced
        (:meth:`decode_reduction`). Returns the ``uint8`` ``HxWx3`` network
        frame and the geometry that :meth:`decode` needs to map results back
        (it has ``.original``: the image's ``(h, w)``).
        """
        return letterbox(image, target_hw, original_hw=original_hw)

    def decode_reduction(self, original_hw: tuple[int, int], target_hw: tuple[int, int]) -> int:
        """By how much (1, 2, 4, 8) a JPEG may be decoded smaller and still fill :meth:`prepare`'s
        resize without upscaling (reduced decoding); the letterbox's rule by default."""
        return reduction_factor(original_hw, target_hw)

    @abc.abstractmethod
    def decode(self, outputs: Sequence[np.ndarray], geo: Any, cfg: DetectConfig) -> Any:
        """One image's result from its slice of every model output.

        Args:
            outputs: every output of the model for this image, in the model's
                order, with the batch dimension removed.
            geo: what :meth:`prepare` returned with the frame.
            cfg: detection settings (thresholds, NMS, class filter).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, end2end={self.end2end})"


#: (task, end2end) -> head class; filled by :func:`register_head`.
HEADS: dict[tuple[str, bool], type[Head]] = {}


def register_head(cls: type[Head]) -> type[Head]:
    """Class decorator: make ``cls`` the head for its ``(task, end2end)``."""
    HEADS[(cls.task, cls.end2end)] = cls
    return cls


def supported_tasks() -> list[str]:
    """``task`` or ``task (end-to-end)`` for every registered head, for messages and ``info``."""
    return sorted(f"{t} (end-to-end)" if e2e else t for t, e2e in HEADS)


def select_head(info: ModelInfo) -> Head:
    """The head for ``info``'s task and output layout.

    Raises:
        ModelLoadError: no head runs this kind of model; one line naming it.
    """
    cls = HEADS.get((info.task, info.end2end))
    if cls is None:
        kind = f"'{info.task}'" + (" end-to-end" if info.end2end else "")
        outputs = ", ".join(t.shape for t in info.outputs)
        raise ModelLoadError(
            f"{info.path}: a {kind} model (outputs {outputs}); yolo-ov cannot run this kind of model yet "
            f"(it runs: {', '.join(supported_tasks())})"
        )
    return cls(info)
