"""The sequential sliced-prediction reference (``yolo_ov.pipeline.slicing``) on fakes: no model, fast tier.

A "blob detector" stands in for the network: it reports each white rectangle it
sees in its input as one detection with its exact box and mask, so what the
slicing adds (tiles, shifts, the full pass, the merge) is all that is tested.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.fakes import fake_detector, uniform_image
from yolo_ov import ConfigError, Detections, SliceConfig
from yolo_ov.ops.masks import Masks
from yolo_ov.pipeline.slicing import merge_parts, plan_tiles, predict_sliced
from yolo_ov.results import Classification

NAMES = {0: "blob", 1: "big"}


class BlobDetector:
    """Each connected bright region -> one detection (box, mask; score by size; class 1 for grey, 0 for white)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, bool]] = []

    def __call__(self, image: np.ndarray) -> Detections:
        self.calls.append((image.shape[0], image.shape[1], image.flags["C_CONTIGUOUS"]))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(image[..., 0], connectivity=4)
        boxes, scores, classes, origins, crops = [], [], [], [], []
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            boxes.append([x, y, x + w, y + h])
            scores.append(min(0.99, 0.3 + area / 5000))
            classes.append(0 if image[y:y + h, x:x + w][labels[y:y + h, x:x + w] == i][0, 0] == 255 else 1)
            origins.append([x, y])
            crops.append(labels[y:y + h, x:x + w] == i)
        hw = (image.shape[0], image.shape[1])
        if not boxes:
            return Detections.empty(names=NAMES, image_shape=hw, data={"masks": Masks.empty(hw)})
        return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes), NAMES, hw,
                          data={"masks": Masks(hw, np.array(origins), crops)})


def scene(hw: tuple[int, int], rects: list[tuple[int, int, int, int]], value: int = 255) -> np.ndarray:
    image = np.zeros((*hw, 3), np.uint8)
    for x0, y0, x1, y1 in rects:
        image[y0:y1, x0:x1] = value
    return image


def test_an_object_cut_by_tiles_comes_back_whole() -> None:
    # 200x300 image, 100 px tiles, 0.2 overlap: the rectangle spans three tile columns and two rows.
    rect = (70, 60, 190, 130)
    image = scene((200, 300), [rect])
    image[20:30, 250:260] = 200  # a small grey one (class 1) inside one tile
    det = BlobDetector()
    cfg = SliceConfig(size=100, overlap=0.2)
    result = predict_sliced(det, image, cfg, source="scene")
    grid, full_pass = plan_tiles((200, 300), cfg)
    assert result.slices == len(grid) == len(det.calls) - 1 and full_pass  # type: ignore[attr-defined]
    assert det.calls[-1] == (200, 300, True)  # the full pass
    assert not any(contiguous for _, _, contiguous in det.calls[:-1])  # tiles are views into the image
    order = np.argsort(result.xyxy[:, 0])
    result = result[order]
    assert result.xyxy.tolist() == [list(map(float, rect)), [250.0, 20.0, 260.0, 30.0]]
    assert result.source == "scene" and result.image_shape == (200, 300)
    masks = result.data["masks"]
    np.testing.assert_array_equal(masks.mask(0), scene((200, 300), [rect])[..., 0] > 0)
    assert result.class_id.tolist() == [0, 1]


def test_without_full_pass_the_tiles_alone_are_merged() -> None:
    image = scene((200, 300), [(70, 60, 190, 130)])
    det = BlobDetector()
    result = predict_sliced(det, image, SliceConfig(size=100, overlap=0.2, full_pass=False))
    assert len(det.calls) == len(plan_tiles((200, 300), SliceConfig(size=100))[0])
    pieces = 9  # the object is seen in 3 tile columns x 3 tile rows
    # greedy NMM plans on the pieces' own boxes, so some pieces stay apart (as in SAHI); all lie in the object
    assert 1 <= len(result) < pieces
    assert result.xyxy[:, :2].min(axis=0).tolist() == [70, 60] and result.xyxy[:, 2:].max(axis=0).tolist() == [190, 130]
    assert [70, 60, 190, 130] in result.xyxy.tolist()


def test_nms_keeps_one_piece_instead_of_merging() -> None:
    image = scene((200, 300), [(70, 60, 190, 130)])
    result = predict_sliced(BlobDetector(), image, SliceConfig(size=100, overlap=0.2, merge="nms", full_pass=False))
    # pieces of one object hardly overlap each other (ios of neighbours < 0.5 only where the cut is thin)
    assert len(result) >= 1
    for x0, y0, x1, y1 in result.xyxy:
        assert 70 <= x0 < x1 <= 190 and 60 <= y0 < y1 <= 130
    assert not (result.xyxy == [70, 60, 190, 130]).all(axis=1).any()  # nothing was unioned


def test_an_image_smaller_than_the_tile_is_one_call_and_no_full_pass() -> None:
    image = scene((80, 90), [(10, 10, 30, 30)])
    det = BlobDetector()
    result = predict_sliced(det, image, SliceConfig(size=512))
    assert det.calls == [(80, 90, True)]
    assert result.slices == 1 and result.xyxy.tolist() == [[10, 10, 30, 30]]  # type: ignore[attr-defined]


def test_sahi_boxes_are_the_mask_pixel_bounds() -> None:
    image = scene((200, 300), [(70, 60, 190, 130)])
    result = predict_sliced(BlobDetector(), image, SliceConfig(size=100), sahi_boxes=True)
    assert result.xyxy.tolist() == [[70, 60, 189, 129]]  # SAHI: the polygon's bounds, last pixel inclusive


def test_a_real_detector_runs_on_tile_views() -> None:
    # the fake engine reports one box at (4, 4) per frame, side 8 + mean/8, in its 64x64 input
    image = uniform_image(96, (100, 150))
    cfg = SliceConfig(size=64, overlap=0.2, full_pass=False)
    with fake_detector() as det:
        result = predict_sliced(det, image, cfg)
    grid, _ = plan_tiles((100, 150), cfg)
    side = 8 + 96 / 8
    expected = np.c_[grid.offsets + 4, grid.offsets + 4 + side].astype(np.float32)
    got = result.xyxy[np.lexsort((result.xyxy[:, 0], result.xyxy[:, 1]))]
    np.testing.assert_allclose(got, expected[np.lexsort((expected[:, 0], expected[:, 1]))], atol=1e-3)


def test_offset_moves_every_field_the_merge_reads() -> None:
    masks = Masks((10, 10), np.array([[1, 2]]), [np.ones((3, 3), bool)])
    det = Detections(np.array([[1, 2, 4, 5]], np.float32), np.array([0.9]), np.array([0]), NAMES, (10, 10),
                     data={"masks": masks, "keypoints": np.array([[[1, 1, 0.5], [2, 3, 0.9]]], np.float32),
                           "xywhr": np.array([[2.5, 3.5, 3, 3, 0.1]], np.float32), "track_id": np.array([7])})
    moved = det.offset(100, 50, (300, 400))
    assert moved.xyxy.tolist() == [[101, 52, 104, 55]] and moved.image_shape == (300, 400)
    assert moved.data["masks"].image_shape == (300, 400) and moved.data["masks"].origins.tolist() == [[101, 52]]
    assert moved.data["keypoints"][0, :, :2].tolist() == [[101, 51], [102, 53]]
    assert moved.data["keypoints"][0, :, 2].tolist() == pytest.approx([0.5, 0.9])
    assert moved.data["xywhr"][0].tolist() == pytest.approx([102.5, 53.5, 3, 3, 0.1])
    assert moved.data["track_id"].tolist() == [7]
    assert det.xyxy.tolist() == [[1, 2, 4, 5]]  # the tile's own result is untouched


def test_merge_keeps_the_keepers_keypoints_and_uses_nms_for_rotated_boxes() -> None:
    kp = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    a = Detections(np.array([[0, 0, 10, 10], [1, 1, 10, 10]], np.float32), np.array([0.6, 0.9]), np.array([0, 0]),
                   NAMES, (20, 20), data={"keypoints": kp})
    merged = merge_parts([a], SliceConfig(size=10), (20, 20))
    assert len(merged) == 1 and merged.xyxy[0].tolist() == [0, 0, 10, 10]
    np.testing.assert_array_equal(merged.data["keypoints"][0], kp[1])  # the higher score's
    rot = np.array([[5, 5, 10, 10, 0], [5.5, 5.5, 9, 9, 0]], np.float32)
    b = Detections(a.xyxy, a.confidence, a.class_id, NAMES, (20, 20), data={"xywhr": rot})
    kept = merge_parts([b], SliceConfig(size=10, merge="greedynmm"), (20, 20))
    assert len(kept) == 1 and kept.xyxy[0].tolist() == [1, 1, 10, 10]  # suppressed, not unioned


def test_concat_of_no_parts_is_empty() -> None:
    empty = Detections.merge([], names=NAMES, image_shape=(5, 6))
    assert len(empty) == 0 and empty.image_shape == (5, 6)
    assert len(merge_parts([], SliceConfig(), (5, 6), names=NAMES)) == 0


def test_a_classifier_is_refused_in_one_line() -> None:
    def classify(image: np.ndarray) -> Classification:
        return Classification(np.array([0.2, 0.8], np.float32), {0: "a", 1: "b"}, image.shape[:2])

    with pytest.raises(ConfigError, match="classification model cannot be sliced") as err:
        predict_sliced(classify, np.zeros((600, 900, 3), np.uint8), SliceConfig(size=512))  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
