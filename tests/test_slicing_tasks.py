"""Sliced pose and OBB through the fan-out, on the shared models (model tier; issue 21, item 2).

SAHI has no pose merge and its OBB merge is not in the shared references, so
these tests hold the concurrent path to the sequential reference
(:func:`~yolo_ov.pipeline.slicing.predict_sliced`, tile after tile) field for
field, and check what slicing must do to each field: keypoints and rotated
boxes land in image coordinates, the kept box keeps its own keypoints, OBB
merging keeps no two rotated boxes of one class that overlap beyond the
threshold (``probiou``, as SAHI's OBB path). On an image no larger than a
tile, slicing is one tile and no duplicate full pass: the unsliced answer.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from yolo_ov import Detector, SliceConfig
from yolo_ov.ops.rotated import probiou
from yolo_ov.pipeline.slicing import predict_sliced

CFG = SliceConfig(size=512, overlap=0.2, full_pass=True, merge="greedynmm", metric="ios", threshold=0.5)


def _assert_same(got: Any, want: Any, fields: tuple[str, ...]) -> None:
    assert len(got) == len(want)
    np.testing.assert_array_equal(got.xyxy, want.xyxy)
    np.testing.assert_array_equal(got.confidence, want.confidence)
    np.testing.assert_array_equal(got.class_id, want.class_id)
    for field in fields:
        np.testing.assert_array_equal(np.asarray(got.data[field]), np.asarray(want.data[field]), err_msg=field)


def test_pose_tiles_through_the_fanout_equal_the_sequential_reference(shared: Any) -> None:
    model = shared.task_model("yolov8n-pose_int8_openvino_model")
    pixels = cv2.imread(str(shared.root / "data" / "sliced" / "terrain1.jpg"))  # people at the bottom
    h, w = pixels.shape[:2]
    with Detector(model, mode="latency", conf=0.25) as det:
        concurrent = det(pixels, slicing=CFG)
        sequential = predict_sliced(det, pixels, CFG)
        unsliced = det(pixels)
    _assert_same(concurrent, sequential, ("keypoints",))
    assert concurrent.slices > 1 and len(concurrent) >= 1
    kpts = np.asarray(concurrent.data["keypoints"], np.float64)
    assert kpts.shape[0] == len(concurrent) and kpts.shape[1:] == (17, 3)
    # Each kept person keeps the keypoints found with its box: the visible ones lie in it, give or take a
    # quarter of its size (a pose model puts ankles and wrists a little outside its box).
    for box, person in zip(concurrent.xyxy, kpts, strict=True):
        seen = person[person[:, 2] >= 0.5, :2]
        mx, my = 0.25 * (box[2] - box[0]), 0.25 * (box[3] - box[1])
        if len(seen):
            assert (seen[:, 0] >= box[0] - mx).all() and (seen[:, 0] <= box[2] + mx).all()
            assert (seen[:, 1] >= box[1] - my).all() and (seen[:, 1] <= box[3] + my).all()
    assert (kpts[..., 0] <= w + 1).all() and (kpts[..., 1] <= h + 1).all()
    print(f"pose, terrain1: {len(unsliced)} people unsliced, {len(concurrent)} sliced "
          f"({concurrent.slices} tiles + the full pass)")


def test_obb_tiles_through_the_fanout_equal_the_sequential_reference(shared: Any) -> None:
    # The .tflite, not its IR: the IR converted by OpenVINO's TFLite frontend returns boxes in [0, 1] of the
    # input, and Ultralytics' own run of that IR keeps them so (see ../shared's reference): no pixels to slice.
    model = shared.task_model("yolo26n-obb_int8.tflite")
    pixels = cv2.imread(str(shared.root / "data" / "sliced" / "terrain1.jpg"))
    with Detector(model, mode="latency", conf=0.25) as det:
        concurrent = det(pixels, slicing=CFG)
        sequential = predict_sliced(det, pixels, CFG)
        unsliced = det(pixels)
    _assert_same(concurrent, sequential, ("xywhr",))
    assert concurrent.slices > 1
    xywhr = np.asarray(concurrent.data["xywhr"], np.float64)
    assert xywhr.shape == (len(concurrent), 5)
    h, w = pixels.shape[:2]
    assert ((xywhr[:, 0] >= 0) & (xywhr[:, 0] <= w) & (xywhr[:, 1] >= 0) & (xywhr[:, 1] <= h)).all()
    # After the merge no two rotated boxes of one class overlap beyond the match threshold (probiou).
    for cls in np.unique(concurrent.class_id):
        same = xywhr[concurrent.class_id == cls]
        if len(same) > 1:
            overlap = np.asarray(probiou(same, same), np.float64)
            np.fill_diagonal(overlap, 0.0)
            assert overlap.max() < 0.9, f"class {cls}: two merged rotated boxes overlap {overlap.max():.2f}"
    print(f"obb, terrain1: {len(unsliced)} objects unsliced, {len(concurrent)} sliced "
          f"({concurrent.slices} tiles + the full pass)")


def test_an_image_no_larger_than_a_tile_is_the_unsliced_answer(shared: Any) -> None:
    model = shared.task_model("yolov8n-pose_int8_openvino_model")
    image = shared.coco96_images[0]
    pixels = cv2.imread(str(image))
    assert max(pixels.shape[:2]) <= 640
    with Detector(model, mode="latency", conf=0.25) as det:
        sliced = det(pixels, slicing=SliceConfig(size=640))
        plain = det(pixels)
    assert sliced.slices == 1
    _assert_same(sliced, plain, ("keypoints",))
