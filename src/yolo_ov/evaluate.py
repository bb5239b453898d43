"""COCO mAP of detections on a YOLO-format dataset, scored by ``faster-coco-eval``.

:func:`evaluate` scores detections someone else produced (the latency path,
the throughput pipeline, a saved run): it only needs each result's ``source``
to be the image's path. It never runs a model, so INT8 accuracy control and
export can use it without depending on the runtime
(:func:`yolo_ov.validate.validate` runs a model and then calls it).

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dataset import YoloDataset
from .errors import ConfigError, MissingExtraError
from .results import Detections, Failure

__all__ = ["MAX_DETS", "ClassAP", "ValResult", "describe", "evaluate"]

log = logging.getLogger(__name__)

#: Detections per image COCO scores (COCO's standard; Ultralytics' own AP keeps 300).
MAX_DETS = 100


@dataclass(frozen=True)
class ClassAP:
    """AP of one class (only classes with labelled instances are listed)."""

    class_id: int
    name: str
    instances: int
    ap50_95: float
    ap50: float


@dataclass(frozen=True, kw_only=True)
class ValResult:
    """The outcome of a validation run.

    Attributes:
        map50_95: COCO mAP averaged over IoU 0.50:0.95.
        map50: COCO mAP at IoU 0.50.
        images: images in the split.
        instances: labelled objects in the split.
        per_class: AP of each class that has labelled instances.
        images_per_s: end-to-end images per second of the run (decode,
            letterbox, inference, NMS), ``None`` when not timed.
        missing: images of the split with no result (failed to read or not run);
            their objects count as missed.
        model / dataset: what was validated, for reports.
        settings: conf, iou, imgsz, mode, device... of the run.
    """

    map50_95: float
    map50: float
    images: int
    instances: int
    per_class: tuple[ClassAP, ...] = field(default=(), repr=False)
    images_per_s: float | None = None
    missing: int = 0
    model: str | None = None
    dataset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` record."""
        return {
            "map50_95": round(self.map50_95, 6),
            "map50": round(self.map50, 6),
            "images": self.images,
            "instances": self.instances,
            "images_per_s": None if self.images_per_s is None else round(self.images_per_s, 2),
            "missing": self.missing,
            "model": self.model,
            "dataset": self.dataset,
            "metric": f"COCO bbox AP (faster-coco-eval), maxDets={MAX_DETS}",
            "settings": self.settings,
            "per_class": [
                {"class_id": c.class_id, "name": c.name, "instances": c.instances,
                 "ap50_95": round(c.ap50_95, 6), "ap50": round(c.ap50, 6)}
                for c in self.per_class
            ],
        }


def evaluate(
    dataset: YoloDataset,
    results: Iterable[Detections | Failure],
    *,
    elapsed_s: float | None = None,
    model: str | None = None,
    settings: dict[str, Any] | None = None,
) -> ValResult:
    """Score detections against the dataset's labels with COCO's mAP.

    Args:
        dataset: the labelled split (:func:`~yolo_ov.dataset.load_dataset`).
        results: one :class:`Detections` per image whose ``source`` is the
            image path (any order; :class:`Failure` records count as missing).
        elapsed_s: wall time the results took, for ``images_per_s``.

    Raises:
        ConfigError: a result names an image that is not in the dataset, or
            the same image twice.
        MissingExtraError: ``faster-coco-eval`` is not installed.
    """
    cocoeval = _import_cocoeval()
    index = {_key(item.image): i for i, item in enumerate(dataset.items)}
    got: dict[int, Detections] = {}
    for res in results:
        if isinstance(res, Failure):
            continue
        i = index.get(_key(res.source)) if res.source is not None else None
        if i is None:
            raise ConfigError(f"result for {res.source!r} does not name an image of the dataset ({dataset.root})")
        if i in got:
            raise ConfigError(f"two results for the same image {res.source!r}")
        got[i] = res

    images, annotations, detections = [], [], []
    for i, item in enumerate(dataset.items):
        det = got.get(i)
        # The image size only scales the normalised labels; an image with no
        # result is all misses whatever its size, so (1, 1) will do there.
        h, w = det.image_shape if det is not None else (1, 1)
        images.append({"id": i + 1, "width": w, "height": h, "file_name": item.image.name})
        gt = item.xyxy((h, w))
        for (x1, y1, x2, y2), cls in zip(gt.tolist(), item.class_id.tolist(), strict=True):
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })
        if det is not None and len(det):
            xywh = det.xyxy.astype(np.float64)
            xywh[:, 2:] -= xywh[:, :2]
            rows = np.empty((len(det), 7), np.float64)
            rows[:, 0] = i + 1
            rows[:, 1:5] = xywh
            rows[:, 5] = det.confidence
            rows[:, 6] = det.class_id.astype(np.int64) + 1
            detections.append(rows)

    categories = [{"id": k + 1, "name": v} for k, v in dataset.names.items()]
    stats, per_class = _coco_map(cocoeval, images, annotations, categories, detections, dataset)
    n = len(dataset)
    done = len(got)
    return ValResult(
        map50_95=stats[0],
        map50=stats[1],
        images=n,
        instances=dataset.instances,
        per_class=per_class,
        images_per_s=(done / elapsed_s) if elapsed_s and done else None,
        missing=n - done,
        model=model,
        dataset=str(dataset.root),
        settings=dict(settings or {}),
    )


# -- COCO scoring ----------------------------------------------------------

def _import_cocoeval() -> Any:
    try:
        import faster_coco_eval
    except ImportError as exc:
        raise MissingExtraError("faster-coco-eval", "val", "Computing COCO mAP") from exc
    return faster_coco_eval


def _key(source: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.realpath(str(source)))


def _coco_map(
    fce: Any,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: list[dict[str, Any]],
    detections: list[np.ndarray],
    dataset: YoloDataset,
) -> tuple[tuple[float, float], tuple[ClassAP, ...]]:
    if not annotations:
        return (0.0, 0.0), ()
    gt = fce.COCO({"images": images, "annotations": annotations, "categories": categories}, print_function=_quiet)
    dt = gt.loadRes(np.concatenate(detections) if detections else [])
    ev = fce.COCOeval_faster(gt, dt, iouType="bbox", print_function=_quiet)
    ev.params.maxDets = [1, 10, MAX_DETS]  # summary stats index the last one
    ev.evaluate()
    ev.accumulate()
    # precision: [T iou thresholds, R recall points, K classes, A areas, M maxDets]; -1 = no ground truth
    precision = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]
    t50 = int(np.argmin(np.abs(np.asarray(ev.params.iouThrs) - 0.5)))
    counts = np.bincount(np.concatenate([it.class_id for it in dataset.items]), minlength=dataset.num_classes)
    per_class = []
    for k, cat in enumerate(ev.params.catIds):
        cls = int(cat) - 1
        p = precision[:, :, k]
        if counts[cls] == 0 or not (p > -1).any():
            continue
        per_class.append(ClassAP(cls, dataset.names[cls], int(counts[cls]), _mean(p), _mean(p[t50])))
    valid = precision > -1
    map50_95 = float(precision[valid].mean()) if valid.any() else 0.0
    p50 = precision[t50]
    map50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else 0.0
    return (map50_95, map50), tuple(per_class)


def _mean(p: np.ndarray) -> float:
    v = p[p > -1]
    return float(v.mean()) if v.size else 0.0


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """faster-coco-eval prints progress through this; validation stays silent."""


def describe(result: ValResult) -> str:
    """One line: ``mAP50-95 0.4650  mAP50 0.6300  96 images  717 instances  41.2 images/s``."""
    speed = f"  {result.images_per_s:.1f} images/s" if result.images_per_s else ""
    missing = f"  ({result.missing} missing)" if result.missing else ""
    return (
        f"mAP50-95 {result.map50_95:.4f}  mAP50 {result.map50:.4f}  {result.images} images  "
        f"{result.instances} instances{speed}{missing}"
    )

