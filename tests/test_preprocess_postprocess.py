"""Pure pre/post-processing: letterbox geometry, decode, NMS, box scaling (no OpenVINO)."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_ov.config import DetectConfig
from yolo_ov.imaging.letterbox import PAD_VALUE, letterbox, letterbox_geometry, min_rect_shape
from yolo_ov.ops.boxes import decode_end2end, decode_raw, nms, postprocess, scale_boxes
from yolo_ov.runtime.model import HeadType


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


def test_decode_raw_filters_nms_and_sorts():
    raw = _raw(
        [[50, 50, 20, 20], [51, 50, 20, 20], [200, 200, 40, 40], [300, 300, 10, 10]],
        [[0.9, 0.0], [0.8, 0.0], [0.0, 0.6], [0.1, 0.2]],
    )
    xyxy, conf, cls = decode_raw(raw, DetectConfig())
    assert conf.tolist() == pytest.approx([0.9, 0.6])
    assert cls.tolist() == [0, 1]
    np.testing.assert_allclose(xyxy[0], [40, 40, 60, 60])


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


def test_decode_raw_nothing_above_threshold():
    raw = _raw([[10, 10, 5, 5]], [[0.1, 0.2]])
    xyxy, conf, cls = decode_raw(raw, DetectConfig())
    assert xyxy.shape == (0, 4) and conf.shape == (0,) and cls.shape == (0,)


def test_decode_end2end_threshold_and_classes():
    out = np.array([[0, 0, 10, 10, 0.9, 3], [5, 5, 20, 20, 0.2, 1], [1, 1, 4, 4, 0.5, 1]], np.float32)
    _, conf, cls = decode_end2end(out, DetectConfig())
    assert conf.tolist() == pytest.approx([0.9, 0.5])
    assert cls.tolist() == [3, 1]
    assert decode_end2end(out, DetectConfig(classes=(1,)))[2].tolist() == [1]


def test_nms_empty():
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), 0.5).shape == (0,)


def test_scale_boxes_inverts_letterbox_and_clips():
    geo = letterbox_geometry((480, 640), (640, 640))
    boxes = np.array([[0, 80, 640, 560], [-10, 70, 700, 600]], np.float32)
    out = scale_boxes(boxes, geo)
    np.testing.assert_allclose(out[0], [0, 0, 640, 480])
    np.testing.assert_allclose(out[1], [0, 0, 640, 480])


def test_postprocess_end_to_end_on_letterboxed_coordinates():
    geo = letterbox_geometry((720, 1280), (640, 640))  # scale 0.5, pad_top 140
    raw = _raw([[100, 240, 50, 100]], [[0.0, 0.95]])
    xyxy, _, cls = postprocess(raw, geo, HeadType.RAW, DetectConfig())
    np.testing.assert_allclose(xyxy[0], [150, 100, 250, 300])
    assert cls.tolist() == [1]
