"""Read YOLO-format datasets: ``data.yaml``, ``images/``, ``labels/``.

The layout is Ultralytics': ``data.yaml`` names the classes and the ``train``
and ``val`` image folders (relative to the file, or to its ``path:`` key);
each image ``.../images/x.jpg`` has its labels in ``.../labels/x.txt``, one
object per line, normalised to ``[0, 1]``:

* detection: ``class x_center y_center width height``;
* segmentation: a polygon ``class x1 y1 x2 y2 ...``; its box is the polygon's
  bounding box, as Ultralytics makes it, and the polygon is kept for mask AP;
* pose (``kpt_shape: [K, D]`` in ``data.yaml``): the box followed by ``K``
  keypoints of ``D`` values (``x y`` or ``x y visibility``).

An image without a label file is a background image. Classification datasets
are folders of images, one folder per class (:func:`load_classify_dataset`).

Everything is checked when the dataset is loaded, so a bad file is reported
once, up front, as a :class:`~yolo_ov.errors.DatasetError` naming
``file:line``, instead of skewing an mAP silently halfway through a run.
Pure numpy/yaml: nothing here imports OpenVINO.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import DatasetError
from ..imaging.decode import IMAGE_SUFFIXES

__all__ = [
    "ClassifyDataset",
    "ImageLabels",
    "YoloDataset",
    "find_images",
    "load_classify_dataset",
    "load_dataset",
    "match_classes",
]

_DATA_YAML = ("data.yaml", "data.yml", "dataset.yaml")
#: Tolerance for normalised coordinates a hair outside [0, 1] (float rounding in converters).
_COORD_EPS = 1e-3


@dataclass(frozen=True, eq=False)
class ImageLabels:
    """The ground truth of one image.

    Attributes:
        image: the image file.
        label_file: its label file, or ``None`` for a background image.
        class_id: ``(N,)`` int32 class ids.
        xywhn: ``(N, 4)`` float32 ``x_center, y_center, width, height`` normalised to the image size.
        segments: one normalised ``(P, 2)`` float32 polygon per object when
            the labels are polygons (an object labelled by a box gets its
            rectangle); ``None`` when no object of the image has a polygon.
        keypoints: ``(N, K, D)`` float32 normalised keypoints (pose datasets), else ``None``.
    """

    image: Path
    label_file: Path | None
    class_id: np.ndarray
    xywhn: np.ndarray
    segments: tuple[np.ndarray, ...] | None = None
    keypoints: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.class_id)

    def xyxy(self, image_shape: tuple[int, int]) -> np.ndarray:
        """Boxes in pixels of an image of ``(height, width)``, as float64 ``x1, y1, x2, y2``."""
        h, w = image_shape
        b = self.xywhn.astype(np.float64)
        out = np.empty_like(b)
        out[:, 0] = (b[:, 0] - b[:, 2] / 2) * w
        out[:, 1] = (b[:, 1] - b[:, 3] / 2) * h
        out[:, 2] = (b[:, 0] + b[:, 2] / 2) * w
        out[:, 3] = (b[:, 1] + b[:, 3] / 2) * h
        return out

    def polygons(self, image_shape: tuple[int, int]) -> list[np.ndarray]:
        """Each object's polygon in pixels of an image of ``(height, width)``, ``(P, 2)`` float64.

        Objects labelled by a box (no polygon) get the box's rectangle, as COCO does.
        """
        h, w = image_shape
        scale = np.array([w, h], np.float64)
        if self.segments is not None:
            return [seg.astype(np.float64) * scale for seg in self.segments]
        return [_rectangle(box) for box in self.xyxy(image_shape)]

    def keypoints_px(self, image_shape: tuple[int, int]) -> np.ndarray:
        """``(N, K, 3)`` keypoints in pixels with visibility (``D = 2`` labels: visible where labelled)."""
        if self.keypoints is None:
            raise DatasetError(f"{self.label_file or self.image}: no keypoint labels (pose datasets set kpt_shape)")
        h, w = image_shape
        k = self.keypoints.astype(np.float64)
        out = np.zeros((*k.shape[:2], 3), np.float64)
        out[..., 0] = k[..., 0] * w
        out[..., 1] = k[..., 1] * h
        out[..., 2] = k[..., 2] if k.shape[2] > 2 else ((k[..., 0] > 0) | (k[..., 1] > 0)).astype(np.float64)
        return out


@dataclass(frozen=True, eq=False)
class YoloDataset:
    """A loaded, checked split of a YOLO-format dataset.

    Attributes:
        root: the dataset folder (where ``data.yaml`` is).
        split: the split read (``val`` or ``train``).
        names: class id -> name.
        items: one :class:`ImageLabels` per image, in sorted path order.
        kpt_shape: ``(K, D)`` for pose datasets, else ``None``.
        kpt_sigmas: per-keypoint OKS sigmas from ``data.yaml`` (``kpt_oks_sigmas``), if given.
    """

    root: Path
    split: str
    names: dict[int, str] = field(repr=False)
    items: tuple[ImageLabels, ...] = field(repr=False)
    kpt_shape: tuple[int, int] | None = None
    kpt_sigmas: tuple[float, ...] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ImageLabels]:
        return iter(self.items)

    @property
    def images(self) -> list[Path]:
        return [item.image for item in self.items]

    @property
    def instances(self) -> int:
        """Number of labelled objects in the split."""
        return sum(len(item) for item in self.items)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def has_segments(self) -> bool:
        """Some objects are labelled with polygons (a segmentation dataset)."""
        return any(item.segments is not None for item in self.items)


def load_dataset(path: str | os.PathLike[str], split: str = "val") -> YoloDataset:
    """Load and check one split of a YOLO-format dataset.

    Args:
        path: the dataset folder (holding ``data.yaml``) or the yaml file itself.
        split: ``val`` (default) or ``train``; ``val`` falls back to nothing else.

    Raises:
        DatasetError: a missing/unreadable ``data.yaml``, no images, no label
            files at all, a malformed label line, an out-of-range class id or
            a coordinate outside the image; the message names ``file:line``.
    """
    yaml_path = _data_yaml(Path(path).expanduser())
    data = _read_yaml(yaml_path)
    names = _names(data, yaml_path)
    root = _root(data, yaml_path)
    images = _split_images(data, split, root, yaml_path)
    kpt_shape = _kpt_shape(data, yaml_path)
    sigmas = _kpt_sigmas(data, kpt_shape, yaml_path)
    items = tuple(_read_labels(image, len(names), kpt_shape) for image in images)
    if not any(item.label_file is not None for item in items):
        first = _label_path(images[0])
        raise DatasetError(
            f"{yaml_path.parent}: no label files for the {len(images)} '{split}' images "
            f"(looked for e.g. {first}); validation needs YOLO labels in a labels/ folder beside images/"
        )
    return YoloDataset(root=root, split=split, names=names, items=items, kpt_shape=kpt_shape, kpt_sigmas=sigmas)


def find_images(path: str | os.PathLike[str], split: str = "train") -> list[Path]:
    """Images for calibration: a dataset's ``split`` (labels not needed) or any folder of images.

    Raises:
        DatasetError: the path does not exist or holds no images.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{p}: no such dataset or image folder")
    is_yaml = p.is_file() and p.suffix.lower() in (".yaml", ".yml")
    if is_yaml or (p.is_dir() and any((p / n).exists() for n in _DATA_YAML)):
        yaml_path = _data_yaml(p)
        data = _read_yaml(yaml_path)
        key = split if data.get(split) else "val"
        return _split_images(data, key, _root(data, yaml_path), yaml_path)
    if p.is_file():
        raise DatasetError(f"{p}: expected a folder of images or a dataset (folder with data.yaml)")
    images = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not images:
        raise DatasetError(f"{p}: the folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


# -- data.yaml -------------------------------------------------------------

def _data_yaml(p: Path) -> Path:
    if p.is_file():
        return p
    if not p.exists():
        raise DatasetError(f"{p}: no such dataset folder")
    for name in _DATA_YAML:
        if (p / name).is_file():
            return p / name
    raise DatasetError(f"{p}: not a YOLO dataset: no data.yaml (with 'names' and 'val' keys) in this folder")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: unreadable dataset file ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with 'names' and 'val' keys")
    return data


def _names(data: dict[str, Any], path: Path) -> dict[int, str]:
    raw = data.get("names")
    if isinstance(raw, list) and raw:
        return {i: str(n) for i, n in enumerate(raw)}
    if isinstance(raw, dict) and raw:
        try:
            names = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: 'names' keys must be class ids 0..n-1") from None
        if sorted(names) != list(range(len(names))):
            raise DatasetError(f"{path}: 'names' must number classes 0..{len(names) - 1} without gaps")
        return names
    raise DatasetError(f"{path}: no class 'names' list in the dataset file")


def _root(data: dict[str, Any], yaml_path: Path) -> Path:
    base = data.get("path")
    if base:
        root = Path(str(base)).expanduser()
        return root if root.is_absolute() else (yaml_path.parent / root)
    return yaml_path.parent


def _split_images(data: dict[str, Any], split: str, root: Path, yaml_path: Path) -> list[Path]:
    spec = data.get(split)
    if not spec:
        raise DatasetError(f"{yaml_path}: no '{split}' entry naming the {split} images")
    entries = spec if isinstance(spec, list) else [spec]
    images: list[Path] = []
    for entry in entries:
        p = Path(str(entry)).expanduser()
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images += [f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        elif p.is_file() and p.suffix == ".txt":  # a list of image paths, relative to the list's folder
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    f = Path(line.strip())
                    images.append(f if f.is_absolute() else (p.parent / f))
        else:
            raise DatasetError(f"{yaml_path}: '{split}' entry {entry!r} ({p}) is not an image folder or a .txt list")
    images = sorted(set(images))
    if not images:
        raise DatasetError(f"{yaml_path}: the '{split}' split ({spec}) holds no image files")
    return images


# -- labels ----------------------------------------------------------------

def _label_path(image: Path) -> Path:
    """``.../images/a/b.jpg`` -> ``.../labels/a/b.txt`` (the last ``images`` folder is replaced)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _kpt_shape(data: dict[str, Any], path: Path) -> tuple[int, int] | None:
    raw = data.get("kpt_shape")
    if raw is None:
        return None
    if not (isinstance(raw, (list, tuple)) and len(raw) == 2 and all(isinstance(v, int) for v in raw)
            and raw[0] > 0 and raw[1] in (2, 3)):
        raise DatasetError(f"{path}: kpt_shape must be [keypoints, 2 or 3], e.g. [17, 3]; got {raw!r}")
    return (int(raw[0]), int(raw[1]))


def _kpt_sigmas(data: dict[str, Any], kpt_shape: tuple[int, int] | None, path: Path) -> tuple[float, ...] | None:
    raw = data.get("kpt_oks_sigmas")
    if raw is None or kpt_shape is None:
        return None
    try:
        sigmas = tuple(float(v) for v in raw)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: kpt_oks_sigmas must be a list of numbers") from None
    if len(sigmas) != kpt_shape[0] or min(sigmas) <= 0:
        raise DatasetError(f"{path}: kpt_oks_sigmas must be {kpt_shape[0]} positive values, got {raw!r}")
    return sigmas


def _rectangle(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)


def _read_labels(image: Path, num_classes: int, kpt_shape: tuple[int, int] | None = None) -> ImageLabels:
    label_file = _label_path(image)
    if not label_file.is_file():
        kpts = np.zeros((0, *kpt_shape), np.float32) if kpt_shape else None
        return ImageLabels(image, None, np.zeros(0, np.int32), np.zeros((0, 4), np.float32), keypoints=kpts)
    try:
        text = label_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{label_file}: unreadable label file ({exc})") from exc
    classes: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    polygons: list[np.ndarray | None] = []
    keypoints: list[np.ndarray] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_file}:{lineno}"
        if kpt_shape is not None:
            cls, box, kpts = _parse_pose_line(fields, kpt_shape, where)
            keypoints.append(kpts)
            polygon = None
        else:
            cls, box, polygon = _parse_line(fields, where)
        if not 0 <= cls < num_classes:
            raise DatasetError(
                f"{where}: class id {cls} is out of range; "
                f"the dataset names {num_classes} classes (0..{num_classes - 1})"
            )
        classes.append(cls)
        boxes.append(box)
        polygons.append(polygon)
    xywhn = np.asarray(boxes, np.float32).reshape(-1, 4)
    segments = None
    if any(p is not None for p in polygons):
        segments = tuple(
            p if p is not None else (_rectangle(_xyxyn(b)).astype(np.float32))
            for p, b in zip(polygons, xywhn, strict=True)
        )
    kpts = None
    if kpt_shape is not None:
        kpts = np.asarray(keypoints, np.float32).reshape(-1, *kpt_shape)
    return ImageLabels(image, label_file, np.asarray(classes, np.int32), xywhn, segments=segments, keypoints=kpts)


def _xyxyn(xywhn: np.ndarray) -> np.ndarray:
    xc, yc, w, h = (float(v) for v in xywhn)
    return np.array([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2])


def _parse_pose_line(
    fields: list[str], kpt_shape: tuple[int, int], where: str
) -> tuple[int, tuple[float, float, float, float], np.ndarray]:
    """``class xc yc w h`` + K x (``x y [visibility]``), all normalised (visibility 0, 1 or 2)."""
    k, d = kpt_shape
    shown = " ".join(fields)[:80]
    if len(fields) != 5 + k * d:
        raise DatasetError(
            f"{where}: malformed pose label line {shown!r}: expected 'class x_center y_center width height' "
            f"and {k} keypoints of {d} values ({5 + k * d} values, kpt_shape {list(kpt_shape)}), got {len(fields)}"
        )
    cls, box, _ = _parse_line(fields[:5], where)
    try:
        values = np.asarray([float(v) for v in fields[5:]], np.float64).reshape(k, d)
    except ValueError:
        raise DatasetError(f"{where}: malformed pose label line {shown!r}: non-numeric keypoint value") from None
    if not np.isfinite(values).all():
        raise DatasetError(f"{where}: malformed pose label line {shown!r}: NaN or infinite keypoint")
    xy = values[:, :2]
    if xy.min() < -_COORD_EPS or xy.max() > 1 + _COORD_EPS:
        raise DatasetError(f"{where}: keypoints in {shown!r} fall outside the image; they are normalised to [0, 1]")
    if d == 3 and not np.isin(values[:, 2], (0.0, 1.0, 2.0)).all():
        raise DatasetError(f"{where}: keypoint visibility in {shown!r} must be 0, 1 or 2")
    return cls, box, values.astype(np.float32)


def _parse_line(
    fields: list[str], where: str
) -> tuple[int, tuple[float, float, float, float], np.ndarray | None]:
    """One detection (box) or segmentation (polygon) line: class, normalised ``xywh``, and the polygon if any."""
    shown = " ".join(fields)[:80]
    n = len(fields)
    if n != 5 and (n < 7 or (n - 1) % 2):
        raise DatasetError(
            f"{where}: malformed label line {shown!r}: expected 'class x_center y_center width height' (normalised)"
        )
    try:
        cls_f = float(fields[0])
        values = np.asarray([float(v) for v in fields[1:]], np.float64)
    except ValueError:
        raise DatasetError(f"{where}: malformed label line {shown!r}: non-numeric value") from None
    if not cls_f.is_integer():
        raise DatasetError(f"{where}: malformed label line {shown!r}: class id must be an integer")
    if not np.isfinite(values).all():
        raise DatasetError(f"{where}: malformed label line {shown!r}: NaN or infinite coordinate")
    polygon = None
    if n == 5:
        xc, yc, w, h = values.tolist()
        lo, hi = float(values.min()), float(values.max())  # Ultralytics' check: each value in [0, 1]
        if w <= 0 or h <= 0:
            raise DatasetError(f"{where}: box {shown!r} has zero or negative width/height")
    else:  # polygon: x1 y1 x2 y2 ... -> its bounding box
        xs, ys = values[0::2], values[1::2]
        lo, hi = float(min(xs.min(), ys.min())), float(max(xs.max(), ys.max()))
        x1, x2, y1, y2 = xs.min(), xs.max(), ys.min(), ys.max()
        xc, yc, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        polygon = np.stack([xs, ys], axis=1).astype(np.float32)
    if lo < -_COORD_EPS or hi > 1 + _COORD_EPS:
        raise DatasetError(
            f"{where}: coordinates {shown!r} fall outside the image; YOLO labels are normalised to [0, 1]"
        )
    return int(cls_f), (float(xc), float(yc), float(w), float(h)), polygon


# -- classification folders --------------------------------------------------

@dataclass(frozen=True, eq=False)
class ClassifyDataset:
    """One split of a folder-per-class classification dataset (Ultralytics' layout).

    ``root/val/<class>/<image>`` (``val`` falls back to ``test``), or
    ``root/<class>/<image>`` for a folder without split folders. The classes
    are the folder names in sorted order, as Ultralytics (torchvision's
    ``ImageFolder``) numbers them.

    Attributes:
        root: the dataset folder.
        split: the split folder read (``val``, ``test``, ``train``, or ``.``).
        names: class id -> folder name.
        images: every image, grouped by class, sorted.
        class_id: ``(N,)`` int32 class of each image.
    """

    root: Path
    split: str
    names: dict[int, str] = field(repr=False)
    images: tuple[Path, ...] = field(repr=False)
    class_id: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def instances(self) -> int:
        """Labelled images (one label each)."""
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.names)


def load_classify_dataset(path: str | os.PathLike[str], split: str = "val") -> ClassifyDataset:
    """Load one split of a folder-per-class dataset.

    Raises:
        DatasetError: the folder does not exist, holds no class folders, or no images.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder (classification datasets are folders of class folders)")
    fallbacks = {"val": ("val", "test"), "test": ("test", "val")}.get(split, (split,))
    folder, used = root, "."
    for name in fallbacks:
        if (root / name).is_dir():
            folder, used = root / name, name
            break
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(
            f"{folder}: no class folders; a classification dataset is {root}/{split}/<class name>/<images>"
        )
    images: list[Path] = []
    ids: list[int] = []
    for k, cls in enumerate(classes):
        found = sorted(f for f in cls.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        images += found
        ids += [k] * len(found)
    if not images:
        raise DatasetError(f"{folder}: the {len(classes)} class folders hold no image files")
    return ClassifyDataset(
        root=root, split=used, names={k: p.name for k, p in enumerate(classes)},
        images=tuple(images), class_id=np.asarray(ids, np.int32),
    )


def match_classes(ds: ClassifyDataset, names: dict[int, str]) -> ClassifyDataset:
    """The dataset with its labels as the model's class ids.

    Class folders are matched to the model's class names (exactly, else with
    case, ``_`` and ``-`` ignored); a dataset whose folders are not the model's names but
    number exactly the model's classes is taken in sorted order, as
    Ultralytics does (ImageNet's ``n01440764``-style folders).

    Raises:
        DatasetError: neither rule applies.
    """
    exact = {v: k for k, v in names.items()}  # first: ImageNet has both "Cardigan" and "cardigan"
    loose = {_norm(v): k for k, v in names.items()}
    by_name = {k: exact.get(v, loose.get(_norm(v))) for k, v in ds.names.items()}
    if all(v is not None for v in by_name.values()):
        ids = np.array([by_name[int(c)] for c in ds.class_id], np.int32)
        return replace(ds, class_id=ids, names=dict(names))
    if len(ds.names) == len(names):
        return replace(ds, names=dict(names))
    unknown = [v for k, v in ds.names.items() if by_name[k] is None]
    raise DatasetError(
        f"{ds.root}: {len(ds.names)} class folders, {len(unknown)} of them not class names of the model "
        f"(e.g. {unknown[0]!r}); name the folders after the model's classes, or give one folder per model class "
        f"({len(names)}) in its order"
    )


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()
