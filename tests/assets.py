"""The one way tests and benchmarks find the shared models and data.

The assets live in ``../shared`` beside the repository (``$YOLO_OV_SHARED``
overrides). The package itself never looks there. In CI (``CI=true``) a
missing asset is an error, never a skip.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class MissingAssets(RuntimeError):
    pass


@dataclass(frozen=True)
class SharedAssets:
    root: Path

    @property
    def fp32_model(self) -> Path:
        return self.root / "models" / "yolov8n_openvino_model"

    @property
    def int8_model(self) -> Path:
        return self.root / "models" / "yolov8n_int8_openvino_model"

    @property
    def pt_model(self) -> Path:
        return self.root / "models" / "yolov8n.pt"

    @property
    def coco96(self) -> Path:
        return self.root / "data" / "coco96"

    @property
    def coco96_images(self) -> list[Path]:
        return sorted((self.coco96 / "images").glob("*.jpg"))

    def video(self, name: str) -> Path:
        """One of the real clips in ``data/video`` (e.g. ``walking_720p.mp4``)."""
        path = self.root / "data" / "video" / name
        if not path.exists():
            raise MissingAssets(f"shared video not found: {path}")
        return path

    def reference(self) -> dict[str, Any]:
        return _reference(self.coco96 / "ultralytics_reference.json")

    #: The task models (every Ultralytics task, issue 10), by file or folder name under models/.
    TASK_MODELS = ("yolo11n_int8_openvino_model", "yolo26n_int8_openvino_model", "yolo11n-seg_int8_openvino_model",
                   "yolov8n-pose_int8_openvino_model", "yolo26n-cls_int8.tflite", "yolo26n-obb_int8.tflite")

    def task_model(self, name: str) -> Path:
        """One of ``TASK_MODELS``; :class:`MissingAssets` when absent."""
        path = self.root / "models" / name
        if not path.exists():
            raise MissingAssets(f"shared task model not found: {path}")
        return path

    def tasks_reference(self) -> dict[str, Any]:
        """What Ultralytics 8.4.190 returned for each task model on coco96 (``ultralytics_reference_tasks.json``)."""
        return _reference(self.coco96 / "ultralytics_reference_tasks.json")

    def reference_model(self, model_dir: Path) -> dict[str, Any]:
        """Ultralytics' own figures for one of the shared models (by folder/file name)."""
        return self.reference()["models"][model_dir.name]


@cache
def _reference(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def shared_assets() -> SharedAssets:
    root = Path(os.environ.get("YOLO_OV_SHARED", REPO.parent / "shared")).resolve()
    assets = SharedAssets(root)
    needed = [assets.fp32_model / "yolov8n.xml", assets.int8_model / "yolov8n.xml", assets.pt_model,
              assets.coco96 / "ultralytics_reference.json", assets.coco96 / "data.yaml"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise MissingAssets(f"shared test assets not found: {', '.join(missing)} (set YOLO_OV_SHARED)")
    return assets
