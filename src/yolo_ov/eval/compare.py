"""Accuracy and speed of several models side by side, in one run.

Each model is validated on the same dataset with the same settings
(:func:`yolo_ov.eval.validate.validate`), one after the other, so the mAP and
images/s columns are directly comparable. The chart (mAP50-95 against
images/s) needs matplotlib (the ``val`` extra), imported only when drawn.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RuntimeConfig
from ..errors import MissingExtraError
from .dataset import ClassifyDataset, YoloDataset
from .validate import ValResult, validate

__all__ = ["Comparison", "compare_models", "figures", "plot_comparison", "table_rows"]


@dataclass(frozen=True)
class Comparison:
    """One row: a model's label, precision (from its metadata) and validation result."""

    label: str
    model: str
    precision: str
    result: ValResult

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        out: dict[str, Any] = {"label": self.label, "model": self.model, "precision": self.precision,
                               "task": r.task, "protocol": r.protocol}
        if r.box is not None:
            out.update(map50_95=round(r.map50_95, 6), map50=round(r.map50, 6))
        out.update({key: round(value, 6) for key, value in _json_figures(r)})
        out.update(
            images_per_s=None if r.images_per_s is None else round(r.images_per_s, 2),
            images=r.images, instances=r.instances, settings=r.settings,
        )
        return out


def compare_models(
    models: Sequence[str | os.PathLike[str]],
    dataset: YoloDataset | ClassifyDataset | str | os.PathLike[str],
    *,
    imgsz: int | tuple[int, int] | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    protocol: str = "coco",
    runtime: RuntimeConfig | None = None,
    on_model: Callable[[int, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Comparison]:
    """Validate each model on ``dataset`` with identical settings; one :class:`Comparison` per model.

    A dataset given as a path is read in the form each model's task needs
    (class folders for a classifier), so the models should share a task.
    """
    labels = _labels([Path(m) for m in models])
    rows = []
    for i, (model, label) in enumerate(zip(models, labels, strict=True)):
        if on_model is not None:
            on_model(i, label)
        result = validate(model, dataset, imgsz=imgsz, conf=conf, iou=iou, protocol=protocol, runtime=runtime,
                          progress=progress)
        rows.append(Comparison(label, str(model), _precision(result.model), result))
    return rows


def table_rows(rows: Sequence[Comparison]) -> list[list[str]]:
    """Header + one row per model; speed relative to the first model."""
    base = rows[0].result.images_per_s if rows else None
    names = [name for name, _ in figures(rows[0].result)] if rows else ["mAP50-95", "mAP50"]
    out = [["model", "precision", *names, "images/s", "speed vs first"]]
    for row in rows:
        r = row.result
        speed = f"{r.images_per_s:.1f}" if r.images_per_s else "-"
        rel = f"{r.images_per_s / base:.2f}x" if r.images_per_s and base else "-"
        out.append([row.label, row.precision, *(f"{v:.4f}" for _, v in figures(r)), speed, rel])
    return out


def figures(result: ValResult) -> list[tuple[str, float]]:
    """The two figures a comparison shows for the result's task (the first is the headline one)."""
    if result.task == "classify":
        return [("top-1", float(result.top1 or 0.0)), ("top-5", float(result.top5 or 0.0))]
    second = {"segment": ("mask", result.mask), "pose": ("pose", result.pose)}.get(result.task)
    if second is not None and second[1] is not None:
        return [(f"{second[0]} mAP50-95", second[1].map50_95), ("box mAP50-95", result.map50_95)]
    return [("mAP50-95", result.map50_95), ("mAP50", result.map50)]


def _json_figures(result: ValResult) -> list[tuple[str, float]]:
    if result.task == "classify":
        return [("top1", float(result.top1 or 0.0)), ("top5", float(result.top5 or 0.0))]
    name, kind = {"segment": ("mask", result.mask), "pose": ("pose", result.pose)}.get(result.task, ("", None))
    return [(f"{name}_map50_95", kind.map50_95)] if kind is not None else []


def plot_comparison(rows: Sequence[Comparison], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Save a PNG of the task's headline figure (y: mAP50-95, mask/keypoint mAP50-95 or top-1) against
    images/s (x), one labelled point per model."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError("matplotlib", "val", "Drawing the comparison chart") from exc
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        xs = [row.result.images_per_s or 0.0 for row in rows]
        middle = (min(xs) + max(xs)) / 2 if xs else 0.0
        for row, x in zip(rows, xs, strict=True):
            y = figures(row.result)[0][1]
            ax.scatter([x], [y], s=60)
            right = x > middle  # label towards the inside so it stays on the canvas
            ax.annotate(f"{row.label} ({row.precision})", (x, y), textcoords="offset points",
                        xytext=(-6 if right else 6, 6), ha="right" if right else "left", fontsize=8)
        mode = rows[0].result.settings.get("mode", "") if rows else ""
        ax.set_xlabel(f"images/s, end to end ({mode} mode: decode, letterbox, inference, NMS)")
        first = rows[0].result if rows else None
        ax.set_ylabel(f"{figures(first)[0][0]} ({first.protocol} AP)" if first is not None and first.task != "classify"
                      else "top-1 accuracy")
        ax.set_title(title or "accuracy vs speed")
        ax.grid(alpha=0.3)
        ax.margins(x=0.25, y=0.25)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out


def _labels(paths: list[Path]) -> list[str]:
    """Short distinct names: the folder (or file) name, with the parent added on a clash."""
    names = [p.name if p.name else str(p) for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.name}" for p in paths]
    return names


def _precision(model_path: str | None) -> str:
    """``precision`` from the export's metadata.yaml, else inferred from the graph's weights."""
    if not model_path:
        return "?"
    import yaml

    meta_path = Path(model_path).parent / "metadata.yaml"
    if meta_path.exists():
        try:
            meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            meta = {}
        if isinstance(meta, dict) and meta.get("precision"):
            return str(meta["precision"])
    return _precision_from_graph(Path(model_path))


def _precision_from_graph(xml: Path) -> str:
    if xml.suffix != ".xml":
        return "fp32"
    text = xml.read_text(errors="ignore", encoding="utf-8")
    if 'type="FakeQuantize"' in text:
        return "int8"
    if 'element_type="f16"' in text:
        return "fp16"
    return "fp32"
