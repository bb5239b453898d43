"""``tritonclient.grpc`` against a real ``yolo-ov serve --grpc-port`` agrees with Ultralytics on coco96 (issue 23).

All 96 coco96 JPEGs go over gRPC (``BYTES``, one image per request, 4 in
flight) to one server process holding the detect model (the shared yolov8n
FP32 IR) and the segment model (yolo11n-seg INT8); the answers are matched
both ways with Ultralytics' own predictions in ``../shared`` (same class, IoU
>= 0.9, confidence within 0.05, detections with conf >= 0.3:
``tests.matching.matched_fraction``, as ``test_accuracy.py`` and
``test_tasks.py`` do): >= 0.99 of detections matched each way. The segment
model's masks (COCO RLE over gRPC) are compared with Ultralytics' polygons:
mean mask IoU >= 0.9 over matched detections, as ``test_tasks.py`` checks the
in-process result.

Same-machine rule: the FP32 IR runs at the CPU's default precision (bf16 on
AVX512-BF16 and AMX CPUs) as Ultralytics' reference run did, and holds 0.99 on
both kinds (see ``test_accuracy.STORED_REFERENCE_BOUND``); the segment
reference is the square-input entry, the same on every CPU.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from tests.matching import box_iou, matched_fraction
from tests.serve_support import ServerProcess

grpcclient = pytest.importorskip("tritonclient.grpc")

SEG = "yolo11n-seg_int8_openvino_model"
MIN_MATCHED = 0.99


@pytest.fixture(scope="module")
def grpc_server(shared, tmp_path_factory):
    """One server for the module: detect as ``det``, segment as ``seg``; its gRPC address."""
    seg = shared.task_model(SEG)
    proc = ServerProcess(["--model", f"det={shared.fp32_model}", "--model", f"seg={seg}", "--grpc-port", "0",
                          "--timeout-s", "60"], cache_dir=tmp_path_factory.getbasetemp() / "yolo-ov-cache").start()
    try:
        found = re.search(r"gRPC on (\S+:\d+) ", proc.output())
        assert found, proc.output()
        yield found.group(1)
    finally:
        assert proc.stop() == 0, proc.output()


def _answers(address: str, model: str, paths) -> dict[str, dict[str, np.ndarray]]:
    """Every image over gRPC, one per request, 4 in flight; outputs by image file name."""

    def one(path):
        with grpcclient.InferenceServerClient(address) as c:
            inp = grpcclient.InferInput("image", [1], "BYTES")
            inp.set_data_from_numpy(np.array([path.read_bytes()], dtype=np.object_))
            r = c.infer(model, [inp], client_timeout=120)
            n = int(r.as_numpy("num_detections")[0])
            out = {"xyxy": r.as_numpy("boxes")[0, :n].astype(np.float64),
                   "conf": r.as_numpy("scores")[0, :n].astype(np.float64),
                   "cls": r.as_numpy("classes")[0, :n].astype(np.int64)}
            if model == "seg":
                out["masks"] = [json.loads(v) for v in r.as_numpy("masks")[0, :n]]
            return path.name, out

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, paths))


def _ref(pred: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.asarray(pred["xyxy"], np.float64).reshape(-1, 4), np.asarray(pred["conf"], np.float64),
            np.asarray(pred["cls"], np.int64))


def _agreement(answers: dict[str, dict[str, np.ndarray]], reference: dict) -> tuple[list[int], list[int]]:
    ours_to_ref, ref_to_ours = [0, 0], [0, 0]
    for name, got in answers.items():
        ours, ref = (got["xyxy"], got["conf"], got["cls"]), _ref(reference[name])
        for acc, (a, b) in ((ours_to_ref, (ours, ref)), (ref_to_ours, (ref, ours))):
            m, n = matched_fraction(a, b)
            acc[0] += m
            acc[1] += n
    return ours_to_ref, ref_to_ours


def _assert_agrees(what: str, ours_to_ref: list[int], ref_to_ours: list[int]) -> None:
    print(f"\n[gRPC accuracy] {what}: gRPC -> Ultralytics {ours_to_ref[0]}/{ours_to_ref[1]}, "
          f"Ultralytics -> gRPC {ref_to_ours[0]}/{ref_to_ours[1]}")
    assert ours_to_ref[1] > 300 and ref_to_ours[1] > 300, f"{what}: too few detections to judge"
    assert ours_to_ref[0] / ours_to_ref[1] >= MIN_MATCHED, f"{what}: gRPC -> Ultralytics matched {ours_to_ref}"
    assert ref_to_ours[0] / ref_to_ours[1] >= MIN_MATCHED, f"{what}: Ultralytics -> gRPC matched {ref_to_ours}"


@pytest.mark.timeout(600)
def test_detect_over_grpc_matches_ultralytics(shared, grpc_server):
    images = shared.coco96_images
    assert len(images) == 96
    answers = _answers(grpc_server, "det", images)
    _assert_agrees("detect", *_agreement(answers, shared.reference_model(shared.fp32_model)["predictions"]))


@pytest.mark.timeout(600)
def test_segment_over_grpc_matches_ultralytics_boxes_and_masks(shared, grpc_server):
    mask_api = pytest.importorskip("faster_coco_eval.core.mask")
    images = shared.coco96_images
    reference = shared.tasks_reference()["models"][SEG]["predictions"]
    answers = _answers(grpc_server, "seg", images)
    _assert_agrees("segment", *_agreement(answers, reference))
    ious = []
    for name, got in answers.items():
        ref = reference[name]
        rb, rc, rk = _ref(ref)
        if not len(got["xyxy"]) or not len(rb):
            continue
        sim = box_iou(got["xyxy"], rb)
        for i in np.flatnonzero(got["conf"] >= 0.3):
            ok = (sim[i] >= 0.9) & (rk == got["cls"][i]) & (np.abs(rc - got["conf"][i]) <= 0.05)
            if not ok.any():
                continue
            j = int(np.argmax(np.where(ok, sim[i], -1)))
            rle = got["masks"][i]
            ours = mask_api.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
            theirs = np.zeros(ours.shape, np.uint8)
            polygon = np.asarray(ref["masks_xy"][j], np.float64)
            cv2.fillPoly(theirs, [np.round(polygon).astype(np.int32).reshape(-1, 1, 2)], 1)
            union = np.logical_or(ours, theirs).sum()
            ious.append(np.logical_and(ours, theirs).sum() / union if union else 1.0)
    print(f"[gRPC accuracy] segment: mean mask IoU {np.mean(ious):.4f} over {len(ious)} matched detections")
    assert len(ious) > 100
    assert np.mean(ious) >= 0.9, f"mean mask IoU {np.mean(ious):.3f} over {len(ious)} matched detections"
