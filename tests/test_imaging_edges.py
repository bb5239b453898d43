"""Letterbox at the edges of what an image can be: slivers keep at least one pixel."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_ov.imaging.letterbox import letterbox, letterbox_geometry


@pytest.mark.parametrize(("hw", "target"), [((8, 5000), (64, 64)), ((5000, 8), (64, 64)), ((1, 10000), (640, 640)),
                                            ((3, 4000), (32, 96))])
def test_a_sliver_letterboxes_to_at_least_one_pixel(hw, target):
    frame, geo = letterbox(np.full((*hw, 3), 200, np.uint8), target)
    assert frame.shape == (*target, 3)
    assert min(geo.resized) >= 1
    assert (frame == 200).any()  # the image is in the frame, not only padding


@pytest.mark.parametrize(("hw", "target", "resized"), [((480, 640), (640, 640), (480, 640)),
                                                        ((1080, 1920), (384, 640), (360, 640)),
                                                        ((640, 427), (640, 640), (640, 427))])
def test_ordinary_sizes_round_as_ultralytics(hw, target, resized):
    assert letterbox_geometry(hw, target).resized == resized
