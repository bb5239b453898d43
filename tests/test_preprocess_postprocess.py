"""Pure pre/post-processing: letterbox geometry, the heads' one decoder, NMS, box scaling (no OpenVINO)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yolo_ov.config import DetectConfig
from yolo_ov.heads import select_head
from yolo_ov.heads._common import candidates, decode_end2end_rows, decode_raw_rows, dim
from yolo_ov.imaging.letterbox import PAD_VALUE, letterbox, letterbox_geometry, min_rect_shape
from yolo_ov.ops.boxes import clip_xyxy, nms, scale_points, scale_xywhr, scale_xyxy, xywh_to_xyxy, xyxy_to_xywh
from yolo_ov.runtime.model import HeadType, ModelInfo, TensorSpec


@pytest.mark.parametrize(
    ("original", "target", "resized", "pad"),
    [
        ((480, 640), (640, 640), (480, 640), (0, 80)),
        ((640, 480), (640, 640), (640, 480), (80, 0)),
        ((720, 1280), (640, 640), (360, 640), (0, 140)),
        ((1, 1), (640, 640), (640, 640), (0, 0)),
        ((10, 4000), (640, 640), (2, 640), (0, 319)),
        ((427, 640), (640, 640), (427, 640), (0, 106)),
    ],
)
def test_letterbox_geometry(original, target, resized, pad):
    geo = letterbox_geometry(original, target)
    assert geo.resized == resized
    assert (geo.pad_left, geo.pad_top) == pad


def test_letterbox_pads_with_114_and_keeps_content():
    img = np.full((100, 200, 3), 7, np.uint8)
    out, geo = letterbox(img, (64, 64))
    assert out.shape == (64, 64, 3)
    assert out.dtype == np.uint8
    assert geo.scale == pytest.approx(64 / 200)
    assert (out[: geo.pad_top] == PAD_VALUE).all()
    assert (out[geo.pad_top : geo.pad_top + geo.resized[0]] == 7).all()


def test_min_rect_shape_is_stride_aligned():
    assert min_rect_shape((720, 1280), (640, 640)) == (384, 640)
    assert min_rect_shape((480, 640), (640, 640)) == (480, 640)
    assert min_rect_shape((640, 640), (640, 640)) == (640, 640)


def _raw(boxes_xywh, scores):
    """Build a (4+nc, N) raw head output from per-anchor boxes and class scores."""
    return np.concatenate([np.asarray(boxes_xywh, np.float32).T, np.asarray(scores, np.float32).T], axis=0)


def decode_raw(raw: np.ndarray, cfg: DetectConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kept = decode_raw_rows(raw, raw.shape[0] - 4, cfg)
    return kept.boxes, kept.confidence, kept.class_id


def decode_end2end(out: np.ndarray, cfg: DetectConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kept = decode_end2end_rows(out, cfg)
    return kept.boxes, kept.confidence, kept.class_id


def test_decode_raw_filters_nms_and_sorts():
    raw = _raw(
        [[50, 50, 20, 20], [51, 50, 20, 20], [200, 200, 40, 40], [300, 300, 10, 10]],
        [[0.9, 0.0], [0.8, 0.0], [0.0, 0.6], [0.1, 0.2]],
    )
    xyxy, conf, cls = decode_raw(raw, DetectConfig())
    assert conf.tolist() == pytest.approx([0.9, 0.6])
    assert cls.tolist() == [0, 1]
    np.testing.assert_allclose(xyxy[0], [40, 40, 60, 60])
    assert xyxy.dtype == np.float32 and conf.dtype == np.float32 and cls.dtype == np.int32


def test_nms_is_class_aware_unless_agnostic():
    raw = _raw([[50, 50, 20, 20], [51, 50, 20, 20]], [[0.9, 0.0], [0.0, 0.8]])
    assert len(decode_raw(raw, DetectConfig())[0]) == 2
    assert len(decode_raw(raw, DetectConfig(agnostic=True))[0]) == 1


def test_decode_raw_classes_max_det_and_multi_label():
    raw = _raw([[10 * i + 5, 5, 4, 4] for i in range(10)], [[0.5 + 0.01 * i, 0.4 + 0.03 * i] for i in range(10)])
    assert len(decode_raw(raw, DetectConfig(max_det=3))[0]) == 3
    _, _, cls = decode_raw(raw, DetectConfig(classes=(1,)))
    # as in Ultralytics, the class filter applies to each anchor's best class
    assert cls.tolist() == [1, 1, 1, 1]
    assert len(decode_raw(raw, DetectConfig(multi_label=True))[0]) == 20


def test_multi_label_with_one_class_is_the_best_class():
    """Ultralytics' ``multi_label &= nc > 1``: one class gives the same rows either way."""
    raw = _raw([[10 * i + 5, 5, 4, 4] for i in range(6)], [[0.2 + 0.1 * i] for i in range(6)])
    a, b = decode_raw(raw, DetectConfig()), decode_raw(raw, DetectConfig(multi_label=True))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_decode_raw_nothing_above_threshold():
    raw = _raw([[10, 10, 5, 5]], [[0.1, 0.2]])
    xyxy, conf, cls = decode_raw(raw, DetectConfig())
    assert xyxy.shape == (0, 4) and conf.shape == (0,) and cls.shape == (0,)


def test_candidate_cap_keeps_the_highest_scores_ties_in_anchor_order():
    """Over ``max_candidates``: the highest scores (a stable sort, so equal scores keep anchor order)."""
    scores = np.array([[0.5, 0.9, 0.7, 0.9, 0.6, 0.7]], np.float32)
    anchors, conf, cls = candidates(scores, DetectConfig(max_candidates=3))
    assert anchors.tolist() == [1, 3, 2]
    assert conf.tolist() == pytest.approx([0.9, 0.9, 0.7])
    assert cls.tolist() == [0, 0, 0]
    anchors, _, _ = candidates(scores, DetectConfig(max_candidates=10))
    assert anchors.tolist() == [0, 1, 2, 3, 4, 5]  # under the cap: anchor order, nothing dropped


def test_decode_end2end_threshold_and_classes():
    out = np.array([[0, 0, 10, 10, 0.9, 3], [5, 5, 20, 20, 0.2, 1], [1, 1, 4, 4, 0.5, 1]], np.float32)
    _, conf, cls = decode_end2end(out, DetectConfig())
    assert conf.tolist() == pytest.approx([0.9, 0.5])
    assert cls.tolist() == [3, 1]
    assert decode_end2end(out, DetectConfig(classes=(1,)))[2].tolist() == [1]


def test_decode_end2end_sorts_by_score_and_caps_at_max_det():
    out = np.array([[0, 0, 1, 1, 0.4, 0], [0, 0, 2, 2, 0.8, 1], [0, 0, 3, 3, 0.6, 2]], np.float32)
    xyxy, conf, cls = decode_end2end(out, DetectConfig(max_det=2))
    assert conf.tolist() == pytest.approx([0.8, 0.6]) and cls.tolist() == [1, 2]
    np.testing.assert_array_equal(xyxy[:, 2], [2, 3])


def test_nms_empty():
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), 0.5).shape == (0,)


def test_scale_xyxy_inverts_letterbox_and_clips():
    geo = letterbox_geometry((480, 640), (640, 640))
    boxes = np.array([[0, 80, 640, 560], [-10, 70, 700, 600]], np.float32)
    out = scale_xyxy(boxes, geo)
    np.testing.assert_allclose(out[0], [0, 0, 640, 480])
    np.testing.assert_allclose(out[1], [0, 0, 640, 480])


@pytest.mark.parametrize(("original", "target"), [((480, 640), (640, 640)), ((1080, 810), (640, 640)),
                                                 ((333, 1001), (640, 640)), ((719, 1283), (384, 640)),
                                                 ((37, 53), (640, 480))])
def test_scaling_is_ultralytics_scale_boxes_and_scale_coords(original, target):
    """The per-axis gains (each letterboxed side rounded) as Ultralytics' own ``scale_boxes``/``scale_coords``."""
    pytest.importorskip("ultralytics")
    import torch
    from ultralytics.utils import ops

    rng = np.random.default_rng(sum(original))
    th, tw = target
    xyxy = np.sort(rng.uniform(-20, max(target) + 20, (40, 2, 2)), axis=1).reshape(40, 4).astype(np.float32)
    xyxy = xyxy[:, [0, 2, 1, 3]]
    geo = letterbox_geometry(original, target)
    theirs = ops.scale_boxes(target, torch.from_numpy(xyxy.copy()), original).numpy()
    np.testing.assert_allclose(scale_xyxy(xyxy, geo), theirs, rtol=1e-6, atol=1e-4)
    points = rng.uniform(0, max(target), (40, 17, 3)).astype(np.float32)
    theirs = ops.scale_coords(target, torch.from_numpy(points.copy()), original).numpy()
    ours = points.copy()
    ours[..., :2] = scale_points(points[..., :2], geo)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-4)
    rboxes = np.column_stack([rng.uniform(0, tw, 10), rng.uniform(0, th, 10), rng.uniform(5, 90, (10, 2)),
                              rng.uniform(-1, 2, 10)]).astype(np.float32)
    theirs = ops.scale_boxes(target, torch.from_numpy(rboxes[:, :4].copy()), original, xywh=True).numpy()
    np.testing.assert_allclose(scale_xywhr(rboxes, geo)[:, :4], theirs, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(scale_xywhr(rboxes, geo)[:, 4], rboxes[:, 4])  # the angle is not scaled


def test_box_conversions_round_trip_and_clip():
    xywh = np.array([[50, 40, 20, 10], [0, 0, 4, 4]], np.float32)
    xyxy = xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy, [[40, 35, 60, 45], [-2, -2, 2, 2]])
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), xywh)
    np.testing.assert_array_equal(clip_xyxy(xyxy, (40, 50)), [[40, 35, 50, 40], [0, 0, 2, 2]])


def _detect_info(end2end: bool, imgsz: tuple[int, int] = (640, 640)) -> ModelInfo:
    shape = "[1,300,6]" if end2end else "[1,6,8400]"
    return ModelInfo(path=Path("m.xml"), names={0: "a", 1: "b"}, names_source="test", imgsz=imgsz, stride=32,
                     task="detect", head=HeadType.END2END if end2end else HeadType.RAW,
                     inputs=(TensorSpec("images", "[1,3,640,640]"),), outputs=(TensorSpec("output0", shape),), batch=1)


def test_detect_head_decodes_letterboxed_coordinates():
    geo = letterbox_geometry((720, 1280), (640, 640))  # scale 0.5, pad_top 140
    raw = _raw([[100, 240, 50, 100]], [[0.0, 0.95]])
    det = select_head(_detect_info(end2end=False)).decode([raw], geo, DetectConfig())
    np.testing.assert_allclose(det.xyxy[0], [150, 100, 250, 300])
    assert det.class_id.tolist() == [1] and det.image_shape == (720, 1280)


@pytest.mark.parametrize("end2end", [False, True])
def test_detect_head_is_the_shared_decoder_then_the_shared_scaling(end2end):
    """One decoder: the detection heads give exactly what decode_*_rows + scale_xyxy give (as the other tasks)."""
    rng = np.random.default_rng(7)
    geo = letterbox_geometry((427, 640), (640, 640))
    if end2end:
        out = np.column_stack([rng.uniform(0, 600, (300, 2)), rng.uniform(0, 600, (300, 2)),
                               rng.uniform(0, 1, 300), rng.integers(0, 2, 300)]).astype(np.float32)
        out[:, 2:4] = out[:, :2] + np.abs(out[:, 2:4] - out[:, :2]) / 4
        kept = decode_end2end_rows(out, DetectConfig())
    else:
        out = np.concatenate([rng.uniform(0, 640, (2, 8400)), rng.uniform(5, 80, (2, 8400)),
                              rng.uniform(0, 0.5, (2, 8400)) ** 2 * 4]).astype(np.float32)
        kept = decode_raw_rows(out, 2, DetectConfig())
    det = select_head(_detect_info(end2end)).decode([out], geo, DetectConfig())
    assert len(det) == len(kept) > 5
    np.testing.assert_array_equal(det.xyxy, scale_xyxy(kept.boxes, geo))
    np.testing.assert_array_equal(det.confidence, kept.confidence)
    np.testing.assert_array_equal(det.class_id, kept.class_id)


@pytest.mark.parametrize(("shape", "axis", "expected"), [("[1,84,8400]", 1, 84), ("[1,84,8400]", 2, 8400),
                                                         ("[?,84,?]", 2, None), ("[1,84]", 2, None)])
def test_dim_reads_one_dimension_of_a_shape_text(shape, axis, expected):
    assert dim(shape, axis) == expected
