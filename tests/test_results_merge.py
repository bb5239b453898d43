"""Results of parts of an image (tiles, crops) come back to the whole image exactly.

:meth:`Detections.offset` moves a tile's result into the full image (boxes,
keypoints with their visibility untouched, rotated boxes' centres, masks'
placements with the pixels shared) and :meth:`Detections.merge` concatenates
results of one image, every field. Sliced inference builds on these two, so
each field of each task's result is checked, with round trips and a
property-style check on random tiles. Results are built by hand, shaped as
each head makes them (see tests/test_tasks_units.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from yolo_ov import Classification, Detections, Failure, Timings
from yolo_ov.ops.masks import Masks
from yolo_ov.ops.rotated import xywhr_to_corners
from yolo_ov.results import DATA_OFFSETS, Result

NAMES = {0: "person", 1: "car", 2: "dog"}
TASKS = ["detect", "tracked", "segment", "pose", "obb"]


def _boxes(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    xy = rng.uniform(0, [w - 4, h - 4], (n, 2))
    wh = rng.uniform(1, 3.5, (n, 2)) * np.minimum([w, h], 64) / 4
    x2y2 = np.minimum(xy + wh, [w, h])
    return np.round(np.concatenate([xy, x2y2], axis=1) * 8) / 8  # on a 1/8 pixel grid: float32 sums are exact


def make(task: str, n: int = 4, shape: tuple[int, int] = (96, 128), seed: int = 0, **meta) -> Detections:
    """A result of ``task`` with ``n`` detections in an image of ``shape``, as that task's head makes it."""
    rng = np.random.default_rng(seed)
    xyxy = _boxes(rng, n, shape).astype(np.float32)
    conf = np.round(rng.uniform(0.25, 1, n), 3).astype(np.float32)
    cls = rng.integers(0, len(NAMES), n).astype(np.int32)
    data: dict = {}
    if task == "tracked":
        data["track_id"] = rng.integers(1, 100, n)
    elif task == "segment":
        ix = np.floor(xyxy).astype(np.int64)
        crops = [rng.random((max(y2 - y1, 0), max(x2 - x1, 0))) > 0.4 for x1, y1, x2, y2 in ix]
        data["masks"] = Masks(shape, ix[:, :2], crops)
    elif task == "pose":
        kpts = np.empty((n, 17, 3), np.float32)
        kpts[..., 0] = np.round(rng.uniform(0, shape[1], (n, 17)) * 8) / 8
        kpts[..., 1] = np.round(rng.uniform(0, shape[0], (n, 17)) * 8) / 8
        kpts[..., 2] = rng.uniform(0, 1, (n, 17))  # visibility (the keypoint's confidence)
        data["keypoints"] = kpts
    elif task == "obb":
        xywhr = np.column_stack([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2],
                                 rng.uniform(-np.pi / 4, 3 * np.pi / 4, n)]).astype(np.float32)
        corners = xywhr_to_corners(xywhr)
        xyxy = np.round(np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1) * 8) / 8
        data["xywhr"] = xywhr
    return Detections(xyxy, conf, cls, NAMES, shape, data=data, **meta)


def empty(task: str, shape: tuple[int, int] = (96, 128)) -> Detections:
    """What each head returns when nothing is found (its data fields present, with 0 rows)."""
    return make(task, n=4, shape=shape)[np.zeros(4, bool)]


def assert_same(a: Detections, b: Detections) -> None:
    """Every field equal (``Detections.__eq__`` leaves ``data`` and ``timing`` out, this does not)."""
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    np.testing.assert_array_equal(a.class_id, b.class_id)
    assert (a.xyxy.dtype, a.confidence.dtype, a.class_id.dtype) == (np.float32, np.float32, np.int32)
    assert dict(a.names) == dict(b.names) and a.image_shape == b.image_shape
    assert (a.source, a.stream, a.frame) == (b.source, b.stream, b.frame)
    assert set(a.data) == set(b.data)
    for key in a.data:
        x, y = a.data[key], b.data[key]
        if isinstance(x, Masks):
            assert isinstance(y, Masks) and x.image_shape == y.image_shape and len(x) == len(y)
            np.testing.assert_array_equal(x.origins, y.origins)
            for cx, cy in zip(x.crops, y.crops, strict=True):
                np.testing.assert_array_equal(cx, cy)
        else:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
            assert np.asarray(x).shape == np.asarray(y).shape, key


# -- merge ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_merge_concatenates_every_field(task):
    parts = [make(task, n, seed=s) for s, n in enumerate([3, 1, 5])]
    merged = Detections.merge(parts)
    assert len(merged) == 9
    np.testing.assert_array_equal(merged.xyxy, np.concatenate([p.xyxy for p in parts]))
    np.testing.assert_array_equal(merged.confidence, np.concatenate([p.confidence for p in parts]))
    np.testing.assert_array_equal(merged.class_id, np.concatenate([p.class_id for p in parts]))
    assert merged.class_names == [n for p in parts for n in p.class_names]
    assert set(merged.data) == set(parts[0].data)
    for i, (p, rows) in enumerate(zip(parts, [slice(0, 3), slice(3, 4), slice(4, 9)], strict=True)):
        assert_same(merged[rows], p), i  # each part is found back, every data field with it


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("cut", [0, 1, 3, 6])
def test_split_then_merge_is_the_identity(task, cut):
    det = make(task, 6, seed=11, source="a.jpg", stream=2, frame=9)
    assert_same(Detections.merge([det[:cut], det[cut:]]), det)


@pytest.mark.parametrize("task", TASKS)
def test_merge_skips_empty_parts(task):
    a, b = make(task, 2, seed=1), make(task, 3, seed=2)
    assert_same(Detections.merge([empty(task), a, empty(task), b, empty(task)]), Detections.merge([a, b]))


def test_merge_accepts_an_empty_part_without_the_task_fields():
    """``Detections.empty()`` (no data) beside segment results: its (absent) rows add nothing."""
    a = make("segment", 3, seed=1)
    assert_same(Detections.merge([Detections.empty(names=NAMES, image_shape=(96, 128)), a]), a)


@pytest.mark.parametrize("task", TASKS)
def test_merge_of_empty_parts_is_an_empty_result_of_the_task(task):
    merged = Detections.merge([empty(task), empty(task)])
    assert len(merged) == 0 and merged.xyxy.shape == (0, 4) and merged.image_shape == (96, 128)
    assert set(merged.data) == set(make(task).data)
    shapes = {"keypoints": (0, 17, 3), "xywhr": (0, 5), "track_id": (0,)}
    for key, value in merged.data.items():
        if key == "masks":
            assert isinstance(value, Masks) and len(value) == 0 and value.image_shape == (96, 128)
        else:
            assert np.asarray(value).shape == shapes[key]
    assert merged.to_dict()["detections"] == []


def test_merge_of_nothing():
    merged = Detections.merge([])
    assert len(merged) == 0 and merged.xyxy.shape == (0, 4) and merged.confidence.shape == (0,)
    assert merged.image_shape == (0, 0) and dict(merged.names) == {}
    named = Detections.merge([], names=NAMES, image_shape=(480, 640))
    assert named.image_shape == (480, 640) and dict(named.names) == NAMES
    assert named.to_dict() == {"source": None, "width": 640, "height": 480, "detections": []}


def test_merge_keeps_the_first_parts_identity_and_sums_the_timings():
    a = make("detect", 2, seed=1, source="big.jpg", stream=3, frame=7)
    a.timing = Timings(1.0, 2.0, 0.5)
    b = make("detect", 2, seed=2, source="big.jpg", stream=3, frame=7)
    b.timing = Timings(0.25, 4.0, 0.5)
    merged = Detections.merge([a, b])
    assert (merged.source, merged.stream, merged.frame) == ("big.jpg", 3, 7)
    assert merged.timing == Timings(1.25, 6.0, 1.0)
    assert Detections.merge([make("detect", 1)]).timing is None


@pytest.mark.parametrize("task", TASKS)
def test_merge_refuses_parts_of_other_images_or_models(task):
    a = make(task, 2)
    with pytest.raises(ValueError, match="shape"):
        Detections.merge([a, make(task, 2, shape=(96, 100))])
    other = make(task, 2)
    other.names = {0: "cat"}
    with pytest.raises(ValueError, match="names"):
        Detections.merge([a, other])
    with pytest.raises(ValueError, match="shape"):
        Detections.merge([a], image_shape=(10, 10))


def test_merge_refuses_parts_with_different_fields():
    with pytest.raises(ValueError, match="data fields"):
        Detections.merge([make("pose", 2), make("obb", 2)])
    with pytest.raises(ValueError, match="data fields"):
        Detections.merge([make("detect", 2), make("tracked", 2)])
    narrow = make("pose", 2)
    narrow.data["keypoints"] = narrow.data["keypoints"][:, :5]
    with pytest.raises(ValueError, match="keypoints"):
        Detections.merge([make("pose", 2), narrow])


def test_merge_concatenates_list_fields():
    a, b = make("detect", 2), make("detect", 1, seed=3)
    a.data["label"], b.data["label"] = ["x", "y"], ["z"]
    assert Detections.merge([a, b]).data["label"] == ["x", "y", "z"]


def test_masks_concat_shares_the_crops_and_checks_the_image():
    a, b = make("segment", 2).data["masks"], make("segment", 3, seed=5).data["masks"]
    both = Masks.concat([a, b])
    assert len(both) == 5 and all(x is y for x, y in zip(both.crops, a.crops + b.crops, strict=True))
    np.testing.assert_array_equal(both.dense(), np.concatenate([a.dense(), b.dense()]))
    with pytest.raises(ValueError, match="image shapes"):
        Masks.concat([a, Masks.empty((10, 10))])
    with pytest.raises(ValueError, match="at least one"):
        Masks.concat([])


# -- classification ---------------------------------------------------------------------------------
def test_classification_cannot_be_merged_or_offset():
    c = Classification(np.array([0.2, 0.8]), {0: "cat", 1: "dog"}, (10, 10))
    with pytest.raises(TypeError, match="Classification"):
        Detections.merge([make("detect", 1), c])
    with pytest.raises(TypeError, match="Classification"):
        Classification.merge([c, c])
    with pytest.raises(TypeError, match="Classification"):
        c.offset(4, 4, (20, 20))
    with pytest.raises(TypeError, match="Failure"):
        Detections.merge([Failure("x.jpg", "broken")])


def test_the_result_type_is_detections_or_classification():
    c = Classification(np.array([0.2, 0.8]), {0: "cat", 1: "dog"}, (10, 10))
    assert isinstance(c, Result) and isinstance(make("obb"), Result)


# -- offset -----------------------------------------------------------------------------------------
FULL = (300, 400)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(("dx", "dy"), [(0, 0), (100, 40), (272, 204), (3, 150)])
def test_offset_moves_every_positioned_field(task, dx, dy):
    tile = make(task, 5, seed=dx + dy, source="big.jpg", stream=1, frame=4)
    moved = tile.offset(dx, dy, FULL)
    assert moved.image_shape == FULL
    assert (moved.source, moved.stream, moved.frame) == ("big.jpg", 1, 4)
    np.testing.assert_array_equal(moved.xyxy, tile.xyxy + np.array([dx, dy, dx, dy], np.float32))
    np.testing.assert_array_equal(moved.confidence, tile.confidence)
    np.testing.assert_array_equal(moved.class_id, tile.class_id)
    assert set(moved.data) == set(tile.data)
    if task == "tracked":
        np.testing.assert_array_equal(moved.data["track_id"], tile.data["track_id"])
    if task == "pose":
        before, after = tile.data["keypoints"], moved.data["keypoints"]
        np.testing.assert_array_equal(after[..., 0], before[..., 0] + dx)
        np.testing.assert_array_equal(after[..., 1], before[..., 1] + dy)
        np.testing.assert_array_equal(after[..., 2], before[..., 2])  # visibility untouched
        assert after.dtype == np.float32
    if task == "obb":
        before, after = tile.data["xywhr"], moved.data["xywhr"]
        np.testing.assert_array_equal(after[:, :2], before[:, :2] + np.array([dx, dy], np.float32))
        np.testing.assert_array_equal(after[:, 2:], before[:, 2:])  # size and angle stay
        np.testing.assert_allclose(xywhr_to_corners(after), xywhr_to_corners(before) + np.array([dx, dy]), atol=1e-4)
    if task == "segment":
        before, after = tile.data["masks"], moved.data["masks"]
        assert after.image_shape == FULL
        np.testing.assert_array_equal(after.origins, before.origins + np.array([dx, dy]))
        assert all(a is b for a, b in zip(after.crops, before.crops, strict=True))  # placed, not copied
        h, w = tile.image_shape
        expected = np.zeros((len(before), *FULL), bool)
        expected[:, dy : dy + h, dx : dx + w] = before.dense()
        np.testing.assert_array_equal(after.dense(), expected)
        np.testing.assert_array_equal(after.area, before.area)


@pytest.mark.parametrize("task", TASKS)
def test_offset_leaves_the_tile_result_unchanged(task):
    tile = make(task, 4, seed=3)
    copy = Detections.merge([tile])  # a fresh result with the same values
    tile.offset(50, 60, FULL)
    assert_same(tile, copy)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(("dx", "dy"), [(1, 2), (131, 0), (0, 177), (272, 204)])
def test_offset_round_trip(task, dx, dy):
    tile = make(task, 6, seed=dx)
    back = tile.offset(dx, dy, FULL).offset(-dx, -dy, tile.image_shape)
    assert_same(back, tile)


@pytest.mark.parametrize("task", TASKS)
def test_offset_then_merge_equals_merge_then_offset(task):
    parts = [make(task, n, seed=n) for n in (2, 4, 1)]
    assert_same(Detections.merge([p.offset(30, 70, FULL) for p in parts]),
                Detections.merge(parts).offset(30, 70, FULL))


@pytest.mark.parametrize("task", TASKS)
def test_offset_of_an_empty_result(task):
    moved = empty(task).offset(10, 20, FULL)
    assert len(moved) == 0 and moved.image_shape == FULL and set(moved.data) == set(make(task).data)
    if task == "segment":
        assert moved.data["masks"].image_shape == FULL


def test_offset_records_are_the_tile_records_moved():
    """What the sinks write: boxes, keypoints, oriented boxes and corners moved; masks' RLE in the full image."""
    from faster_coco_eval.core import mask as mask_api

    dx, dy = 64, 32
    for task in ("pose", "obb", "segment"):
        tile = make(task, 3, seed=8)
        ours, theirs = tile.offset(dx, dy, FULL).to_dict(), tile.to_dict()
        assert (ours["width"], ours["height"]) == (400, 300)
        for a, b in zip(ours["detections"], theirs["detections"], strict=True):
            np.testing.assert_allclose(a["box"], np.asarray(b["box"]) + np.array([dx, dy, dx, dy]), atol=0.011)
            if task == "pose":
                shift = np.array([dx, dy, 0])
                np.testing.assert_allclose(np.asarray(a["keypoints"]), np.asarray(b["keypoints"]) + shift, atol=0.011)
            if task == "obb":
                np.testing.assert_allclose(a["obb"], np.asarray(b["obb"]) + np.array([dx, dy, 0, 0, 0]), atol=0.011)
                np.testing.assert_allclose(a["corners"], np.asarray(b["corners"]) + np.array([dx, dy]), atol=0.011)
            if task == "segment":
                full = mask_api.decode({"size": a["mask"]["size"], "counts": a["mask"]["counts"].encode()})
                part = mask_api.decode({"size": b["mask"]["size"], "counts": b["mask"]["counts"].encode()})
                assert full.shape == FULL and full.sum() == part.sum()
                np.testing.assert_array_equal(full[dy : dy + 96, dx : dx + 128], part)
        json.dumps(ours)


def test_offset_cuts_masks_at_the_full_image():
    """A crop reaching past the full image is cut to it (a view), so masks never leave their image."""
    masks = Masks((20, 20), np.array([[12, 14], [0, 0]]), [np.ones((6, 8), bool), np.ones((3, 3), bool)])
    moved = masks.offset(5, 4, (22, 24))
    np.testing.assert_array_equal(moved.origins, [[17, 18], [5, 4]])
    assert moved.crops[0].shape == (4, 7) and moved.crops[1] is masks.crops[1]
    assert np.shares_memory(moved.crops[0], masks.crops[0])
    assert moved.dense()[0].sum() == 28 and moved.dense()[0][18:, 17:].all()
    back = masks.offset(-13, -15, (20, 20))  # partly left of and above the image
    np.testing.assert_array_equal(back.origins, [[0, 0], [0, 0]])
    assert back.crops[0].shape == (5, 7) and back.crops[1].shape == (0, 0)
    with pytest.raises(ValueError, match="whole pixels"):
        masks.offset(0.5, 0, (20, 20))


def test_offset_needs_a_rule_for_every_data_field():
    det = make("detect", 2)
    det.data["embedding"] = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match=r"embedding.*DATA_OFFSETS"):
        det.offset(1, 1, FULL)
    DATA_OFFSETS["embedding"] = None  # a field without a position travels as it is
    try:
        np.testing.assert_array_equal(det.offset(1, 1, FULL).data["embedding"], det.data["embedding"])
    finally:
        del DATA_OFFSETS["embedding"]


def test_offset_moves_validation_boxes_and_keypoints():
    det = make("pose", 2)
    det.data["val_xyxy"] = det.xyxy - 1
    det.data["val_keypoints"] = det.data["keypoints"].copy()
    moved = det.offset(7, 9, FULL)
    np.testing.assert_array_equal(moved.data["val_xyxy"], moved.xyxy - 1)
    np.testing.assert_array_equal(moved.data["val_keypoints"], moved.data["keypoints"])


# -- property style: random tiles, offset then merged -----------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_random_tiles_offset_then_merged_equal_the_concatenation_of_offsets(seed):
    rng = np.random.default_rng(1000 + seed)
    task = TASKS[seed % len(TASKS)]
    full = (int(rng.integers(200, 900)), int(rng.integers(200, 900)))
    tiles, expected_boxes, expected_extra = [], [], []
    for t in range(int(rng.integers(0, 7))):
        th, tw = int(rng.integers(32, full[0] // 2)), int(rng.integers(32, full[1] // 2))
        dy, dx = int(rng.integers(0, full[0] - th + 1)), int(rng.integers(0, full[1] - tw + 1))
        part = make(task, int(rng.integers(0, 6)), shape=(th, tw), seed=seed * 100 + t, source="s.jpg")
        tiles.append(part.offset(dx, dy, full))
        expected_boxes.append(part.xyxy + np.array([dx, dy, dx, dy], np.float32))
        if task == "pose":
            expected_extra.append(part.data["keypoints"] + np.array([dx, dy, 0], np.float32))
        elif task == "obb":
            expected_extra.append(part.data["xywhr"] + np.array([dx, dy, 0, 0, 0], np.float32))
        elif task == "segment":
            m = part.data["masks"]
            dense = np.zeros((len(m), *full), bool)
            dense[:, dy : dy + th, dx : dx + tw] = m.dense()
            expected_extra.append(dense)
    merged = Detections.merge(tiles, names=NAMES, image_shape=full)
    assert merged.image_shape == full
    assert len(merged) == sum(len(b) for b in expected_boxes)
    np.testing.assert_array_equal(merged.xyxy, np.concatenate(expected_boxes or [np.zeros((0, 4), np.float32)]))
    if len(merged) and task in ("pose", "obb", "segment"):
        key = {"pose": "keypoints", "obb": "xywhr", "segment": "masks"}[task]
        got = merged.data[key].dense() if task == "segment" else merged.data[key]
        np.testing.assert_array_equal(got, np.concatenate(expected_extra))


@pytest.mark.parametrize("task", ["detect", "segment", "pose", "obb"])
def test_a_scene_cut_into_tiles_comes_back_whole(task):
    """The sliced-inference path on exact data: detections of a full image, each given to the tile that
    holds it (expressed in that tile), offset back and merged, are the full image's detections again."""
    full = (240, 320)
    scene = make(task, 12, shape=full, seed=42)
    step = 160
    parts = []
    inside_tile = (scene.xyxy[:, 0] // step == (scene.xyxy[:, 2] - 1e-3) // step)
    inside_tile &= (scene.xyxy[:, 1] // step == (scene.xyxy[:, 3] - 1e-3) // step)
    if task == "segment":  # a mask crop must lie in the tile as well
        b = scene.data["masks"].boxes
        inside_tile &= (b[:, 0] // step == (b[:, 2] - 1) // step) & (b[:, 1] // step == (b[:, 3] - 1) // step)
    scene = scene[inside_tile]
    assert len(scene) >= 3
    order = []
    for ty in range(0, full[0], step):
        for tx in range(0, full[1], step):
            rows = np.flatnonzero((scene.xyxy[:, 0] // step * step == tx) & (scene.xyxy[:, 1] // step * step == ty))
            order.extend(rows.tolist())
            tile_shape = (min(step, full[0] - ty), min(step, full[1] - tx))
            local = scene[rows].offset(-tx, -ty, tile_shape)  # what the tile's inference would report
            parts.append(local.offset(tx, ty, full))
    assert_same(Detections.merge(parts), scene[np.asarray(order)])
