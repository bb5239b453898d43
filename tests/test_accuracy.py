"""Detections agree with Ultralytics' own predictions on coco96 (issue 2's criterion)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.matching import matched_fraction


def _ref_arrays(pred: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.asarray(pred["xyxy"], np.float32).reshape(-1, 4),
        np.asarray(pred["conf"], np.float32),
        np.asarray(pred["cls"], np.int32),
    )


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_matches_ultralytics_reference(which, shared, fp32_detector, int8_detector):
    det = fp32_detector if which == "fp32" else int8_detector
    model_dir = shared.fp32_model if which == "fp32" else shared.int8_model
    reference = shared.reference_model(model_dir)["predictions"]
    ours_to_ref = [0, 0]
    ref_to_ours = [0, 0]
    for image in shared.coco96_images:
        result = det(image)
        ours = (result.xyxy, result.confidence, result.class_id)
        ref = _ref_arrays(reference[image.name])
        for acc, (a, b) in ((ours_to_ref, (ours, ref)), (ref_to_ours, (ref, ours))):
            m, n = matched_fraction(a, b)
            acc[0] += m
            acc[1] += n
    assert ours_to_ref[1] > 300 and ref_to_ours[1] > 300, "too few detections to judge"
    assert ours_to_ref[0] / ours_to_ref[1] >= 0.99, f"ours->reference matched {ours_to_ref}"
    assert ref_to_ours[0] / ref_to_ours[1] >= 0.99, f"reference->ours matched {ref_to_ours}"
