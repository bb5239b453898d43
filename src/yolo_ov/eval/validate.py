"""Validate a model on a labelled dataset: run it, then score it (:mod:`yolo_ov.eval.evaluate`).

:func:`validate` runs a model over the dataset with the settings Ultralytics'
validator uses for exported models (``conf=0.001``, ``iou=0.7``, multi-label
NMS, ``max_det=300``, a square letterbox at the model's size) and scores the
result for the model's task: box AP (detection), box + mask AP
(segmentation), box + keypoint AP (pose), top-1/top-5 accuracy
(classification, on a folder-per-class dataset).

Two protocols:

* ``coco`` (default): the deployed pre-processing (exactly what ``predict``
  does: the letterbox resizes with ``INTER_LINEAR``) and COCO's AP computed by
  ``faster-coco-eval``.
* ``ultralytics``: reproduces the figure Ultralytics' own ``val`` prints.
  Its validator first resizes each image's long side to the model size
  (``ceil`` of the scaled sides) before the letterbox, which then only pads;
  and it computes AP its own way (:mod:`yolo_ov.eval.ultralytics`).
  Ultralytics 8.4 resizes with ``cv2.INTER_LINEAR`` (older releases used
  ``INTER_AREA`` when shrinking); measured on coco96 with the shared YOLOv8n
  INT8 IR on an AMX Xeon: 0.4680 mAP50-95 with ``INTER_LINEAR``, 0.4644 with
  ``INTER_AREA``, against 0.4680 from Ultralytics' own ``val`` on the same
  machine (with f32 kernels: 0.4642 / 0.4621 against its 0.4640).
  Classification pre-processing is the same in Ultralytics' ``val`` and
  ``predict``, so there both protocols agree.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import DetectConfig, RuntimeConfig, SliceConfig
from ..errors import ConfigError, InputError
from ..imaging.decode import load_image
from ..results import Failure
from .dataset import ClassifyDataset, YoloDataset, load_classify_dataset, load_dataset, match_classes
from .evaluate import PROTOCOLS, ClassAP, MapMetrics, ValResult, check_dataset_fits, describe, evaluate

__all__ = [
    "PROTOCOLS",
    "ClassAP",
    "MapMetrics",
    "ValResult",
    "describe",
    "evaluate",
    "load_for_task",
    "match_classes",
    "ultralytics_val_resize",
    "validate",
]

log = logging.getLogger(__name__)

#: Tasks :func:`validate` scores.


def validate(
    model: Any,
    dataset: YoloDataset | ClassifyDataset | str | os.PathLike[str],
    *,
    imgsz: int | tuple[int, int] | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    protocol: str = "coco",
    runtime: RuntimeConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    slicing: SliceConfig | None = None,
) -> ValResult:
    """Run ``model`` over the dataset's ``val`` images and score it for its task.

    Args:
        model: an OpenVINO export folder, ``.xml``, ``.onnx``, ``.tflite``, or a
            :class:`~yolo_ov.detector.Detector` (its own detection settings are
            then replaced by the validation ones).
        dataset: a loaded dataset, or a dataset folder (a YOLO dataset; for
            classification a folder-per-class dataset).
        imgsz: network input size (default: the model's own, e.g. 640).
        conf: confidence threshold (Ultralytics' validation default).
        iou: NMS IoU threshold (Ultralytics' validation default).
        max_det: most detections per image (Ultralytics' validation default).
        protocol: ``coco`` (the deployed pre-processing, COCO's AP) or
            ``ultralytics`` (Ultralytics' val pre-processing and AP).
        runtime: how to compile (default: latency mode on CPU). In
            ``throughput`` mode the images go through the throughput
            pipeline (many requests in flight, square letterbox: no shape
            specialisation), so images/s is the batch-job speed.
        progress: called as ``progress(done, total)`` after each image.
        slicing: score a sliced run (:class:`~yolo_ov.config.SliceConfig`):
            each image is cut into tiles, run and merged as ``predict --slice``
            does (``coco`` protocol only: Ultralytics' val resizes the image first).

    Returns:
        A :class:`ValResult`; images that cannot be read are logged and count
        as missing (their objects as misses).

    Raises:
        ConfigError: an unknown protocol, a task that cannot be validated
            (oriented boxes), or a dataset that does not fit the task.
        DatasetError: the dataset is missing or malformed.
    """
    from ..detector import Detector  # the runtime is only needed to run a model

    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is not one of: {', '.join(PROTOCOLS)}")
    if slicing is not None and protocol != "coco":
        raise ConfigError("slicing is scored with the coco protocol only (Ultralytics' val shrinks each image to "
                          "the network size first, which leaves nothing to slice)")
    detect = DetectConfig(conf=conf, iou=iou, max_det=max_det, multi_label=True)
    own = not isinstance(model, Detector)
    if own:
        rt = runtime or RuntimeConfig()
        if imgsz is not None:
            rt = rt.with_(imgsz=imgsz)
        det = Detector(model, runtime=rt, detect=detect)
    elif runtime is not None or imgsz is not None:
        raise ConfigError("pass runtime/imgsz when validating a model path, not with a ready Detector")
    else:
        det = model
    try:
        task = det.model_info.task
        ds = load_for_task(dataset, task) if isinstance(dataset, (str, os.PathLike)) else dataset
        check_dataset_fits(ds, task, f"{det.model_info.path} is a {task} model")
        if isinstance(ds, ClassifyDataset):
            ds = match_classes(ds, det.names)
        images = list(ds.images)
        resize = protocol == "ultralytics" and task != "classify"
        # Validation's own head, passed to each call: the Detector (maybe shared with other threads) is never
        # changed, so a concurrent det(image) keeps decoding with the Detector's head.
        head: Any = det.head
        if protocol == "ultralytics" and task in ("detect", "segment", "pose") and not det.model_info.normalized_coords:
            head = _UltralyticsValHead(head, det.model_info, det.input_hw)  # what Ultralytics scores, unclipped
        t0 = time.perf_counter()
        if own and det.compiled_info.mode != "latency":
            results = _run_pipeline(det, images, resize, progress, head, slicing)
        else:
            results = _run(det, detect, images, resize, progress, head, slicing)
        elapsed = time.perf_counter() - t0
        info = det.compiled_info
        settings: dict[str, Any] = {"imgsz": list(det.input_hw)}
        if task != "classify":
            settings.update(conf=conf, iou=iou, max_det=max_det, multi_label=True)
        settings.update(mode=info.mode, device=info.device, inference_precision=info.inference_precision)
        if slicing is not None:
            settings["slicing"] = {"size": list(slicing.tile_hw), "overlap": list(slicing.overlap_hw),
                                   "full_pass": slicing.full_pass, "merge": slicing.merge, "metric": slicing.metric,
                                   "threshold": slicing.threshold, "class_agnostic": slicing.class_agnostic}
        if resize:
            settings["preprocess"] = "long side resized to imgsz (INTER_LINEAR), then padded (Ultralytics' val)"
        return evaluate(ds, results, task=task, protocol=protocol, network_hw=det.input_hw, elapsed_s=elapsed,
                        model=str(det.model_info.path), settings=settings)
    finally:
        if own:
            det.close()


class _UltralyticsValHead:
    """The model's own head, adding what Ultralytics' ``val`` scores to each result.

    Ultralytics scores unclipped boxes and keypoints and prototype-grid masks
    (see :mod:`yolo_ov.eval.ultralytics`), which only the network outputs
    still hold; everything else is the wrapped head's.
    """

    def __init__(self, head: Any, info: Any, network_hw: tuple[int, int]) -> None:
        self._head = head
        self._info = info
        self._network_hw = network_hw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._head, name)

    def decode(self, outputs: Sequence[np.ndarray], geo: Any, cfg: DetectConfig) -> Any:
        from .ultralytics import ultralytics_extras

        result = self._head.decode(outputs, geo, cfg)
        if not len(result):
            return result
        ranks = [np.ndim(o) for o in outputs]
        proto = ranks.index(3) if self._info.task == "segment" and 3 in ranks else None
        rows = outputs[1 - proto] if proto is not None else outputs[0]
        result.data.update(ultralytics_extras(
            result, rows, outputs[proto] if proto is not None else None, task=self._info.task,
            num_classes=self._info.num_classes, end2end=bool(self._head.end2end),
            network_hw=self._network_hw, kpt_shape=self._info.kpt_shape,
        ))
        return result


def load_for_task(path: str | os.PathLike[str], task: str) -> YoloDataset | ClassifyDataset:
    """The dataset at ``path`` in the form ``task`` is validated on (folders per class for ``classify``)."""
    return load_classify_dataset(path) if task == "classify" else load_dataset(path)


def ultralytics_val_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Ultralytics' validation loader: the long side to ``size``, the sides rounded up, bilinear.

    The letterbox that follows then only pads (at a square ``size``), which
    is how Ultralytics' ``val`` feeds an exported model.
    """
    h0, w0 = image.shape[:2]
    r = size / max(h0, w0)
    if r == 1:
        return image
    w, h = min(math.ceil(w0 * r), size), min(math.ceil(h0 * r), size)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def _frames(images: Sequence[Path], size: int) -> Iterator[Any]:
    """Decoded, Ultralytics-resized frames for the pipeline (an unreadable image stays an error item)."""
    from ..io.sources import SourceItem

    for path in images:
        try:
            frame: Any = ultralytics_val_resize(load_image(path), size)
        except InputError as exc:
            frame = exc
        yield SourceItem(frame, str(path))


def _run_pipeline(
    det: Any, images: Sequence[Path], resize: bool, progress: Callable[[int, int], None] | None, head: Any = None,
    slicing: SliceConfig | None = None,
) -> list[Any]:
    """The throughput pipeline (many requests in flight), at the model's own square size like Ultralytics' val."""
    from ..io.sources import FrameSource
    from ..pipeline import PipelineConfig

    source: Any = FrameSource(_frames(images, max(det.input_hw))) if resize else [str(p) for p in images]
    results: list[Any] = []
    total = len(images)
    for k, res in enumerate(det.stream(source, config=PipelineConfig(specialize="off"), head=head,
                                                slicing=slicing), 1):
        if isinstance(res, Failure):
            log.warning("%s", res.error)
        results.append(res)
        if progress is not None:
            progress(k, total)
    return results


def _run(
    det: Any, detect: DetectConfig, images: Sequence[Path], resize: bool,
    progress: Callable[[int, int], None] | None, head: Any = None, slicing: SliceConfig | None = None,
) -> list[Any]:
    """The latency path with validation's detection settings and head (the Detector's own are left alone)."""
    results: list[Any] = []
    total = len(images)
    for k, path in enumerate(images, start=1):
        source = str(path)
        try:
            image: Any = ultralytics_val_resize(load_image(path), max(det.input_hw)) if resize else path
            results.append(det(image, source=source, detect=detect, head=head, slicing=slicing))
        except InputError as exc:
            log.warning("%s", exc)
            results.append(Failure(source, str(exc)))
        if progress is not None:
            progress(k, total)
    return results
