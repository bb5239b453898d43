"""The result types: detections (or class probabilities) of one image, validated on construction.

Data only: boxes are ``xyxy`` float32 in original-image pixels; the
converters (JSON, COCO) live here so every sink and every runner speaks the
same type, and drawing lives in :mod:`yolo_ov.io.draw`. Results of parts of
an image (tiles, crops) come back to the whole image with
:meth:`Detections.offset` and :meth:`Detections.merge`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from .ops.masks import Masks
from .ops.rotated import xywhr_to_corners

__all__ = ["DATA_FORMATTERS", "DATA_OFFSETS", "Classification", "Detections", "Failure", "Result", "Timings"]


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
        slices: for a sliced run, how many tiles the image was cut into (the
            full-image pass not counted, as SAHI counts them); ``None`` otherwise.
            Written as ``"slices"`` in the JSONL record.

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
    slices: int | None = None

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
            {k: _take(v, idx) for k, v in self.data.items()}, self.slices,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSONL record: ``{"source", "width", "height", "detections": [...]}``.

        ``stream``/``frame`` are added for video and multi-stream runs,
        ``slices`` (the number of tiles) for sliced runs.
        """
        out: dict[str, Any] = {"source": self.source, "width": self.image_shape[1], "height": self.image_shape[0]}
        if self.stream is not None:
            out["stream"] = self.stream
        if self.frame is not None:
            out["frame"] = self.frame
        if self.slices is not None:
            out["slices"] = self.slices
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

    @classmethod
    def merge(cls, parts: Sequence[Detections], *, names: Mapping[int, str] | None = None,
              image_shape: tuple[int, int] | None = None) -> Detections:
        """One result holding every detection of ``parts``, in order (every field concatenated).

        ``parts`` are results of the same image (tiles already moved into it
        with :meth:`offset`): their ``names`` and ``image_shape`` must agree,
        and so must the per-detection ``data`` fields of the non-empty parts.
        ``source``, ``stream`` and ``frame`` are the first part's; ``timing``
        is the sum of the parts' (the work done for the whole image). No NMS
        across parts: that is the caller's choice (sliced inference decides
        how overlapping tiles' detections are combined).

        ``names`` and ``image_shape`` describe the result when ``parts`` is
        empty (and, when given, must agree with the parts).

        Raises:
            TypeError: a part is not a :class:`Detections` (a :class:`Classification` cannot be merged).
            ValueError: the parts disagree on names, image shape or data fields.
        """
        for p in parts:
            if not isinstance(p, Detections):
                raise TypeError(f"Detections.merge: cannot merge a {type(p).__name__}"
                                + (" (class probabilities have no detections to concatenate)"
                                   if isinstance(p, Classification) else ""))
        if not parts:
            return cls.empty(names=dict(names or {}), image_shape=image_shape or (0, 0))
        first = parts[0]
        ref_names = dict(first.names) if names is None else dict(names)
        ref_shape = first.image_shape if image_shape is None else (int(image_shape[0]), int(image_shape[1]))
        for i, p in enumerate(parts):
            if dict(p.names) != ref_names:
                raise ValueError(f"Detections.merge: part {i} has other class names than the first")
            if p.image_shape != ref_shape:
                raise ValueError(f"Detections.merge: part {i} is of an image of shape {p.image_shape}, "
                                 f"not {ref_shape} (move tile results into the full image with offset() first)")
        filled = [p for p in parts if len(p)]
        timing = _sum_timings([p.timing for p in parts])
        meta = {"names": ref_names, "image_shape": ref_shape, "source": first.source, "stream": first.stream,
                "frame": first.frame, "timing": timing}
        if not filled:  # every part empty: the first one's (empty) fields, keeping the data all parts have
            common = set.intersection(*(set(p.data) for p in parts))
            return cls(first.xyxy, first.confidence, first.class_id,
                       data={k: v for k, v in first.data.items() if k in common}, **meta)
        keys = list(filled[0].data)
        for p in filled[1:]:
            if set(p.data) != set(keys):
                raise ValueError(f"Detections.merge: the parts carry different data fields "
                                 f"({sorted(keys)} and {sorted(p.data)})")
        return cls(
            np.concatenate([p.xyxy for p in filled]),
            np.concatenate([p.confidence for p in filled]),
            np.concatenate([p.class_id for p in filled]),
            data={k: _concat(k, [p.data[k] for p in filled]) for k in keys},
            **meta,
        )

    def offset(self, dx: float, dy: float, full_shape: tuple[int, int]) -> Detections:
        """This result of a crop (a tile) whose top-left corner is at ``(dx, dy)``, in the full image.

        Boxes, keypoints (``x, y``; visibility untouched), rotated boxes'
        centres and masks' placements move by ``(dx, dy)``; masks keep their
        pixels (no copy) in an image of ``full_shape``; ``image_shape``
        becomes ``full_shape`` ``(h, w)``. Each ``data`` field moves as
        :data:`DATA_OFFSETS` says; a field it does not know is an error
        rather than a silently misplaced array. Nothing is clipped: a
        translation keeps every value exact.
        """
        full = (int(full_shape[0]), int(full_shape[1]))
        data = {}
        for key, values in self.data.items():
            if key not in DATA_OFFSETS:
                raise ValueError(f"Detections.offset: no rule to move data[{key!r}]; register one in "
                                 "yolo_ov.results.DATA_OFFSETS (None when it has no position)")
            move = DATA_OFFSETS[key]
            data[key] = values if move is None else move(values, dx, dy, full)
        shift = np.array([dx, dy, dx, dy], np.float32)
        return Detections(self.xyxy + shift, self.confidence.copy(), self.class_id.copy(), self.names, full,
                          self.source, self.stream, self.frame, self.timing, data)


def _sum_timings(timings: Sequence[Timings | None]) -> Timings | None:
    known = [t for t in timings if t is not None]
    if not known:
        return None
    return Timings(sum(t.preprocess_ms for t in known), sum(t.inference_ms for t in known),
                   sum(t.postprocess_ms for t in known))


def _concat(key: str, values: list[Any]) -> Any:
    """Rows of one ``data`` field from several parts, one after the other, in the parts' type."""
    if all(isinstance(v, Masks) for v in values):
        return Masks.concat(values)
    if all(isinstance(v, np.ndarray) for v in values):
        shapes = {v.shape[1:] for v in values}
        if len(shapes) != 1:
            raise ValueError(f"Detections.merge: data[{key!r}] has rows of different shapes {sorted(shapes)}")
        return np.concatenate(values, axis=0)
    if any(isinstance(v, (np.ndarray, Masks)) for v in values):
        raise ValueError(f"Detections.merge: data[{key!r}] is of different types in the parts")
    return [row for v in values for row in v]


def _shift_xy(values: Any, dx: float, dy: float, _: tuple[int, int]) -> np.ndarray:
    """Points (``..., >= 2``: x, y first, any further column such as visibility untouched) moved."""
    out = np.array(values, copy=True)
    out[..., 0] += dx
    out[..., 1] += dy
    return out


def _shift_xyxy(values: Any, dx: float, dy: float, _: tuple[int, int]) -> np.ndarray:
    out = np.array(values, copy=True)
    out[:, [0, 2]] += dx
    out[:, [1, 3]] += dy
    return out


def _shift_masks(masks: Masks, dx: float, dy: float, full: tuple[int, int]) -> Masks:
    return masks.offset(dx, dy, full)


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

#: How each per-detection ``data`` field moves when a crop's result is placed in the full image
#: (:meth:`Detections.offset`): ``move(values, dx, dy, full_shape) -> values``, or ``None`` for a
#: field without a position. A task that adds a positioned field registers it here.
DATA_OFFSETS: dict[str, Callable[[Any, float, float, tuple[int, int]], Any] | None] = {
    "track_id": None,
    "predicted": None,
    "masks": _shift_masks,
    "keypoints": _shift_xy,  # (N, K, 2 or 3): x, y moved, visibility kept
    "xywhr": _shift_xy,  # rotated boxes: the centre moves, size and angle stay
    "corners": _shift_xy,  # (N, 4, 2) rotated-box corners
    "val_xyxy": _shift_xyxy,  # validation's unclipped boxes
    "val_keypoints": _shift_xy,
}


def _round(points: np.ndarray, digits: tuple[int, ...]) -> list[list[float]]:
    """Rows of a ``(K, D)`` array as lists, column ``j`` rounded to ``digits[j]`` places."""
    return [[round(float(v), digits[j]) for j, v in enumerate(row)] for row in points]


def _obb_records(xywhr: np.ndarray) -> list[dict[str, Any]]:
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

    @classmethod
    def merge(cls, parts: Sequence[Any], **_: Any) -> Classification:
        """Not defined: class probabilities of several crops are not one image's result."""
        raise TypeError("Classification results cannot be merged: they are class probabilities of one whole "
                        "image, with no detections to concatenate (tiles and crops apply to Detections)")

    def offset(self, dx: float, dy: float, full_shape: tuple[int, int]) -> Classification:
        """Not defined: class probabilities have no position to move."""
        raise TypeError("Classification results cannot be offset: class probabilities have no position in the "
                        "image (tiles and crops apply to Detections)")


#: What a runner yields for an image that was processed: detections (every
#: detection-like task) or class probabilities (classification). Multi-item
#: runs yield a :class:`Failure` in place of an image that could not be.
Result: TypeAlias = Detections | Classification
