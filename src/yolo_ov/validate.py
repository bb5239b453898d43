"""COCO mAP of a model on a YOLO-format dataset, scored by ``faster-coco-eval``.

Two entry points:

* :func:`evaluate` scores detections someone else produced (the latency path,
  the throughput pipeline, a saved run): it only needs each result's
  ``source`` to be the image's path.
* :func:`validate` runs a model over the dataset with the settings
  Ultralytics' validator uses for exported models (``conf=0.001``,
  ``iou=0.7``, multi-label NMS, ``max_det=300``, a square letterbox at the
  model's size) and scores the result.

The AP is COCO's own definition, computed by ``faster-coco-eval`` (a
maintained C++ re-implementation of ``pycocotools``), never by hand.
Ultralytics' validator computes its own AP (greedy IoU-ordered matching and a
trapezoid-integrated 101-point PR curve). Scoring the very same detections
both ways on coco96, COCO's figure is 0.0036 higher for YOLOv8n (0.4699 vs
0.4663 mAP50-95) - the difference is the definition, not the detections.
COCO's standard ``maxDets=100`` is kept (Ultralytics keeps up to 300
detections per image; on coco96 the extra ones do not change the figure).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from .config import DetectConfig, RuntimeConfig
from .dataset import YoloDataset, load_dataset
from .errors import ConfigError, InputError
from .evaluate import ClassAP, ValResult, describe, evaluate
from .results import Detections, Failure

__all__ = ["ClassAP", "ValResult", "describe", "evaluate", "validate"]

log = logging.getLogger(__name__)


def validate(
    model: Any,
    dataset: YoloDataset | str | os.PathLike[str],
    *,
    imgsz: int | tuple[int, int] | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    runtime: RuntimeConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ValResult:
    """Run ``model`` over the dataset's ``val`` images and score it.

    Args:
        model: an OpenVINO export folder, ``.xml``, ``.onnx``, or a
            :class:`~yolo_ov.detector.Detector` (its own detection settings are
            then replaced by the validation ones).
        dataset: a loaded :class:`YoloDataset` or a dataset folder.
        imgsz: network input size (default: the model's own, e.g. 640).
        conf, iou, max_det: Ultralytics' validation defaults.
        runtime: how to compile (default: latency mode on CPU). In
            ``throughput`` mode the images go through the throughput
            pipeline (many requests in flight, square letterbox: no shape
            specialisation), so images/s is the batch-job speed.
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        A :class:`ValResult`; images that cannot be read are logged and count
        as missing (their objects as misses).
    """
    from .detector import Detector  # the runtime is only needed to run a model

    ds = dataset if isinstance(dataset, YoloDataset) else load_dataset(dataset)
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
        t0 = time.perf_counter()
        if own and det.compiled_info.mode != "latency":
            results = _run_pipeline(det, ds, progress)
        else:
            results = _run(det, detect, ds, progress)
        elapsed = time.perf_counter() - t0
        info = det.compiled_info
        settings = {
            "imgsz": list(det.input_hw), "conf": conf, "iou": iou, "max_det": max_det, "multi_label": True,
            "mode": info.mode, "device": info.device, "inference_precision": info.inference_precision,
        }
        return evaluate(ds, results, elapsed_s=elapsed, model=str(det.model_info.path), settings=settings)
    finally:
        if own:
            det.close()


def _run_pipeline(
    det: Any, ds: YoloDataset, progress: Callable[[int, int], None] | None
) -> list[Detections | Failure]:
    """The throughput pipeline (many requests in flight), at the model's own square size like Ultralytics' val."""
    from .pipeline import PipelineConfig

    results: list[Detections | Failure] = []
    total = len(ds)
    for k, res in enumerate(det.stream([str(p) for p in ds.images], config=PipelineConfig(specialize="off")), 1):
        if isinstance(res, Failure):
            log.warning("%s", res.error)
        results.append(res)
        if progress is not None:
            progress(k, total)
    return results


def _run(
    det: Any, detect: DetectConfig, ds: YoloDataset, progress: Callable[[int, int], None] | None
) -> list[Detections | Failure]:
    """The latency path with validation's detection settings (the Detector's own are left alone)."""
    results: list[Detections | Failure] = []
    total = len(ds)
    for k, item in enumerate(ds.items, start=1):
        source = str(item.image)
        try:
            results.append(det(item.image, source=source, detect=detect))
        except InputError as exc:
            log.warning("%s", exc)
            results.append(Failure(source, str(exc)))
        if progress is not None:
            progress(k, total)
    return results
