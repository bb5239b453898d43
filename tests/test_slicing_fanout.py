"""Sliced inference through the pipeline (``SliceFanOut``) on the fake engine: no model, fast tier.

The concurrent paths (the latency call with one image's tiles in flight at
once, a stream interleaving the tiles of many images, ``submit``) must give
exactly what the sequential reference ``predict_sliced`` gives on the same
detector, for every merge.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.fakes import fake_detector
from yolo_ov import ConfigError, Detections, SliceConfig
from yolo_ov.pipeline.slicing import SliceFanOut, plan_tiles, predict_sliced


def patchwork(hw: tuple[int, int], seed: int, block: int = 24) -> np.ndarray:
    """An image of grey blocks: every tile (and the full pass) sees a different mean, so a different box."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, ((hw[0] + block - 1) // block, (hw[1] + block - 1) // block), dtype=np.uint8)
    image = np.repeat(np.repeat(cells, block, 0), block, 1)[:hw[0], :hw[1]]
    return np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2))


def same(a: Detections, b: Detections) -> None:
    assert a.image_shape == b.image_shape
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    np.testing.assert_array_equal(a.class_id, b.class_id)
    assert a.slices == b.slices


MERGES = [SliceConfig(size=64, overlap=0.2, merge=m, metric=k, threshold=t)
          for m in ("greedynmm", "nmm", "nms") for k, t in (("ios", 0.5), ("iou", 0.1))]


@pytest.mark.parametrize("cfg", MERGES, ids=lambda c: f"{c.merge}-{c.metric}")
def test_concurrent_latency_path_equals_the_sequential_reference(cfg: SliceConfig) -> None:
    images = [patchwork((150, 200), 1), patchwork((64, 300), 2), patchwork((130, 130), 3)]
    with fake_detector(delay_s=0.002) as det:
        for image in images:
            reference = predict_sliced(det, image, cfg)
            concurrent = det(image, fanout=SliceFanOut(cfg))
            same(concurrent, reference)
            assert len(concurrent) >= 1 and concurrent.slices == len(plan_tiles(image.shape[:2], cfg)[0])


@pytest.mark.parametrize("cfg", MERGES[::2], ids=lambda c: f"{c.merge}-{c.metric}")
def test_stream_and_submit_equal_the_reference(cfg: SliceConfig) -> None:
    images = [patchwork((150, 200), s) for s in range(6)] + [patchwork((40, 50), 9)]
    with fake_detector(mode="throughput", delay_s=0.002) as det:
        reference = [predict_sliced(det, image, cfg) for image in images]
        fanout = SliceFanOut(cfg)
        streamed = list(det.stream(images, fanout=fanout))
        futures = [det.submit(image, fanout=fanout) for image in images]
        submitted = [f.result(timeout=30) for f in futures]
    for ref, got, sub in zip(reference, streamed, submitted, strict=True):
        same(got, ref)
        same(sub, ref)


def test_split_gives_views_and_one_full_pass_only_when_there_are_several_tiles() -> None:
    fan = SliceFanOut(SliceConfig(size=64, overlap=0.2))
    image = patchwork((150, 200), 0)
    parts = fan.split(image, (150, 200))
    grid, full = plan_tiles((150, 200), fan.cfg)
    assert full and len(parts) == len(grid) + 1
    assert all(np.shares_memory(p.image, image) for p in parts)  # views: no pixel copied
    assert parts[-1].image.shape == image.shape and parts[-1].offset == (0, 0)
    assert [p.offset for p in parts[:-1]] == [tuple(o) for o in grid.offsets.tolist()]
    one = fan.split(image[:64, :64], (64, 64))
    assert len(one) == 1  # one tile: the full pass would run the same pixels twice
    assert len(SliceFanOut(SliceConfig(size=64, full_pass=False)).split(image, (150, 200))) == len(grid)


def test_a_tile_larger_than_the_image_is_one_tile_said_once(caplog: pytest.LogCaptureFixture) -> None:
    cfg = SliceConfig(size=512)
    with fake_detector() as det, caplog.at_level(logging.WARNING, logger="yolo_ov"):
        fan = SliceFanOut(cfg)
        results = [det(patchwork((100, 120), s), fanout=fan) for s in range(3)]
        plain = det(patchwork((100, 120), 0))
    assert [r.slices for r in results] == [1, 1, 1]
    same_boxes = results[0].xyxy.tolist() == plain.xyxy.tolist()
    assert same_boxes and len(results[0]) == len(plain)  # one tile, no duplicate full pass: the plain answer
    warnings = [r.getMessage() for r in caplog.records if "larger than" in r.getMessage()]
    assert len(warnings) == 1 and "512x512" in warnings[0]


def test_slices_is_written_in_the_jsonl_record() -> None:
    with fake_detector() as det:
        result = det(patchwork((150, 200), 4), fanout=SliceFanOut(SliceConfig(size=64)))
        plain = det(patchwork((150, 200), 4))
    assert result.to_dict()["slices"] == 12 and '"slices":12' in result.to_json()
    assert "slices" not in plain.to_dict()
    assert result[:1].slices == 12  # indexing keeps it


def test_the_fanout_refuses_what_is_not_a_slice_config() -> None:
    with pytest.raises(ConfigError, match="SliceConfig"):
        SliceFanOut(640)  # type: ignore[arg-type]


# -- Detector(slicing=...) and the per-call override ---------------------------------------
def classifier():
    from yolo_ov import Detector
    from yolo_ov.runtime.engine import FakeEngine
    from yolo_ov.runtime.model import HeadType, ModelInfo, TensorSpec

    info = ModelInfo(path=__import__("pathlib").Path("cls/fake.xml"), names={0: "a", 1: "b"}, names_source="test",
                     imgsz=(64, 64), stride=32, task="classify", head=HeadType.RAW,
                     inputs=(TensorSpec("images", "[1,3,64,64]"),), outputs=(TensorSpec("output0", "[1,2]"),),
                     batch=1)
    engine = FakeEngine(lambda b: [np.tile(np.array([[0.3, 0.7]], np.float32), (b.shape[0], 1))], input_hw=(64, 64))
    return Detector, engine, info


def test_detector_slicing_is_the_default_of_every_path_and_each_call_may_override_it() -> None:
    from tests.fakes import fake_engine, fake_info
    from yolo_ov import Detector, RuntimeConfig

    cfg = SliceConfig(size=64, overlap=0.2)
    image = patchwork((150, 200), 5)
    with fake_detector() as plain:
        reference = predict_sliced(plain, image, cfg)
        unsliced = plain(image)
        assert plain(image, slicing=cfg).slices == 12
    with Detector.from_engine(fake_engine(), fake_info(), runtime=RuntimeConfig(mode="throughput"),
                              slicing=cfg) as det:
        same(det(image), reference)
        same(next(iter(det.iter_predict([image]))), reference)
        same(det.submit(image).result(timeout=30), reference)
        with det.stream([image, image]) as run:
            for result in run:
                same(result, reference)
        off = det(image, slicing=False)  # the per-call override: no slicing for this call
        assert off.slices is None and off.xyxy.tolist() == unsliced.xyxy.tolist()
        other = det(image, slicing=SliceConfig(size=100, overlap=0.1, full_pass=False))
        assert other.slices == len(plan_tiles((150, 200), SliceConfig(size=100, overlap=0.1))[0])


def test_classification_refuses_slicing_in_one_line() -> None:
    Detector, engine, info = classifier()
    with pytest.raises(ConfigError, match="classification model cannot be sliced") as err:
        Detector.from_engine(engine, info, slicing=SliceConfig(size=32))
    assert "\n" not in str(err.value) and engine.closed
    Detector, engine, info = classifier()
    with Detector.from_engine(engine, info) as det:
        assert det(patchwork((64, 64), 0)).top1 in (0, 1)
        with pytest.raises(ConfigError, match="classification model cannot be sliced"):
            det(patchwork((64, 64), 0), slicing=SliceConfig(size=32))


def test_bad_slicing_arguments_are_one_line_each() -> None:
    with fake_detector() as det:
        with pytest.raises(ConfigError, match="must be a SliceConfig"):
            det(patchwork((64, 64), 0), slicing=640)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="not both"):
            det(patchwork((64, 64), 0), slicing=SliceConfig(), fanout=SliceFanOut(SliceConfig()))
    for kwargs, match in [({"size": 0}, "slice"), ({"overlap": 1.0}, "overlap"), ({"overlap": -0.1}, "overlap"),
                          ({"merge": "wbf"}, "merge"), ({"metric": "giou"}, "metric"), ({"threshold": 2}, "threshold")]:
        with pytest.raises(ConfigError, match=match) as err:
            SliceConfig(**kwargs)
        assert "\n" not in str(err.value)


def test_a_slicing_detector_tracks_on_its_sliced_detections() -> None:
    from tests.fakes import fake_engine, fake_info
    from yolo_ov import Detector, RuntimeConfig

    cfg = SliceConfig(size=64)
    frame = patchwork((150, 200), 1)
    with fake_detector() as plain:
        reference = predict_sliced(plain, frame, cfg)
    with Detector.from_engine(fake_engine(), fake_info(), runtime=RuntimeConfig(mode="throughput"),
                              slicing=cfg) as det, det.track([frame] * 4) as run:
        results = list(run)
    assert [r.slices for r in results] == [12] * 4
    assert all(len(r) == len(reference) for r in results)
    assert results[-1].data["track_id"].tolist() == results[0].data["track_id"].tolist()  # the same objects


def test_an_image_with_nothing_found_is_an_empty_result_not_none() -> None:
    """An empty merged result is falsy; the latency fan-out must still return it (it returned ``None``)."""
    from yolo_ov import DetectConfig

    cfg = SliceConfig(size=64, overlap=0.2)
    with fake_detector(delay_s=0.001) as det:
        found = det(patchwork((150, 200), 1), slicing=cfg, detect=DetectConfig(conf=1.0))
    assert isinstance(found, Detections) and len(found) == 0 and found.image_shape == (150, 200)
    assert found.slices == len(plan_tiles((150, 200), cfg)[0])
