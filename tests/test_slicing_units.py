"""Sliced inference, the pure parts: settings, SAHI's tile grid, SAHI's merges (fast tier, no model).

The expected tables are SAHI 0.12.8's own outputs, computed once from its
source (``sahi/slicing.py`` ``get_slice_bboxes``; ``sahi/postprocess/_numpy_backend.py``
``*_from_matrix`` with ``combine._batched_apply``), each function extracted with
``ast`` and run on its own (SAHI's package imports shapely, which this venv
does not have), and pasted here as literals.
"""

from __future__ import annotations

import numpy as np
import pytest

from yolo_ov import ConfigError, SliceConfig
from yolo_ov.config import parse_slice_size
from yolo_ov.imaging.tiles import tile_grid, tile_views
from yolo_ov.ops.masks import Masks
from yolo_ov.ops.merge import apply_merge, merge_masks, overlap_matrix, plan_merge, score_order

# -- settings ---------------------------------------------------------------------------------------------------


def test_slice_config_defaults_are_sahis() -> None:
    cfg = SliceConfig()
    assert (cfg.tile_hw, cfg.overlap_hw, cfg.full_pass) == ((640, 640), (0.2, 0.2), True)
    assert (cfg.merge, cfg.metric, cfg.threshold, cfg.class_agnostic) == ("greedynmm", "ios", 0.5, False)


@pytest.mark.parametrize(("typed", "hw"), [
    ("640", (640, 640)), (640, (640, 640)), ("512,640", (512, 640)), ("512x640", (512, 640)),
    ((320, 480), (320, 480)), (" 256 , 128 ", (256, 128)),
])
def test_parse_slice_size(typed: object, hw: tuple[int, int]) -> None:
    assert parse_slice_size(typed) == hw  # type: ignore[arg-type]
    assert SliceConfig(size=typed).tile_hw == hw  # type: ignore[arg-type]


def test_slice_config_normalises_names_and_pairs() -> None:
    cfg = SliceConfig(size=(512, 640), overlap=(0.25, 0.1), merge="GREEDY_NMM", metric="IOU")
    assert (cfg.overlap_hw, cfg.merge, cfg.metric) == ((0.25, 0.1), "greedynmm", "iou")
    with pytest.raises(AttributeError):
        cfg.merge = "nms"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SliceConfig(512)  # type: ignore[misc]  # keyword-only


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"size": 0}, "slice must be a positive tile size"),
    ({"size": "0,640"}, "slice must be a positive tile size"),
    ({"size": "abc"}, "slice must be a tile size like 640"),
    ({"size": "1,2,3"}, "slice must be one size or height,width"),
    ({"overlap": 1.0}, "overlap must be within [0, 1)"),
    ({"overlap": -0.1}, "overlap must be within [0, 1)"),
    ({"overlap": (0.2, 1.5)}, "overlap must be within [0, 1)"),
    ({"overlap": "lots"}, "overlap must be a ratio"),
    ({"merge": "wbf"}, "slice merge must be one of greedynmm, nmm, nms, got 'wbf'"),
    ({"metric": "giou"}, "slice match metric must be one of ios, iou"),
    ({"threshold": 1.5}, "slice match threshold must be within [0, 1]"),
])
def test_slice_config_rejects_bad_settings_in_one_line(kwargs: dict, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        SliceConfig(**kwargs)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_parse_slice_size_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--slice must be a positive"):
        parse_slice_size("-5")


# -- the tile grid ---------------------------------------------------------------------------------------------

#: ((image h, w), (tile h, w), (overlap h, w), SAHI's get_slice_bboxes(h, w, th, tw, False, oh, ow)).
SAHI_TILES = [
    ((580, 1068), (512, 512), (0.2, 0.2), [
        [0,0,512,512], [410,0,922,512], [556,0,1068,512], [0,68,512,580], [410,68,922,580], [556,68,1068,580],
    ]),
    ((1365, 2048), (512, 512), (0.2, 0.2), [
        [0,0,512,512], [410,0,922,512], [820,0,1332,512], [1230,0,1742,512], [1536,0,2048,512], [0,410,512,922],
        [410,410,922,922], [820,410,1332,922], [1230,410,1742,922], [1536,410,2048,922], [0,820,512,1332],
        [410,820,922,1332], [820,820,1332,1332], [1230,820,1742,1332], [1536,820,2048,1332], [0,853,512,1365],
        [410,853,922,1365], [820,853,1332,1365], [1230,853,1742,1365], [1536,853,2048,1365],
    ]),
    ((1080, 1920), (512, 512), (0.2, 0.2), [
        [0,0,512,512], [410,0,922,512], [820,0,1332,512], [1230,0,1742,512], [1408,0,1920,512], [0,410,512,922],
        [410,410,922,922], [820,410,1332,922], [1230,410,1742,922], [1408,410,1920,922], [0,568,512,1080],
        [410,568,922,1080], [820,568,1332,1080], [1230,568,1742,1080], [1408,568,1920,1080],
    ]),
    ((682, 1024), (512, 512), (0.2, 0.2), [
        [0,0,512,512], [410,0,922,512], [512,0,1024,512], [0,170,512,682], [410,170,922,682], [512,170,1024,682],
    ]),
    ((1080, 1920), (640, 640), (0.2, 0.2), [
        [0,0,640,640], [512,0,1152,640], [1024,0,1664,640], [1280,0,1920,640], [0,440,640,1080],
        [512,440,1152,1080], [1024,440,1664,1080], [1280,440,1920,1080],
    ]),
    ((1080, 1920), (512, 640), (0.25, 0.1), [
        [0,0,640,512], [576,0,1216,512], [1152,0,1792,512], [1280,0,1920,512], [0,384,640,896], [576,384,1216,896],
        [1152,384,1792,896], [1280,384,1920,896], [0,568,640,1080], [576,568,1216,1080], [1152,568,1792,1080],
        [1280,568,1920,1080],
    ]),
    ((300, 400), (512, 512), (0.2, 0.2), [
        [0,0,400,300],
    ]),
    ((300, 1000), (512, 512), (0.2, 0.2), [
        [0,0,512,300], [410,0,922,300], [488,0,1000,300],
    ]),
    ((1000, 300), (512, 256), (0.0, 0.5), [
        [0,0,256,512], [44,0,300,512], [0,488,256,1000], [44,488,300,1000],
    ]),
    ((512, 512), (512, 512), (0.2, 0.2), [
        [0,0,512,512],
    ]),
    ((513, 1025), (512, 512), (0.2, 0.2), [
        [0,0,512,512], [410,0,922,512], [513,0,1025,512], [0,1,512,513], [410,1,922,513], [513,1,1025,513],
    ]),
    ((100, 100), (30, 30), (0.1, 0.1), [
        [0,0,30,30], [27,0,57,30], [54,0,84,30], [70,0,100,30], [0,27,30,57], [27,27,57,57], [54,27,84,57],
        [70,27,100,57], [0,54,30,84], [27,54,57,84], [54,54,84,84], [70,54,100,84], [0,70,30,100], [27,70,57,100],
        [54,70,84,100], [70,70,100,100],
    ]),
    ((100, 100), (30, 30), (0.0, 0.0), [
        [0,0,30,30], [30,0,60,30], [60,0,90,30], [70,0,100,30], [0,30,30,60], [30,30,60,60], [60,30,90,60],
        [70,30,100,60], [0,60,30,90], [30,60,60,90], [60,60,90,90], [70,60,100,90], [0,70,30,100], [30,70,60,100],
        [60,70,90,100], [70,70,100,100],
    ]),
    ((2160, 3840), (640, 640), (0.2, 0.2), [
        [0,0,640,640], [512,0,1152,640], [1024,0,1664,640], [1536,0,2176,640], [2048,0,2688,640], [2560,0,3200,640],
        [3072,0,3712,640], [3200,0,3840,640], [0,512,640,1152], [512,512,1152,1152], [1024,512,1664,1152],
        [1536,512,2176,1152], [2048,512,2688,1152], [2560,512,3200,1152], [3072,512,3712,1152],
        [3200,512,3840,1152], [0,1024,640,1664], [512,1024,1152,1664], [1024,1024,1664,1664], [1536,1024,2176,1664],
        [2048,1024,2688,1664], [2560,1024,3200,1664], [3072,1024,3712,1664], [3200,1024,3840,1664],
        [0,1520,640,2160], [512,1520,1152,2160], [1024,1520,1664,2160], [1536,1520,2176,2160],
        [2048,1520,2688,2160], [2560,1520,3200,2160], [3072,1520,3712,2160], [3200,1520,3840,2160],
    ]),
    ((720, 1280), (320, 320), (0.33, 0.33), [
        [0,0,320,320], [215,0,535,320], [430,0,750,320], [645,0,965,320], [860,0,1180,320], [960,0,1280,320],
        [0,215,320,535], [215,215,535,535], [430,215,750,535], [645,215,965,535], [860,215,1180,535],
        [960,215,1280,535], [0,400,320,720], [215,400,535,720], [430,400,750,720], [645,400,965,720],
        [860,400,1180,720], [960,400,1280,720],
    ]),
    ((64, 64), (32, 48), (0.5, 0.75), [
        [0,0,48,32], [12,0,60,32], [16,0,64,32], [0,16,48,48], [12,16,60,48], [16,16,64,48], [0,32,48,64],
        [12,32,60,64], [16,32,64,64],
    ]),
    ((1, 1), (512, 512), (0.2, 0.2), [
        [0,0,1,1],
    ]),
]


@pytest.mark.parametrize(("image_hw", "tile_hw", "overlap", "expected"), SAHI_TILES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in SAHI_TILES])
def test_tile_grid_is_sahis(image_hw: tuple[int, int], tile_hw: tuple[int, int], overlap: tuple[float, float],
                            expected: list[list[int]]) -> None:
    grid = tile_grid(image_hw, tile_hw, overlap)
    assert grid.boxes.tolist() == expected
    assert grid.tile_larger_than_image == (tile_hw[0] > image_hw[0] or tile_hw[1] > image_hw[1])


def test_the_shared_images_slice_as_in_sahis_reference() -> None:
    # ../shared/data/sliced/sahi_reference_*.json: "slices" per image at 512 / 0.2
    for hw, slices in [((580, 1068), 6), ((1365, 2048), 20), ((1080, 1920), 15), ((682, 1024), 6)]:
        assert len(tile_grid(hw, (512, 512), (0.2, 0.2))) == slices


def test_every_pixel_is_covered_and_edge_tiles_keep_the_tile_size() -> None:
    grid = tile_grid((1080, 1920), (512, 640), (0.2, 0.2))
    cover = np.zeros((1080, 1920), bool)
    for x0, y0, x1, y1 in grid.boxes:
        assert (y1 - y0, x1 - x0) == (512, 640)
        cover[y0:y1, x0:x1] = True
    assert cover.all()
    assert not grid.tile_larger_than_image


def test_an_image_smaller_than_the_tile_is_one_tile_said_once() -> None:
    grid = tile_grid((300, 400), (512, 512), (0.2, 0.2))
    assert grid.boxes.tolist() == [[0, 0, 400, 300]]
    assert grid.tile_larger_than_image
    wide = tile_grid((300, 1000), (512, 512), (0.2, 0.2))  # smaller in one dimension only
    assert len(wide) == 3 and wide.tile_larger_than_image


@pytest.mark.parametrize("overlap", [(1.0, 0.2), (0.2, -0.1)])
def test_tile_grid_refuses_bad_overlap(overlap: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_grid((100, 100), (50, 50), overlap)


def test_tile_views_are_views_not_copies() -> None:
    image = np.arange(580 * 1068 * 3, dtype=np.uint32).astype(np.uint8).reshape(580, 1068, 3)
    grid = tile_grid(image.shape[:2], (512, 512), (0.2, 0.2))
    views = tile_views(image, grid)
    assert len(views) == 6
    for (x0, y0, x1, y1), view in zip(grid.boxes.tolist(), views, strict=True):
        assert np.shares_memory(view, image)
        assert view.shape == (y1 - y0, x1 - x0, 3)
        np.testing.assert_array_equal(view, image[y0:y1, x0:x1])
    with pytest.raises(ValueError, match="grid was made for"):
        tile_views(image[:100], grid)


# -- the merges ------------------------------------------------------------------------------------------------

#: seed -> (xyxy, scores, class ids): 14 boxes with tied scores and an exact duplicate (rows 2 and 3).
MERGE_INPUTS = {
    0: (
        [
            [51,38,83,69], [30,16,65,29], [18,2,28,37], [18,2,28,37], [10,48,20,65], [38,54,61,75], [30,36,50,44],
            [58,43,66,54], [37,32,45,61], [33,56,57,84], [16,48,32,75], [40,0,72,20], [23,51,45,90], [33,2,66,41],
        ],
        [0.5, 0.7, 0.9, 0.7, 0.9, 0.7, 0.7, 0.5, 0.9, 0.3, 0.5, 0.7, 0.9, 0.5],
        [0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0],
    ),
    1: (
        [
            [28,30,39,47], [45,57,56,79], [2,8,41,20], [2,8,41,20], [14,18,50,32], [52,25,76,41], [16,49,24,81],
            [15,24,24,40], [38,32,61,55], [5,1,16,40], [51,45,82,83], [50,32,60,63], [49,19,66,44], [27,47,64,63],
        ],
        [0.7, 0.3, 0.5, 0.9, 0.5, 0.5, 0.5, 0.3, 0.5, 0.7, 0.5, 0.7, 0.5, 0.7],
        [1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1],
    ),
    2: (
        [
            [50,15,88,36], [6,17,21,45], [24,48,61,86], [24,48,61,86], [20,36,40,56], [48,43,57,56], [59,11,77,30],
            [52,3,78,27], [33,16,63,52], [12,39,48,71], [18,33,57,51], [15,9,52,46], [44,25,59,48], [40,40,66,70],
        ],
        [0.7, 0.3, 0.5, 0.3, 0.9, 0.5, 0.5, 0.9, 0.5, 0.7, 0.5, 0.9, 0.5, 0.7],
        [0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1],
    ),
}
# (seed, merge, metric, class_agnostic): SAHI's keep -> [merged] plan, in SAHI's order
SAHI_PLANS = {
    (0, 'nms', 'ios', True): {4: [], 2: [], 12: [], 8: [], 1: [], 6: [], 5: [], 11: [], 0: []},
    (0, 'nms', 'ios', False): {2: [], 12: [], 4: [], 8: [], 1: [], 6: [], 5: [], 11: [], 0: [], 10: [], 7: []},
    (0, 'nms', 'iou', True):
        {4: [], 2: [], 12: [], 8: [], 1: [], 6: [], 5: [], 11: [], 10: [], 13: [], 0: [], 7: [], 9: []},
    (0, 'nms', 'iou', False):
        {2: [], 12: [], 4: [], 8: [], 1: [], 6: [], 5: [], 11: [], 13: [], 0: [], 10: [], 7: [], 9: []},
    (0, 'greedynmm', 'ios', True): {4: [], 2: [3], 12: [10, 9], 8: [], 1: [13], 6: [], 5: [], 11: [], 0: [7]},
    (0, 'greedynmm', 'ios', False):
        {2: [3], 12: [9], 1: [13], 6: [], 0: [], 4: [], 8: [], 5: [], 11: [], 10: [], 7: []},
    (0, 'greedynmm', 'iou', True):
        {4: [], 2: [3], 12: [], 8: [], 1: [], 6: [], 5: [], 11: [], 10: [], 13: [], 0: [], 7: [], 9: []},
    (0, 'greedynmm', 'iou', False):
        {2: [3], 12: [], 1: [], 6: [], 13: [], 0: [], 9: [], 4: [], 8: [], 5: [], 11: [], 10: [], 7: []},
    (0, 'nmm', 'ios', True): {4: [], 2: [3], 12: [9, 10], 8: [], 1: [13], 6: [], 5: [], 11: [], 0: [], 7: []},
    (0, 'nmm', 'ios', False): {2: [3], 12: [9], 1: [13], 6: [], 0: [], 4: [], 8: [], 5: [], 11: [], 10: [], 7: []},
    (0, 'nmm', 'iou', True):
        {4: [], 2: [3], 12: [], 8: [], 1: [], 6: [], 5: [], 11: [], 10: [], 13: [], 0: [], 7: [], 9: []},
    (0, 'nmm', 'iou', False):
        {2: [3], 12: [], 1: [], 6: [], 13: [], 0: [], 9: [], 4: [], 8: [], 5: [], 11: [], 10: [], 7: []},
    (1, 'nms', 'ios', True): {3: [], 9: [], 13: [], 0: [], 4: [], 6: [], 8: [], 12: [], 10: [], 1: []},
    (1, 'nms', 'ios', False): {3: [], 9: [], 13: [], 0: [], 8: [], 10: [], 4: [], 6: [], 12: [], 7: [], 1: []},
    (1, 'nms', 'iou', True):
        {3: [], 9: [], 13: [], 0: [], 11: [], 4: [], 6: [], 8: [], 12: [], 10: [], 5: [], 7: [], 1: []},
    (1, 'nms', 'iou', False):
        {3: [], 9: [], 13: [], 0: [], 11: [], 8: [], 10: [], 4: [], 6: [], 12: [], 5: [], 7: [], 1: []},
    (1, 'greedynmm', 'ios', True): {3: [2], 9: [], 13: [11], 0: [], 4: [7], 6: [], 8: [], 12: [5], 10: [], 1: []},
    (1, 'greedynmm', 'ios', False):
        {3: [2], 9: [], 8: [], 10: [], 7: [], 13: [11], 0: [], 4: [], 6: [], 12: [5], 1: []},
    (1, 'greedynmm', 'iou', True):
        {3: [2], 9: [], 13: [], 0: [], 11: [], 4: [], 6: [], 8: [], 12: [], 10: [], 5: [], 7: [], 1: []},
    (1, 'greedynmm', 'iou', False):
        {3: [2], 9: [], 8: [], 10: [], 7: [], 13: [], 0: [], 11: [], 4: [], 6: [], 12: [], 5: [], 1: []},
    (1, 'nmm', 'ios', True): {3: [2], 9: [], 13: [], 0: [], 11: [8, 10], 4: [7], 6: [], 12: [], 5: [], 1: []},
    (1, 'nmm', 'ios', False):
        {3: [2], 9: [], 8: [], 10: [], 7: [], 13: [], 0: [], 11: [], 4: [], 6: [], 12: [], 5: [], 1: []},
    (1, 'nmm', 'iou', True):
        {3: [2], 9: [], 13: [], 0: [], 11: [], 4: [], 6: [], 8: [], 12: [], 10: [], 5: [], 7: [], 1: []},
    (1, 'nmm', 'iou', False):
        {3: [2], 9: [], 8: [], 10: [], 7: [], 13: [], 0: [], 11: [], 4: [], 6: [], 12: [], 5: [], 1: []},
    (2, 'nms', 'ios', True): {11: [], 7: [], 9: [], 13: [], 12: [], 1: []},
    (2, 'nms', 'ios', False): {11: [], 7: [], 9: [], 0: [], 13: [], 8: [], 1: []},
    (2, 'nms', 'iou', True):
        {11: [], 4: [], 7: [], 9: [], 13: [], 0: [], 10: [], 2: [], 8: [], 12: [], 5: [], 6: [], 1: []},
    (2, 'nms', 'iou', False):
        {11: [], 4: [], 7: [], 9: [], 0: [], 13: [], 10: [], 8: [], 12: [], 6: [], 2: [], 5: [], 1: []},
    (2, 'greedynmm', 'ios', True): {11: [4, 10, 8], 7: [0, 6], 9: [], 13: [2, 5, 3], 12: [], 1: []},
    (2, 'greedynmm', 'ios', False): {9: [10], 0: [6], 8: [12], 1: [], 11: [4], 7: [], 13: [2, 5, 3]},
    (2, 'greedynmm', 'iou', True):
        {11: [], 4: [], 7: [], 9: [], 13: [], 0: [], 10: [], 2: [3], 8: [], 12: [], 5: [], 6: [], 1: []},
    (2, 'greedynmm', 'iou', False):
        {9: [], 0: [], 10: [], 8: [], 12: [], 6: [], 1: [], 11: [], 4: [], 7: [], 13: [], 2: [3], 5: []},
    (2, 'nmm', 'ios', True): {11: [8, 10], 4: [9], 7: [0, 6], 13: [2, 3, 5], 12: [], 1: []},
    (2, 'nmm', 'ios', False): {9: [10], 0: [6], 8: [], 12: [], 1: [], 11: [], 4: [], 7: [], 13: [2, 3, 5]},
    (2, 'nmm', 'iou', True):
        {11: [], 4: [], 7: [], 9: [], 13: [], 0: [], 10: [], 2: [3], 8: [], 12: [], 5: [], 6: [], 1: []},
    (2, 'nmm', 'iou', False):
        {9: [], 0: [], 10: [], 8: [], 12: [], 6: [], 1: [], 11: [], 4: [], 7: [], 13: [], 2: [3], 5: []},
}


@pytest.mark.parametrize("key", list(SAHI_PLANS), ids=[f"{k[0]}-{k[1]}-{k[2]}-{'agn' if k[3] else 'cls'}"
                                                     for k in SAHI_PLANS])
def test_plan_is_sahis_in_order(key: tuple[int, str, str, bool]) -> None:
    seed, merge, metric, agnostic = key
    boxes, scores, classes = MERGE_INPUTS[seed]
    plan = plan_merge(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes), merge=merge,
                      metric=metric, threshold=0.5, class_agnostic=agnostic)
    assert list(plan.items()) == list(SAHI_PLANS[key].items())


def test_score_order_breaks_ties_by_coordinates_then_row() -> None:
    boxes = np.array([[5, 0, 9, 9], [1, 0, 9, 9], [1, 0, 9, 9], [0, 0, 1, 1]], np.float32)
    scores = np.array([0.5, 0.5, 0.5, 0.9], np.float32)
    assert score_order(boxes, scores).tolist() == [3, 1, 2, 0]


def test_overlap_matrix_ios_and_iou() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 5, 10], [20, 20, 20, 30]], np.float32)
    ios, iou = overlap_matrix(boxes, "ios"), overlap_matrix(boxes, "iou")
    assert ios.dtype == np.float32
    assert ios[0, 1] == pytest.approx(1.0) and iou[0, 1] == pytest.approx(0.5)
    assert ios[2, 2] == 0 and iou[0, 2] == 0  # a zero-area box matches nothing


def test_greedy_merge_unions_boxes_keeps_max_score_and_its_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [2, 2, 14, 12], [100, 100, 110, 110]], np.float32)
    scores = np.array([0.6, 0.8, 0.3], np.float32)
    classes = np.array([1, 1, 1])
    plan = plan_merge(boxes, scores, classes)
    assert plan == {1: [0], 2: []}
    merged = apply_merge(plan, boxes, scores, classes)
    np.testing.assert_allclose(merged.xyxy, [[0, 0, 14, 12], [100, 100, 110, 110]])
    np.testing.assert_allclose(merged.confidence, [0.8, 0.3])
    assert merged.groups == [[1, 0], [2]] and merged.keepers.tolist() == [1, 2]


def test_class_agnostic_merge_takes_the_class_of_the_higher_score_and_the_absorbed_one_on_a_tie() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
    merged = apply_merge(plan_merge(boxes, np.array([0.9, 0.5]), np.array([3, 7]), class_agnostic=True),
                         boxes, np.array([0.9, 0.5]), np.array([3, 7]))
    assert merged.class_id.tolist() == [3]
    tied = apply_merge(plan_merge(boxes, np.array([0.5, 0.5]), np.array([3, 7]), class_agnostic=True),
                       boxes, np.array([0.5, 0.5]), np.array([3, 7]))
    # equal scores: row 0 ranks first (smaller x1) and keeps; SAHI takes the class of the absorbed one on a tie
    assert tied.groups == [[0, 1]] and tied.class_id.tolist() == [7]


def test_per_class_merge_never_mixes_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores, classes = np.array([0.9, 0.8]), np.array([0, 1])
    assert plan_merge(boxes, scores, classes) == {0: [], 1: []}
    assert plan_merge(boxes, scores, classes, class_agnostic=True) == {0: [1]}


def test_nmm_drops_a_transitive_member_that_no_longer_matches_the_merged_keeper() -> None:
    # A-B match, B-C match, A-C do not: NMM plans {A: [B, C]}; SAHI's apply re-checks each against the merged
    # box with IOU, and C (far right of the A+B union) fails: it is neither kept nor merged.
    boxes = np.array([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]], np.float32)
    scores, classes = np.array([0.9, 0.8, 0.7]), np.zeros(3, int)
    plan = plan_merge(boxes, scores, classes, merge="nmm", metric="iou", threshold=0.4)
    assert plan == {0: [1, 2]}
    merged = apply_merge(plan, boxes, scores, classes, metric="iou", threshold=0.4)
    assert merged.groups == [[0, 1]]
    np.testing.assert_allclose(merged.xyxy, [[0, 0, 14, 10]])
    greedy = plan_merge(boxes, scores, classes, merge="greedynmm", metric="iou", threshold=0.4)
    assert greedy == {0: [1], 2: []}


def test_nms_keeps_per_class_winners_sorted_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores, classes = np.array([0.5, 0.4, 0.3, 0.95]), np.array([0, 0, 0, 1])
    plan = plan_merge(boxes, scores, classes, merge="nms")
    assert list(plan) == [3, 0, 2] and all(v == [] for v in plan.values())
    merged = apply_merge(plan, boxes, scores, classes)
    assert merged.groups == [[3], [0], [2]]


def test_rotated_boxes_plan_with_probiou() -> None:
    # Two crossing thin rotated boxes: their axis-aligned boxes coincide (ios 1), their probiou is low.
    xywhr = np.array([[50, 50, 100, 10, np.pi / 4], [50, 50, 100, 10, -np.pi / 4]], np.float64)
    aabb = np.array([[11, 11, 89, 89], [11, 11, 89, 89]], np.float32)
    scores, classes = np.array([0.9, 0.8]), np.zeros(2, int)
    assert plan_merge(aabb, scores, classes, merge="nms") == {0: []}  # SAHI 0.12.8: axis-aligned
    assert plan_merge(aabb, scores, classes, merge="nms", rotated=xywhr) == {0: [], 1: []}


def test_plan_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="merge must be one of"):
        plan_merge(np.zeros((1, 4)), np.ones(1), np.zeros(1), merge="wbf")
    with pytest.raises(ValueError, match="metric must be one of"):
        plan_merge(np.zeros((1, 4)), np.ones(1), np.zeros(1), metric="giou")
    assert plan_merge(np.zeros((0, 4)), np.zeros(0), np.zeros(0)) == {}


def test_merge_masks_ors_the_group_into_one_crop() -> None:
    a = np.ones((2, 3), bool)
    b = np.zeros((3, 2), bool)
    b[2, 1] = True
    masks = Masks((10, 10), np.array([[1, 1], [3, 2], [8, 8]]), [a, b, np.ones((1, 1), bool)])
    merged = merge_masks(masks, [[0, 1], [2]])
    assert len(merged) == 2 and merged.image_shape == (10, 10)
    expected = masks.mask(0) | masks.mask(1)
    np.testing.assert_array_equal(merged.mask(0), expected)
    np.testing.assert_array_equal(merged.mask(1), masks.mask(2))
    assert merged.boxes[0].tolist() == [1, 1, 5, 5]
