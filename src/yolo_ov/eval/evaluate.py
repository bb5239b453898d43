"""Score results against a labelled dataset: boxes, masks, keypoints, top-1/top-5.

:func:`evaluate` scores results someone else produced (the latency path, the
throughput pipeline, a saved run): it only needs each result's ``source`` to
be the image's path. It never runs a model, so INT8 accuracy control and
export can use it without depending on the runtime
(:func:`yolo_ov.eval.validate.validate` runs a model and then calls it).

Two scoring protocols (the JSON record says which):

* ``coco`` (default): COCO's AP, computed by ``faster-coco-eval`` (a
  maintained C++ re-implementation of ``pycocotools``), never by hand:
  ``bbox`` for every detection task, ``segm`` for segmentation (labelled
  polygons against the predicted masks' run-length encoding, both at
  original-image resolution) and ``keypoints`` for pose (COCO's OKS with
  its 17 person-keypoint sigmas; the object area is the box area x 0.53,
  as Ultralytics approximates it, because YOLO pose labels carry no
  segmentation area). COCO's standard ``maxDets=100`` is kept.
* ``ultralytics``: Ultralytics' own matching and AP (see
  :mod:`yolo_ov.eval.ultralytics` and
  :mod:`yolo_ov.eval.metrics_ultralytics`), to reproduce the figure its ``val``
  prints. On the same coco96 detections of YOLOv8n the two definitions
  differ by about 0.004 mAP50-95 (COCO's is higher).

Classification is top-1/top-5 accuracy, the same under both protocols.
Oriented boxes have no COCO AP: they are matched by ``probiou`` and scored
with Ultralytics' AP under both protocols (the record says so).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingExtraError
from ..results import Detections, Failure
from .dataset import ClassifyDataset, ImageLabels, YoloDataset
from .metrics_ultralytics import COCO_KEYPOINT_SIGMAS, OKS_AREA_FACTOR, APResult

__all__ = [
    "MAX_DETS",
    "PROTOCOLS",
    "VAL_TASKS",
    "ClassAP",
    "MapMetrics",
    "ValResult",
    "check_dataset_fits",
    "describe",
    "evaluate",
    "keypoint_sigmas",
]

log = logging.getLogger(__name__)

#: Detections per image COCO scores (COCO's standard; Ultralytics' own AP keeps 300).
MAX_DETS = 100
#: Scoring protocols: COCO's AP (faster-coco-eval) or Ultralytics' own.
PROTOCOLS = ("coco", "ultralytics")

_METRIC = {
    "coco": f"COCO AP (faster-coco-eval), maxDets={MAX_DETS}",
    "ultralytics": "Ultralytics AP (its matching and 101-point interpolated AP, re-implemented)",
}


@dataclass(frozen=True)
class ClassAP:
    """AP of one class (only classes with labelled instances are listed)."""

    class_id: int
    name: str
    instances: int
    ap50_95: float
    ap50: float


@dataclass(frozen=True, kw_only=True)
class MapMetrics:
    """One kind of AP over a dataset: of boxes, masks or keypoints.

    Attributes:
        map50_95: mAP averaged over IoU (or OKS) 0.50:0.95.
        map50: mAP at 0.50.
        per_class: AP of each class that has labelled instances.
        precision, recall: mean precision and recall at the confidence of
            the best mean F1 (the ``ultralytics`` protocol reports them, as
            Ultralytics prints them; ``None`` under ``coco``).
    """

    map50_95: float
    map50: float
    per_class: tuple[ClassAP, ...] = field(default=(), repr=False)
    precision: float | None = None
    recall: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"map50_95": round(self.map50_95, 6), "map50": round(self.map50, 6)}
        if self.precision is not None:
            out["precision"] = round(self.precision, 6)
        if self.recall is not None:
            out["recall"] = round(self.recall, 6)
        out["per_class"] = [
            {"class_id": c.class_id, "name": c.name, "instances": c.instances,
             "ap50_95": round(c.ap50_95, 6), "ap50": round(c.ap50, 6)}
            for c in self.per_class
        ]
        return out


@dataclass(frozen=True, kw_only=True)
class ValResult:
    """The outcome of a validation run.

    Attributes:
        images: images in the split.
        instances: labelled objects (classification: labelled images).
        task: ``detect``, ``segment``, ``pose`` or ``classify``.
        protocol: ``coco`` or ``ultralytics`` (see :mod:`yolo_ov.eval.evaluate`).
        box: box AP (every task but classification).
        mask: mask AP (segmentation).
        pose: keypoint (OKS) AP (pose).
        top1, top5: accuracy (classification).
        images_per_s: end-to-end images per second of the run (decode,
            pre-processing, inference, post-processing), ``None`` when not timed.
        missing: images of the split with no result (failed to read or not run);
            their objects count as missed.
        model / dataset: what was validated, for reports.
        settings: conf, iou, imgsz, mode, device... of the run.
    """

    images: int
    instances: int
    task: str = "detect"
    protocol: str = "coco"
    box: MapMetrics | None = None
    mask: MapMetrics | None = None
    pose: MapMetrics | None = None
    top1: float | None = None
    top5: float | None = None
    images_per_s: float | None = None
    missing: int = 0
    model: str | None = None
    dataset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def map50_95(self) -> float:
        """Box mAP50-95 (the detection figure; see :attr:`primary` for the task's own)."""
        return self._box().map50_95

    @property
    def map50(self) -> float:
        """Box mAP50."""
        return self._box().map50

    @property
    def per_class(self) -> tuple[ClassAP, ...]:
        """Box AP per class."""
        return self.box.per_class if self.box is not None else ()

    @property
    def primary(self) -> tuple[str, float]:
        """The task's headline figure: box, mask or pose mAP50-95, or top-1 accuracy.

        INT8 accuracy control bounds the drop of this figure.
        """
        if self.task == "classify":
            return "top1", float(self.top1 or 0.0)
        metrics = {"segment": self.mask, "pose": self.pose}.get(self.task) or self.box
        kind = {"segment": "mask", "pose": "pose"}.get(self.task, "box") if metrics is not self.box else "box"
        return f"{kind} mAP50-95", metrics.map50_95 if metrics is not None else 0.0

    def _box(self) -> MapMetrics:
        if self.box is None:
            raise ConfigError(f"a {self.task} result has no box mAP; read top1/top5 (or .primary)")
        return self.box

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` record."""
        out: dict[str, Any] = {"task": self.task, "protocol": self.protocol, "metric": _METRIC[self.protocol]}
        if self.box is not None:  # the box figures also at the top level, as before tasks existed
            out["map50_95"] = round(self.box.map50_95, 6)
            out["map50"] = round(self.box.map50, 6)
        for name in ("box", "mask", "pose"):
            metrics = getattr(self, name)
            if metrics is not None:
                out[name] = metrics.to_dict()
        if self.task == "classify":
            out["top1"] = round(float(self.top1 or 0.0), 6)
            out["top5"] = round(float(self.top5 or 0.0), 6)
        out.update(
            images=self.images,
            instances=self.instances,
            images_per_s=None if self.images_per_s is None else round(self.images_per_s, 2),
            missing=self.missing,
            model=self.model,
            dataset=self.dataset,
            settings=self.settings,
        )
        if self.box is not None:
            out["per_class"] = out["box"]["per_class"]
        return out


#: The tasks :func:`evaluate` can score.
VAL_TASKS = ("detect", "segment", "pose", "obb", "classify")


def check_dataset_fits(dataset: Any, task: str, subject: str) -> None:
    """Raise :class:`ConfigError` unless ``dataset`` has the labels ``task`` is scored on.

    ``subject`` names what is validated in the message (``"a pose model"``,
    ``"model.xml is a pose model"``). Called before a run and again by
    :func:`evaluate`, so results made elsewhere are checked too.
    """
    where = f"{dataset.root}: " if getattr(dataset, "root", None) is not None else ""
    if task not in VAL_TASKS:
        raise ConfigError(f"{where}validating '{task}' models is not supported "
                          f"(it validates: {', '.join(VAL_TASKS)})")
    if task == "classify":
        if not isinstance(dataset, ClassifyDataset):
            raise ConfigError(f"{where}{subject} is validated on a folder-per-class dataset "
                              "(<dataset>/val/<class name>/<images>), not on YOLO labels")
        return
    if not isinstance(dataset, YoloDataset):
        raise ConfigError(f"{where}{subject} needs a YOLO-format dataset (data.yaml, images/, labels/), "
                          "not class folders")
    if task == "pose" and dataset.kpt_shape is None:
        raise ConfigError(f"{where}{subject} needs keypoint labels: a dataset whose data.yaml sets "
                          "kpt_shape (e.g. [17, 3])")
    if task == "segment" and not dataset.has_segments:
        raise ConfigError(f"{where}{subject} needs polygon labels ('class x1 y1 x2 y2 ...'); "
                          "this dataset has boxes only")
    if task == "obb" and not dataset.has_segments:
        raise ConfigError(f"{where}{subject} needs rotated labels, the four corners "
                          "'class x1 y1 x2 y2 x3 y3 x4 y4' (DOTA-style); this dataset has boxes only")


def evaluate(
    dataset: YoloDataset | ClassifyDataset,
    results: Iterable[Any],
    *,
    task: str | None = None,
    protocol: str = "coco",
    network_hw: tuple[int, int] | None = None,
    elapsed_s: float | None = None,
    model: str | None = None,
    settings: dict[str, Any] | None = None,
) -> ValResult:
    """Score results against the dataset's labels.

    Args:
        dataset: the labelled split (:func:`~yolo_ov.eval.dataset.load_dataset`,
            or :func:`~yolo_ov.eval.dataset.load_classify_dataset` for classification).
        results: one result per image whose ``source`` is the image path (any
            order; :class:`Failure` records count as missing): a
            :class:`Detections`, or a classification result (with ``top5``). Boxes, masks and
            keypoints are scored in the pixels of each result's
            ``image_shape``, to which the normalised labels are scaled.
        task: ``detect``, ``segment``, ``pose`` or ``classify``; default: from
            the dataset (classification folders) and the results (masks,
            keypoints), else ``detect``.
        protocol: ``coco`` or ``ultralytics``.
        network_hw: the network input the results were letterboxed into
            (``ultralytics`` protocol, segmentation: its masks are compared at a
            quarter of that size, as Ultralytics does); default 640x640.
        elapsed_s: wall time the results took, for ``images_per_s``.

    Raises:
        ConfigError: an unknown task/protocol, a result that names an image
            not in the dataset (or the same image twice), or labels the task
            needs missing (polygons for masks, keypoints for pose).
        MissingExtraError: ``faster-coco-eval`` is not installed (``coco``).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is not one of: {', '.join(PROTOCOLS)}")
    got, items = _collect(dataset, results)
    task = task or _infer_task(dataset, got.values())
    scored_as = "ultralytics" if task == "obb" else protocol  # COCO has no rotated-box AP
    common: dict[str, Any] = {
        "images": len(items), "task": task, "protocol": scored_as, "missing": len(items) - len(got),
        "model": model, "dataset": str(dataset.root), "settings": dict(settings or {}),
        "images_per_s": (len(got) / elapsed_s) if elapsed_s and got else None,
    }
    check_dataset_fits(dataset, task, f"a {task} model")
    if task == "classify":
        top1, top5 = _accuracy(dataset, got)
        return ValResult(instances=len(dataset), top1=top1, top5=top5, **common)
    dets: dict[int, Detections] = got  # type: ignore[assignment]
    if protocol == "ultralytics" or task == "obb":  # COCO has no rotated-box AP: OBB is scored Ultralytics' way
        from .ultralytics import score_ultralytics

        sigmas = keypoint_sigmas(dataset) if task == "pose" else None
        scored = score_ultralytics(dataset, dets, task=task, network_hw=network_hw or (640, 640), sigmas=sigmas)
        box = _from_ap(scored["box"], dataset.names)
        mask = _from_ap(scored["mask"], dataset.names) if "mask" in scored else None
        pose = _from_ap(scored["pose"], dataset.names) if "pose" in scored else None
    else:
        box, mask, pose = _score_coco(dataset, dets, task)
    return ValResult(instances=dataset.instances, box=box, mask=mask, pose=pose, **common)


def keypoint_sigmas(dataset: YoloDataset) -> np.ndarray:
    """OKS sigmas: ``kpt_oks_sigmas`` from ``data.yaml``, else COCO's for 17 keypoints, else ``1/K`` each
    (Ultralytics' choice for other keypoint sets)."""
    if dataset.kpt_sigmas is not None:
        return np.asarray(dataset.kpt_sigmas, np.float64)
    k = dataset.kpt_shape[0] if dataset.kpt_shape else 17
    return COCO_KEYPOINT_SIGMAS.copy() if k == 17 else np.full(k, 1.0 / k)


def _from_ap(res: APResult, names: dict[int, str]) -> MapMetrics:
    per_class = tuple(
        ClassAP(int(c), names.get(int(c), str(int(c))), int(n), float(ap.mean()), float(ap[0]))
        for c, n, ap in zip(res.classes, res.instances, res.ap, strict=True)
    )
    return MapMetrics(map50_95=res.map50_95, map50=res.map50, per_class=per_class,
                      precision=res.mean_precision, recall=res.mean_recall)


# -- results -> dataset items -------------------------------------------------

def _collect(dataset: YoloDataset | ClassifyDataset, results: Iterable[Any]) -> tuple[dict[int, Any], list[Any]]:
    items: list[Any] = list(dataset.items) if isinstance(dataset, YoloDataset) else list(dataset.images)
    index = {_key(item.image if isinstance(item, ImageLabels) else item): i for i, item in enumerate(items)}
    got: dict[int, Any] = {}
    for res in results:
        if isinstance(res, Failure):
            continue
        i = index.get(_key(res.source)) if res.source is not None else None
        if i is None:
            raise ConfigError(f"result for {res.source!r} does not name an image of the dataset ({dataset.root})")
        if i in got:
            raise ConfigError(f"two results for the same image {res.source!r}")
        got[i] = res
    return got, items


def _infer_task(dataset: Any, results: Iterable[Any]) -> str:
    if isinstance(dataset, ClassifyDataset):
        return "classify"
    for res in results:
        if not isinstance(res, Detections):  # a classification result
            return "classify"
        if "masks" in res.data:
            return "segment"
        if "keypoints" in res.data:
            return "pose"
        return "detect"
    return "pose" if getattr(dataset, "kpt_shape", None) else "detect"


def _key(source: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.realpath(str(source)))


# -- classification -------------------------------------------------------------

def _accuracy(dataset: ClassifyDataset, got: dict[int, Any]) -> tuple[float, float]:
    """Top-1 / top-5 accuracy over every image of the split (a missing image counts as wrong)."""
    if not len(dataset):
        return 0.0, 0.0
    hit1 = hit5 = 0
    for i, res in got.items():
        truth = int(dataset.class_id[i])
        top5 = list(res.top5)
        hit1 += bool(top5) and top5[0] == truth
        hit5 += truth in top5
    return hit1 / len(dataset), hit5 / len(dataset)


# -- COCO scoring ----------------------------------------------------------------

def _import_cocoeval() -> Any:
    try:
        import faster_coco_eval
    except ImportError as exc:
        raise MissingExtraError("faster-coco-eval", "val", "Computing COCO mAP") from exc
    return faster_coco_eval


def _score_coco(
    dataset: YoloDataset, got: dict[int, Detections], task: str
) -> tuple[MapMetrics, MapMetrics | None, MapMetrics | None]:
    fce = _import_cocoeval()
    images, boxes_gt, boxes_dt = [], [], []
    masks_gt: list[dict[str, Any]] = []
    masks_dt: list[dict[str, Any]] = []
    kpts_gt: list[dict[str, Any]] = []
    kpts_dt: list[dict[str, Any]] = []
    for i, item in enumerate(dataset.items):
        det = got.get(i)
        # The image size only scales the normalised labels; an image with no
        # result is all misses whatever its size, so (1, 1) will do there.
        h, w = det.image_shape if det is not None else (1, 1)
        image_id = i + 1
        images.append({"id": image_id, "width": w, "height": h, "file_name": item.image.name})
        gt = item.xyxy((h, w))
        polygons = item.polygons((h, w)) if task == "segment" else None
        keypoints = item.keypoints_px((h, w)) if task == "pose" else None
        for k, ((x1, y1, x2, y2), cls) in enumerate(zip(gt.tolist(), item.class_id.tolist(), strict=True)):
            ann = {"image_id": image_id, "category_id": cls + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                   "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            boxes_gt.append({**ann, "id": len(boxes_gt) + 1})
            if polygons is not None:
                poly = polygons[k]
                masks_gt.append({**ann, "id": len(masks_gt) + 1, "segmentation": [poly.reshape(-1).tolist()],
                                 "area": _polygon_area(poly)})
            if keypoints is not None:
                kp = keypoints[k]
                kpts_gt.append({**ann, "id": len(kpts_gt) + 1, "keypoints": kp.reshape(-1).tolist(),
                                "num_keypoints": int((kp[:, 2] > 0).sum()),
                                "area": (x2 - x1) * (y2 - y1) * OKS_AREA_FACTOR})
        if det is None or not len(det):
            continue
        xywh = det.xyxy.astype(np.float64)
        xywh[:, 2:] -= xywh[:, :2]
        rows = np.empty((len(det), 7), np.float64)
        rows[:, 0] = image_id
        rows[:, 1:5] = xywh
        rows[:, 5] = det.confidence
        rows[:, 6] = det.class_id.astype(np.int64) + 1
        boxes_dt.append(rows)
        if task == "segment":
            masks_dt += [
                {"image_id": image_id, "category_id": int(c) + 1, "segmentation": rle, "score": float(s)}
                for rle, c, s in zip(det.data["masks"].to_rle(), det.class_id, det.confidence, strict=True)
            ]
        if task == "pose":
            pk = np.asarray(det.data["keypoints"], np.float64)
            if pk.shape[-1] == 2:  # keypoints without confidence: all count
                pk = np.concatenate([pk, np.ones((*pk.shape[:2], 1))], axis=-1)
            kpts_dt += [
                {"image_id": image_id, "category_id": int(c) + 1, "keypoints": p.reshape(-1).tolist(),
                 "score": float(s)}
                for p, c, s in zip(pk, det.class_id, det.confidence, strict=True)
            ]
    categories = [{"id": k + 1, "name": v} for k, v in dataset.names.items()]
    detections = np.concatenate(boxes_dt) if boxes_dt else []
    box = _coco_map(fce, "bbox", images, boxes_gt, categories, detections, dataset)
    mask = _coco_map(fce, "segm", images, masks_gt, categories, masks_dt, dataset) if task == "segment" else None
    pose = None
    if task == "pose":
        pose = _coco_map(fce, "keypoints", images, kpts_gt, categories, kpts_dt, dataset,
                         sigmas=keypoint_sigmas(dataset))
    return box, mask, pose


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def _coco_map(
    fce: Any,
    iou_type: str,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: list[dict[str, Any]],
    detections: Any,
    dataset: YoloDataset,
    sigmas: np.ndarray | None = None,
) -> MapMetrics:
    if not annotations:
        return MapMetrics(map50_95=0.0, map50=0.0)
    gt = fce.COCO({"images": images, "annotations": annotations, "categories": categories}, print_function=_quiet)
    dt = gt.loadRes(detections if len(detections) else [])
    extra = {"kpt_oks_sigmas": list(sigmas)} if sigmas is not None else {}
    ev = fce.COCOeval_faster(gt, dt, iouType=iou_type, print_function=_quiet, **extra)
    ev.params.maxDets = [1, 10, MAX_DETS] if iou_type != "keypoints" else [MAX_DETS]  # summary uses the last
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
    return MapMetrics(map50_95=map50_95, map50=map50, per_class=tuple(per_class))


def _mean(p: np.ndarray) -> float:
    v = p[p > -1]
    return float(v.mean()) if v.size else 0.0


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """faster-coco-eval prints progress through this; validation stays silent."""


def describe(result: ValResult) -> str:
    """One line, e.g. ``mAP50-95 0.4650  mAP50 0.6300  96 images  717 instances  41.2 images/s  (coco AP)``."""
    speed = f"  {result.images_per_s:.1f} images/s" if result.images_per_s else ""
    missing = f"  ({result.missing} missing)" if result.missing else ""
    if result.task == "classify":
        figures = f"top-1 {result.top1 or 0.0:.4f}  top-5 {result.top5 or 0.0:.4f}"
        counted = f"{result.images} images"
    else:
        parts = []
        for name in ("box", "mask", "pose"):
            m = getattr(result, name)
            if m is None:
                continue
            label = "" if result.task == "detect" else f"{name} "
            parts.append(f"{label}mAP50-95 {m.map50_95:.4f}  {label}mAP50 {m.map50:.4f}")
        figures = "  ".join(parts)
        counted = f"{result.images} images  {result.instances} instances"
    return f"{figures}  {counted}{speed}{missing}  ({result.protocol} AP)" if result.task != "classify" else (
        f"{figures}  {counted}{speed}{missing}"
    )
