"""Shape specialisation decides from what a source says up front whether a shape can pay for itself.

A video file reports its frame count and size before a frame is decoded; a
clip too short to repay compiling its own shape stays at the model's own
shape under ``specialize="auto"`` (issue 13, item 1). Fake-engine tests for
the decision, real files for the probe, one real model for the end to end.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_ov import DetectConfig, Detections, Detector, FakeEngine
from yolo_ov.heads import Head
from yolo_ov.imaging.letterbox import Letterbox
from yolo_ov.io.sources import FrameSource, SourceItem, open_source, probe_videos
from yolo_ov.pipeline import Pipeline, PipelineConfig
from yolo_ov.pipeline.payoff import COMPILE_COST_FRAMES, saving, shape_pays_off, video_shape_pays_off
from yolo_ov.runtime.model import HeadType, ModelInfo, TensorSpec

BASE = (640, 640)
WIDE = (360, 640)  # a 16:9 frame: its own shape is 384x640, 40% less area than 640x640


class _Head(Head):
    task = "detect"

    def decode(self, outputs: Sequence[np.ndarray], geo: Letterbox, cfg: DetectConfig) -> Detections:
        return Detections.empty(names=self.names, image_shape=geo.original)


def _info() -> ModelInfo:
    return ModelInfo(path=Path("fake.xml"), names={0: "thing"}, names_source="test", imgsz=BASE, stride=32,
                     task="detect", head=HeadType.RAW, inputs=(TensorSpec("images", "[1,3,640,640]"),),
                     outputs=(TensorSpec("output0", "[1,1]"),), batch=1)


def _video(frames: int, declared: int | None, hw: tuple[int, int] = WIDE) -> FrameSource:
    items = [SourceItem(np.full((*hw, 3), 7, np.uint8), "clip", 0, i) for i in range(frames)]
    return FrameSource(items, video=True, probe=lambda: (declared, hw if declared is not None else None))


class _Compiles:
    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, shape: tuple[int, int]) -> FakeEngine:
        with self.lock:
            self.shapes.append(shape)
        return FakeEngine(input_hw=shape)


@pytest.mark.parametrize(("frames", "shape", "pays"), [
    (None, (384, 640), True),      # a camera or an iterable: unknown length, assumed long
    (20, (384, 640), False),       # the 20-frame 1080p clip: 8 frames of saving
    (100, (384, 640), False),      # 40 frames of saving < 50
    (200, (384, 640), True),
    (341, (384, 640), True),       # walking_720p
    (10_000, (640, 640), False),   # no saving at all
    (300, (480, 640), True),       # 4:3: 25% less area
    (150, (480, 640), False),
])
def test_shape_pays_off_table(frames, shape, pays):
    assert shape_pays_off(frames, shape, BASE) is pays


def test_the_threshold_is_frames_times_the_area_saved():
    assert saving((384, 640), BASE) == pytest.approx(0.4)
    needed = COMPILE_COST_FRAMES / 0.4
    assert not shape_pays_off(int(needed), (384, 640), BASE)
    assert shape_pays_off(int(needed) + 1, (384, 640), BASE)


def test_nothing_to_compile_always_pays():
    assert video_shape_pays_off(5, WIDE, BASE, 32, compiled=[BASE, (384, 640)])  # already compiled
    assert video_shape_pays_off(5, (640, 640), BASE, 32, compiled=[BASE])  # square video: the base shape
    assert video_shape_pays_off(5, None, BASE, 32, compiled=[BASE])  # size unknown: as before the rule
    assert not video_shape_pays_off(5, WIDE, BASE, 32, compiled=[BASE])


def test_short_video_stays_square_by_default_and_compiles_nothing():
    made = _Compiles()
    with Pipeline(FakeEngine(input_hw=BASE), _Head(_info()), make_engine=made) as pipe:
        short = _video(8, declared=20)
        assert pipe.specialisation_mode(short) == "off"
        run = pipe.stream(short)
        assert len(list(run)) == 8
        assert run.stats.shapes == {"640x640": 8}
        assert pipe.wait_compiled() == [BASE]
    assert made.shapes == []


def test_long_video_is_specialised():
    made = _Compiles()
    with Pipeline(FakeEngine(input_hw=BASE), _Head(_info()), make_engine=made) as pipe:
        long = _video(8, declared=5_000)
        assert pipe.specialisation_mode(long) == "exact"
        list(pipe.stream(long))
        assert pipe.wait_compiled() == [BASE, (384, 640)]
        # Once the shape exists, even a short clip of that size uses it: nothing is left to pay.
        short = _video(8, declared=20)
        assert pipe.specialisation_mode(short) == "exact"
        run = pipe.stream(short)
        list(run)
        assert run.stats.shapes == {"384x640": 8}
    assert made.shapes == [(384, 640)]


def test_unknown_length_and_explicit_on_are_specialised():
    for source, config in ((_video(4, declared=None), PipelineConfig()),
                           (_video(4, declared=20), PipelineConfig(specialize="on"))):
        made = _Compiles()
        with Pipeline(FakeEngine(input_hw=BASE), _Head(_info()), make_engine=made, config=config) as pipe:
            assert pipe.specialisation_mode(source) == "exact"
            list(pipe.stream(source))
            pipe.wait_compiled()
        assert made.shapes == [(384, 640)]


def test_off_is_off_whatever_the_length():
    made = _Compiles()
    with Pipeline(FakeEngine(input_hw=BASE), _Head(_info()), make_engine=made,
                  config=PipelineConfig(specialize="off")) as pipe:
        assert pipe.specialisation_mode(_video(4, declared=100_000)) == "off"


def test_video_files_report_frames_and_size(shared, tmp_path):
    walking = shared.video("walking_720p.mp4")
    src = open_source(str(walking))
    assert (src.expected_frames, src.frame_hw) == (341, (720, 1280))
    clip = tmp_path / "c.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(7):
        writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    assert probe_videos([str(clip)]) == (7, (240, 320))
    # Several files: frames add up; sizes differ, so no common size.
    assert probe_videos([str(walking), str(clip)]) == (348, None)
    assert probe_videos([str(tmp_path / "missing.mp4")]) == (None, None)
    # Images, cameras and iterables do not say.
    assert open_source(str(shared.coco96)).expected_frames is None
    assert open_source([np.zeros((8, 8, 3), np.uint8)]).frame_hw is None


def test_short_real_clip_runs_at_the_models_shape(shared):
    """The 20-frame 1080p clip: never worth a compile, so no second shape is compiled."""
    clip = shared.video("traffic_1080p_20frames.mp4")
    with Detector(shared.int8_model, mode="throughput") as det:
        run = det.stream(str(clip))
        results = list(run)
        assert len(results) == 20 and all(r.image_shape == (1080, 1920) for r in results)
        assert run.stats.shapes == {"640x640": 20}
        assert det.pipeline().wait_compiled() == [(640, 640)]
