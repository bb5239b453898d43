"""The one result type: detections of one image, validated on construction.

Boxes are ``xyxy`` float32 in original-image pixels. Converters (JSON, COCO)
and drawing live here so every sink and every runner speaks the same type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .io.draw import draw_classification, draw_task_data
from .ops.masks import Masks

__all__ = ["DATA_FORMATTERS", "Classification", "Detections", "Failure", "Timings"]


@dataclass(frozen=True)
class Timings:
    """Where the time of one image went, in milliseconds."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms

    def to_dict(self) -> dict[str, float]:
        return {
            "preprocess_ms": round(self.preprocess_ms, 3),
            "inference_ms": round(self.inference_ms, 3),
            "postprocess_ms": round(self.postprocess_ms, 3),
        }


@dataclass(frozen=True)
class Failure:
    """The record of an input that could not be processed.

    Multi-item runs yield one of these in place of :class:`Detections` so a
    bad item is reported, recorded and skipped rather than lost or fatal.
    """

    source: str
    error: str
    stream: int | None = None
    frame: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.stream is not None:
            out["stream"] = self.stream
        if self.frame is not None:
            out["frame"] = self.frame
        out["error"] = self.error
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


def _check(name: str, array: np.ndarray, shape: tuple[int | None, ...]) -> None:
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape, strict=True)):
        expected = "x".join("N" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must have shape ({expected}), got {array.shape}")


@dataclass
class Detections:
    """Detections of one image.

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes ``x1, y1, x2, y2`` in original-image pixels.
        confidence: ``(N,)`` float32 scores.
        class_id: ``(N,)`` int32 class ids.
        names: class id -> class name of the model.
        image_shape: ``(height, width)`` of the original image.
        source: where the image came from (path, ``<array ...>``, stream id).
        stream: for live/multi-stream runs, which stream the frame came from.
        frame: for video/stream runs, the frame index within its stream.
        timing: per-stage milliseconds, when measured.
        data: optional per-detection arrays by name, each with ``N`` rows
            (``"track_id"``, and per task ``"masks"``, ``"keypoints"``,
            ``"xywhr"``...). Indexing, :meth:`filter` and :meth:`to_dict`
            carry them; the JSONL writer formats each with its registered
            formatter (:data:`DATA_FORMATTERS`), so a new field is one entry there.

    Example:
        >>> d = Detections.empty(names={0: "person"}, image_shape=(480, 640))
        >>> len(d)
        0
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    names: Mapping[int, str] = field(default_factory=dict, repr=False)
    image_shape: tuple[int, int] = (0, 0)
    source: str | None = None
    stream: int | None = None
    frame: int | None = None
    timing: Timings | None = field(default=None, repr=False, compare=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if self.xyxy.size == 0:
            self.xyxy = self.xyxy.reshape(0, 4)
        self.confidence = np.asarray(self.confidence, dtype=np.float32)
        self.class_id = np.asarray(self.class_id, dtype=np.int32)
        _check("xyxy", self.xyxy, (None, 4))
        n = len(self.xyxy)
        _check("confidence", self.confidence, (n,))
        _check("class_id", self.class_id, (n,))
        self.image_shape = (int(self.image_shape[0]), int(self.image_shape[1]))
        for key, value in self.data.items():
            if len(value) != n:
                raise ValueError(f"data[{key!r}] must have {n} rows (one per detection), got {len(value)}")

    @classmethod
    def empty(cls, **kwargs: Any) -> Detections:
        """No detections (kwargs as for the constructor, minus the arrays)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), **kwargs)

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def class_names(self) -> list[str]:
        """The name of each detection's class (``str(id)`` for an unknown id)."""
        return [self.names.get(int(c), str(int(c))) for c in self.class_id]

    def filter(self, mask: np.ndarray) -> Detections:
        """The detections where boolean ``mask`` is true (other fields kept)."""
        mask = np.asarray(mask, dtype=bool)
        _check("mask", mask, (len(self),))
        return self[mask]

    def __getitem__(self, index: int | slice | np.ndarray | list[int]) -> Detections:
        """A :class:`Detections` of the selected rows (an int selects one row, still a ``Detections``).

        ``index``: an int, a slice, a boolean mask of length ``N`` or an array
        of row indices; per-detection ``data`` is selected with the rows.
        """
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        idx = np.asarray(index) if isinstance(index, list) else index
        return Detections(
            self.xyxy[idx], self.confidence[idx], self.class_id[idx], self.names,
            self.image_shape, self.source, self.stream, self.frame, self.timing,
            {k: _take(v, idx) for k, v in self.data.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSONL record: ``{"source", "width", "height", "detections": [...]}``.

        ``stream``/``frame`` are added for video and multi-stream runs.
        """
        out: dict[str, Any] = {"source": self.source, "width": self.image_shape[1], "height": self.image_shape[0]}
        if self.stream is not None:
            out["stream"] = self.stream
        if self.frame is not None:
            out["frame"] = self.frame
        boxes = np.round(self.xyxy.astype(np.float64), 2).tolist()
        confs = np.round(self.confidence.astype(np.float64), 5).tolist()
        detections = [
            {"box": b, "confidence": c, "class_id": int(k), "class_name": n}
            for b, c, k, n in zip(boxes, confs, self.class_id.tolist(), self.class_names, strict=True)
        ]
        for key, values in self.data.items():
            fmt = DATA_FORMATTERS.get(key)
            if fmt is None:
                continue  # a field without a formatter stays in Python (e.g. an internal array)
            for det, value in zip(detections, fmt(values, self), strict=True):
                det.update(value)
        out["detections"] = detections
        return out

    def to_json(self) -> str:
        """One line of JSON (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_coco(self, image_id: int | str, category_ids: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
        """COCO results entries: ``image_id``, ``category_id``, ``bbox`` (xywh), ``score``.

        ``category_ids`` maps class ids to COCO category ids (default: identity).
        Segmentation results add ``segmentation`` (compressed RLE) and pose
        results ``keypoints`` (flat ``x, y, v`` triples), as COCO's ``segm`` and
        ``keypoints`` evaluations read them.
        """
        xywh = self.xyxy.astype(np.float64).copy()
        xywh[:, 2:] -= xywh[:, :2]
        cats = [category_ids[int(c)] if category_ids else int(c) for c in self.class_id]
        entries = [
            {"image_id": image_id, "category_id": cat, "bbox": [round(v, 3) for v in box], "score": round(float(s), 5)}
            for box, cat, s in zip(xywh.tolist(), cats, self.confidence.tolist(), strict=True)
        ]
        if "masks" in self.data:
            for entry, rle in zip(entries, self.data["masks"].to_rle(), strict=True):
                entry["segmentation"] = rle
        if "keypoints" in self.data:
            for entry, kpts in zip(entries, np.asarray(self.data["keypoints"], np.float64), strict=True):
                entry["keypoints"] = [round(float(v), 3) for v in kpts.reshape(-1)]
        return entries

    def draw(self, image: np.ndarray, *, line_width: int | None = None) -> np.ndarray:
        """A copy of BGR ``image`` with boxes and ``name conf`` labels drawn on it.

        Tracked results (``data["track_id"]``) are labelled ``#id name conf`` and
        coloured by id, so one object keeps its colour from frame to frame.
        """
        canvas = image.copy()
        lw = line_width or max(round(sum(canvas.shape[:2]) / 2 * 0.003), 2)
        font_scale = lw / 3
        if self.data and draw_task_data(canvas, self, lw):  # masks, skeletons; oriented boxes draw their own labels
            return canvas
        ids = self.data.get("track_id")
        tags = [f"#{int(i)} " for i in ids] if ids is not None else [""] * len(self)
        rows = zip(self.xyxy, self.confidence, self.class_id, self.class_names, tags, strict=True)
        for (x1, y1, x2, y2), conf, cls, name, tag in rows:
            color = _color(int(tag[1:]) if tag else int(cls))
            p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
            cv2.rectangle(canvas, p1, p2, color, lw, cv2.LINE_AA)
            label = f"{tag}{name} {conf:.2f}"
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(lw - 1, 1))
            above = p1[1] - th - 3 >= 0
            q2 = (p1[0] + tw, p1[1] - th - 3 if above else p1[1] + th + 3)
            cv2.rectangle(canvas, p1, q2, color, -1, cv2.LINE_AA)
            text_org = (p1[0], p1[1] - 2 if above else p1[1] + th + 2)
            cv2.putText(canvas, label, text_org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                        max(lw - 1, 1), cv2.LINE_AA)
        return canvas


def _take(values: Any, idx: Any) -> Any:
    if isinstance(values, (np.ndarray, Masks)):
        return values[idx]
    rows = list(values)
    if isinstance(idx, slice):
        return rows[idx]
    sel = np.asarray(idx)
    if sel.dtype == bool:
        return [r for r, keep in zip(rows, sel, strict=True) if keep]
    return [rows[int(i)] for i in sel]


def _track_ids(values: Any, _: Detections) -> list[dict[str, Any]]:
    return [{"track_id": int(v)} for v in values]


#: How each per-detection ``data`` field is written in the JSONL record:
#: ``formatter(values, detections) -> one dict per detection``, merged into
#: that detection's object. A task that adds a field registers it here.
DATA_FORMATTERS: dict[str, Callable[[Any, Detections], list[dict[str, Any]]]] = {
    "track_id": _track_ids,
    "masks": lambda masks, _: [{"mask": rle} for rle in masks.to_rle()],
    "keypoints": lambda kpts, _: [{"keypoints": _round(k, (2, 2, 5))} for k in np.asarray(kpts, np.float64)],
    "xywhr": lambda xywhr, _: _obb_records(np.asarray(xywhr, np.float64)),
    "predicted": lambda values, _: [{"predicted": bool(v)} for v in values],  # tracker-only frames
}


_PALETTE = np.array(
    [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
     (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
     (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
     (200, 149, 255), (199, 55, 255)],
    dtype=np.int32,
)


def _color(class_id: int) -> tuple[int, int, int]:
    b, g, r = _PALETTE[class_id % len(_PALETTE)]
    return int(b), int(g), int(r)


def _round(points: np.ndarray, digits: tuple[int, ...]) -> list[list[float]]:
    """Rows of a ``(K, D)`` array as lists, column ``j`` rounded to ``digits[j]`` places."""
    return [[round(float(v), digits[j]) for j, v in enumerate(row)] for row in points]


def _obb_records(xywhr: np.ndarray) -> list[dict[str, Any]]:
    from .ops.boxes import xywhr_to_corners

    corners = xywhr_to_corners(xywhr)
    return [
        {"obb": _round(r[None], (2, 2, 2, 2, 6))[0], "corners": _round(c, (2, 2))}
        for r, c in zip(xywhr, corners.astype(np.float64), strict=True)
    ]


@dataclass
class Classification:
    """Class probabilities of one image (a classification model's result).

    Attributes:
        probs: ``(C,)`` float32 probabilities, one per class.
        names: class id -> class name.
        image_shape: ``(height, width)`` of the original image.
        source, stream, frame, timing: as for :class:`Detections`.

    Example:
        >>> c = Classification(np.array([0.1, 0.7, 0.2]), {0: "cat", 1: "dog", 2: "fox"}, (480, 640))
        >>> c.top1, c.top1_name, c.top5
        (1, 'dog', [1, 2, 0])
    """

    probs: np.ndarray
    names: Mapping[int, str] = field(default_factory=dict, repr=False)
    image_shape: tuple[int, int] = (0, 0)
    source: str | None = None
    stream: int | None = None
    frame: int | None = None
    timing: Timings | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=np.float32).reshape(-1)
        self.image_shape = (int(self.image_shape[0]), int(self.image_shape[1]))

    @property
    def top5(self) -> list[int]:
        """The five most probable class ids, most probable first."""
        return [int(i) for i in np.argsort(-self.probs, kind="stable")[:5]]

    @property
    def top5_confidence(self) -> list[float]:
        return [float(self.probs[i]) for i in self.top5]

    @property
    def top1(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def top1_name(self) -> str:
        return self.names.get(self.top1, str(self.top1))

    @property
    def top1_confidence(self) -> float:
        return float(self.probs[self.top1])

    def to_dict(self) -> dict[str, Any]:
        """The JSONL record: ``{"source", "width", "height", "top5": [{"class_id", "class_name", "confidence"}]}``."""
        out: dict[str, Any] = {"source": self.source, "width": self.image_shape[1], "height": self.image_shape[0]}
        if self.stream is not None:
            out["stream"] = self.stream
        if self.frame is not None:
            out["frame"] = self.frame
        out["top5"] = [
            {"class_id": i, "class_name": self.names.get(i, str(i)), "confidence": round(c, 5)}
            for i, c in zip(self.top5, self.top5_confidence, strict=True)
        ]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def draw(self, image: np.ndarray, *, line_width: int | None = None) -> np.ndarray:
        """A copy of BGR ``image`` with the top-5 classes written in its top-left corner."""
        canvas = image.copy()
        draw_classification(canvas, [(self.names.get(i, str(i)), c)
                                     for i, c in zip(self.top5, self.top5_confidence, strict=True)], line_width)
        return canvas
