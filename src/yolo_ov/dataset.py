"""Read YOLO-format datasets: ``data.yaml``, ``images/``, ``labels/``.

The layout is Ultralytics': ``data.yaml`` names the classes and the ``train``
and ``val`` image folders (relative to the file, or to its ``path:`` key);
each image ``.../images/x.jpg`` has its labels in ``.../labels/x.txt``, one
object per line, ``class x_center y_center width height`` normalised to
``[0, 1]`` (a polygon ``class x1 y1 x2 y2 ...`` is read as its bounding box,
as Ultralytics does). An image without a label file is a background image.

Everything is checked when the dataset is loaded, so a bad file is reported
once, up front, as a :class:`~yolo_ov.errors.DatasetError` naming
``file:line``, instead of skewing an mAP silently halfway through a run.
Pure numpy/yaml: nothing here imports OpenVINO.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import DatasetError
from .images import IMAGE_SUFFIXES

__all__ = ["ImageLabels", "YoloDataset", "find_images", "load_dataset"]

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
    """

    image: Path
    label_file: Path | None
    class_id: np.ndarray
    xywhn: np.ndarray

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


@dataclass(frozen=True, eq=False)
class YoloDataset:
    """A loaded, checked split of a YOLO-format dataset.

    Attributes:
        root: the dataset folder (where ``data.yaml`` is).
        split: the split read (``val`` or ``train``).
        names: class id -> name.
        items: one :class:`ImageLabels` per image, in sorted path order.
    """

    root: Path
    split: str
    names: dict[int, str] = field(repr=False)
    items: tuple[ImageLabels, ...] = field(repr=False)

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
    items = tuple(_read_labels(image, len(names)) for image in images)
    if not any(item.label_file is not None for item in items):
        first = _label_path(images[0])
        raise DatasetError(
            f"{yaml_path.parent}: no label files for the {len(images)} '{split}' images "
            f"(looked for e.g. {first}); validation needs YOLO labels in a labels/ folder beside images/"
        )
    return YoloDataset(root=root, split=split, names=names, items=items)


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
        data = yaml.safe_load(path.read_text())
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
            for line in p.read_text().splitlines():
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


def _read_labels(image: Path, num_classes: int) -> ImageLabels:
    label_file = _label_path(image)
    if not label_file.is_file():
        return ImageLabels(image, None, np.zeros(0, np.int32), np.zeros((0, 4), np.float32))
    try:
        text = label_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{label_file}: unreadable label file ({exc})") from exc
    classes: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_file}:{lineno}"
        cls, box = _parse_line(fields, where)
        if not 0 <= cls < num_classes:
            raise DatasetError(
                f"{where}: class id {cls} is out of range; "
                f"the dataset names {num_classes} classes (0..{num_classes - 1})"
            )
        classes.append(cls)
        boxes.append(box)
    return ImageLabels(
        image, label_file, np.asarray(classes, np.int32), np.asarray(boxes, np.float32).reshape(-1, 4)
    )


def _parse_line(fields: list[str], where: str) -> tuple[int, tuple[float, float, float, float]]:
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
    if lo < -_COORD_EPS or hi > 1 + _COORD_EPS:
        raise DatasetError(
            f"{where}: coordinates {shown!r} fall outside the image; YOLO labels are normalised to [0, 1]"
        )
    return int(cls_f), (float(xc), float(yc), float(w), float(h))
