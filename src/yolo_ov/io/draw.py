"""Drawing results on images: boxes and labels, masks, skeletons, rotated boxes, top-5.

:func:`draw` is the one entry point (the image sinks, the server and the
tracker's video call it); results stay data (:mod:`yolo_ov.results` knows
nothing of drawing). The colours are Ultralytics' palette, defined once here
(:func:`palette_color`), so a class, a track id or a keypoint has the same
colour wherever it is drawn. Pure OpenCV/NumPy.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..ops.rotated import xywhr_to_corners
from ..results import Classification, Detections, Result

__all__ = ["COCO_SKELETON", "draw", "draw_classification", "draw_task_data", "palette_color"]

#: COCO's 17-keypoint skeleton (1-based pairs, as Ultralytics draws it).
COCO_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)

_PALETTE = np.array(
    [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
     (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
     (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
     (200, 149, 255), (199, 55, 255)],
    dtype=np.int32,
)
_KPT_MIN_CONF = 0.5  # keypoints below this are not drawn (Ultralytics' default)


def palette_color(index: int) -> tuple[int, int, int]:
    """The BGR colour of a class id, track id or keypoint index (the palette repeats every 20)."""
    b, g, r = _PALETTE[index % len(_PALETTE)]
    return int(b), int(g), int(r)


def draw(result: Result, image: np.ndarray, *, line_width: int | None = None) -> np.ndarray:
    """A copy of BGR ``image`` with ``result`` drawn on it.

    Detections: boxes and ``name conf`` labels, plus what the task adds
    (translucent masks, skeletons, oriented boxes with their own labels).
    Tracked results (``data["track_id"]``) are labelled ``#id name conf`` and
    coloured by id, so one object keeps its colour from frame to frame.
    Classification: the top-5 classes written in the top-left corner.
    """
    canvas = image.copy()
    if isinstance(result, Classification):
        draw_classification(canvas, [(result.names.get(i, str(i)), c)
                                     for i, c in zip(result.top5, result.top5_confidence, strict=True)], line_width)
        return canvas
    lw = line_width or max(round(sum(canvas.shape[:2]) / 2 * 0.003), 2)
    font_scale = lw / 3
    if result.data and draw_task_data(canvas, result, lw):  # masks, skeletons; oriented boxes draw their own labels
        return canvas
    ids = result.data.get("track_id")
    tags = [f"#{int(i)} " for i in ids] if ids is not None else [""] * len(result)
    rows = zip(result.xyxy, result.confidence, result.class_id, result.class_names, tags, strict=True)
    for (x1, y1, x2, y2), conf, cls, name, tag in rows:
        color = palette_color(int(tag[1:]) if tag else int(cls))
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


def draw_task_data(canvas: np.ndarray, det: Detections, line_width: int) -> bool:
    """Draw ``det.data``'s masks (translucent), keypoints and rotated boxes onto ``canvas``.

    Returns ``True`` when it also drew the boxes and labels (oriented boxes
    replace the axis-aligned rectangle), so the caller skips its own.
    """
    masks = det.data.get("masks")
    if masks is not None and len(masks):
        _draw_masks(canvas, masks, det.class_id)
    kpts = det.data.get("keypoints")
    if kpts is not None and len(kpts):
        _draw_keypoints(canvas, np.asarray(kpts), line_width)
    xywhr = det.data.get("xywhr")
    if xywhr is not None:
        _draw_rotated(canvas, det, np.asarray(xywhr), line_width)
        return True
    return False


def _draw_masks(canvas: np.ndarray, masks: Any, class_id: np.ndarray, alpha: float = 0.5) -> None:
    for (x, y), crop, cls in zip(masks.origins, masks.crops, class_id, strict=True):
        if not crop.any():
            continue
        region = canvas[y : y + crop.shape[0], x : x + crop.shape[1]]
        color = np.array(palette_color(int(cls)), np.float32)
        pixels = region[crop].astype(np.float32)
        region[crop] = (pixels * (1 - alpha) + color * alpha).astype(np.uint8)


def _draw_keypoints(canvas: np.ndarray, kpts: np.ndarray, lw: int) -> None:
    radius = max(lw, 2)
    visible = kpts[..., 2] >= _KPT_MIN_CONF if kpts.shape[-1] == 3 else np.ones(kpts.shape[:2], bool)
    coco = kpts.shape[1] == 17
    for person, seen in zip(kpts, visible, strict=True):
        if coco:
            for a, b in COCO_SKELETON:
                if seen[a - 1] and seen[b - 1]:
                    p, q = person[a - 1, :2], person[b - 1, :2]
                    cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), palette_color(a + 7),
                             max(lw // 2, 1), cv2.LINE_AA)
        for k, (point, ok) in enumerate(zip(person, seen, strict=True)):
            if ok:
                cv2.circle(canvas, (int(point[0]), int(point[1])), radius, palette_color(k), -1, cv2.LINE_AA)


def _draw_rotated(canvas: np.ndarray, det: Detections, xywhr: np.ndarray, lw: int) -> None:
    corners = xywhr_to_corners(xywhr)
    font_scale = lw / 3
    for quad, conf, cls, name in zip(corners, det.confidence, det.class_id, det.class_names, strict=True):
        color = palette_color(int(cls))
        pts = np.round(quad).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], True, color, lw, cv2.LINE_AA)
        top = quad[np.argmin(quad[:, 1])]
        _label(canvas, (int(top[0]), int(top[1])), f"{name} {conf:.2f}", color, font_scale, lw)


def _label(canvas: np.ndarray, origin: tuple[int, int], text: str, color: tuple[int, int, int],
           font_scale: float, lw: int) -> None:
    thickness = max(lw - 1, 1)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    x, y = origin
    above = y - th - 3 >= 0
    q2 = (x + tw, y - th - 3 if above else y + th + 3)
    cv2.rectangle(canvas, (x, y), q2, color, -1, cv2.LINE_AA)
    cv2.putText(canvas, text, (x, y - 2 if above else y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                (255, 255, 255), thickness, cv2.LINE_AA)


def draw_classification(canvas: np.ndarray, top: list[tuple[str, float]], line_width: int | None = None) -> None:
    """Write ``name confidence`` lines (the top-5) in the top-left corner of ``canvas``."""
    lw = line_width or max(round(sum(canvas.shape[:2]) / 2 * 0.003), 2)
    font_scale = lw / 3
    thickness = max(lw - 1, 1)
    y = 0
    for name, conf in top:
        text = f"{name} {conf:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        cv2.rectangle(canvas, (0, y), (tw + 6, y + th + 8), (0, 0, 0), -1)
        cv2.putText(canvas, text, (3, y + th + 3), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
        y += th + 8
