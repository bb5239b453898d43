"""Sliced inference against SAHI's own results (model tier): ``../shared/data/sliced/sahi_reference_*.json``.

The references are what SAHI 0.12.8 returned with its Ultralytics backend on
the seven images of ``data/sliced`` (slice 512, overlap 0.2, conf 0.25,
GREEDYNMM / IOS 0.5, per class; ``../shared/README.md`` says exactly how),
made on an AMD EPYC Zen 4 (bf16 inference, this machine's kind). Matching is the
suite's (``tests/matching.py``): same class, IoU >= 0.9, confidence within 0.05,
for detections of confidence >= 0.3, counted both ways.

For the segmentation model two runs are scored (docs/slicing.md explains the
figures): yolo-ov's own (masks computed at original pixels; the full pass at
the detector's 640x640 input), and the same tiles with SAHI's full pass
emulated: SAHI's Ultralytics backend runs the dynamic-shape model's full pass at
Ultralytics' minimal rectangle (e.g. 384x640 for 1080p) and resizes the
input-sized mask, padding included, straight to the image size, which moves
full-pass masks (and so the merged boxes, which SAHI takes from the masks) by
up to 34 px (1080p).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.matching import box_iou, matched_fraction
from yolo_ov import Detections, Detector, SliceConfig
from yolo_ov.imaging.letterbox import letterbox_geometry, min_rect_shape
from yolo_ov.imaging.tiles import tile_views
from yolo_ov.ops.masks import Masks
from yolo_ov.pipeline.slicing import merge_parts, plan_tiles, predict_sliced

CFG = SliceConfig(size=512, overlap=0.2, full_pass=True, merge="greedynmm", metric="ios", threshold=0.5)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


MERGES = ("greedynmm", "nmm", "nms")
#: SAHI's NMM and NMS references, made by tests/make_sahi_slicing_references.py (same settings otherwise).
HERE = Path(__file__).parent / "data" / "sliced_sahi"


def _reference(shared: Any, name: str, merge: str = "greedynmm") -> dict[str, Any]:
    path = (shared.root / "data" / "sliced" / f"sahi_reference_{name}_512.json" if merge == "greedynmm"
            else HERE / f"sahi_reference_{name}_512_{merge}.json")
    if not path.exists():
        pytest.skip(f"no SAHI reference at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def _theirs(ref: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array(ref["xyxy"], np.float32).reshape(-1, 4), np.array(ref["conf"], np.float32),
            np.array(ref["cls"], np.int64))


def _mask_ious(ref: dict[str, Any], ours: Detections) -> list[float]:
    """Mask IoU of each SAHI object with its best same-class box match among ours (box IoU >= 0.5)."""
    h, w = ref["hw"]
    theirs = _theirs(ref)
    iou = box_iou(theirs[0], ours.xyxy) if len(ours) else np.zeros((len(theirs[0]), 0))
    out = []
    for j in range(len(theirs[0])):
        ok = (iou[j] >= 0.5) & (ours.class_id == theirs[2][j])
        if not ok.any():
            continue
        i = int(np.argmax(np.where(ok, iou[j], -1)))
        sahi = np.zeros((h, w), np.uint8)
        cv2.fillPoly(sahi, [np.array(p).reshape(-1, 2).round().astype(np.int32) for p in ref["segmentation"][j]], 1)
        mine = ours.data["masks"].mask(i)
        out.append(float((mine & sahi.astype(bool)).sum() / max((mine | sahi.astype(bool)).sum(), 1)))
    return out


def _score(name: str, results: dict[str, Detections], ref: dict[str, Any], det: Detector) -> tuple[float, float]:
    fwd = back = total_f = total_b = 0
    print(f"\n{name}: CPU {_cpu()}, inference precision {det.compiled_info.inference_precision}")
    for image, r in ref["images"].items():
        ours = results[image]
        a, b = matched_fraction((ours.xyxy, ours.confidence, ours.class_id), _theirs(r))
        c, d = matched_fraction(_theirs(r), (ours.xyxy, ours.confidence, ours.class_id))
        fwd, total_f, back, total_b = fwd + a, total_f + b, back + c, total_b + d
        print(f"  {image}: {ours.slices}/{r['slices']} tiles, {len(ours)}/{len(r['conf'])} detections, "  # type: ignore[attr-defined]
              f"ours->SAHI {a}/{b}, SAHI->ours {c}/{d}")
    print(f"  matched: ours->SAHI {fwd}/{total_f} = {fwd / total_f:.3f}, SAHI->ours {back}/{total_b} = "
          f"{back / total_b:.3f}")
    return fwd / total_f, back / total_b


class _Memo:
    """The detector, each distinct input (a tile view or the image) run once: the merges share the tiles."""

    def __init__(self, det: Detector) -> None:
        self.det, self.seen = det, {}

    def __call__(self, image: np.ndarray) -> Detections:
        key = (image.__array_interface__["data"][0], image.shape)
        if key not in self.seen:
            self.seen[key] = self.det(image)
        return self.seen[key]


def test_yolov8n_fp32_matches_sahi_for_every_merge(shared: Any) -> None:
    folder = shared.root / "data" / "sliced"
    refs = {merge: _reference(shared, "yolov8n", merge) for merge in MERGES}
    images = {name: cv2.imread(str(folder / name)) for name in refs["greedynmm"]["images"]}
    rates = {}
    with Detector(shared.fp32_model, mode="latency", conf=refs["greedynmm"]["conf"]) as det:
        memo = _Memo(det)
        for merge, ref in refs.items():
            cfg = SliceConfig(size=512, overlap=0.2, merge=merge, metric="ios", threshold=0.5)
            results = {name: predict_sliced(memo, pixels, cfg) for name, pixels in images.items()}
            for name, result in results.items():
                assert result.slices == ref["images"][name]["slices"]  # type: ignore[attr-defined]
            rates[merge] = _score(f"yolov8n FP32, {merge}", results, ref, det)
    for merge, (fwd, back) in rates.items():
        assert fwd >= 0.98 and back >= 0.98, merge


def _sahi_full_pass(det: Detections, input_hw: tuple[int, int]) -> Detections:
    """SAHI's full-pass masks: Ultralytics' ``input_hw`` mask (letterbox padding included) resized to the image."""
    h, w = det.image_shape
    geo = letterbox_geometry((h, w), input_hw)
    to_input = np.array([[geo.scale, 0, geo.pad_left], [0, geo.scale, geo.pad_top]], np.float32)
    crops = []
    for i in range(len(det)):
        mask = cv2.warpAffine(det.data["masks"].mask(i).astype(np.uint8), to_input, (input_hw[1], input_hw[0]),
                              flags=cv2.INTER_NEAREST)
        crops.append(cv2.resize(mask, (w, h)).astype(bool))
    data = {**det.data, "masks": Masks((h, w), np.zeros((len(det), 2), np.int64), crops)}
    return Detections(det.xyxy, det.confidence, det.class_id, det.names, (h, w), data=data)


def test_yolo11n_seg_int8_matches_sahi_for_every_merge(shared: Any) -> None:
    refs = {merge: _reference(shared, "yolo11n-seg", merge) for merge in MERGES}
    model = shared.root / "models" / refs["greedynmm"]["model"]
    if not model.exists():
        pytest.skip(f"no model at {model}")
    folder = shared.root / "data" / "sliced"
    rect: dict[tuple[int, int], Detector] = {}
    parts: dict[str, tuple[list[Detections], Detections, Detections]] = {}
    with Detector(model, mode="latency", conf=refs["greedynmm"]["conf"]) as det:
        try:
            for image in refs["greedynmm"]["images"]:
                pixels = cv2.imread(str(folder / image))
                shape = (pixels.shape[0], pixels.shape[1])
                grid, full_pass = plan_tiles(shape, CFG)
                assert full_pass
                tiles = [det(view).offset(dx, dy, shape)
                         for (dx, dy), view in zip(grid.offsets.tolist(), tile_views(pixels, grid), strict=True)]
                hw = min_rect_shape(shape, (640, 640))
                if hw not in rect:
                    rect[hw] = Detector(model, mode="latency", conf=refs["greedynmm"]["conf"], imgsz=hw)
                parts[image] = (tiles, det(pixels), _sahi_full_pass(rect[hw](pixels), hw))
            scores = {}
            for merge, ref in refs.items():
                cfg = SliceConfig(size=512, overlap=0.2, merge=merge, metric="ios", threshold=0.5)
                ours, emulated = {}, {}
                for image, (tiles, full, sahi_full) in parts.items():
                    shape = full.image_shape
                    ours[image] = merge_parts([*tiles, full], cfg, shape, sahi_boxes=True)
                    emulated[image] = merge_parts([*tiles, sahi_full], cfg, shape, sahi_boxes=True)
                    ours[image].slices = emulated[image].slices = len(tiles)  # type: ignore[attr-defined]
                own = _score(f"yolo11n-seg INT8, {merge}, yolo-ov's full pass", ours, ref, det)
                sahi = _score(f"yolo11n-seg INT8, {merge}, SAHI's full pass emulated", emulated, ref, det)
                own_masks = [v for image, r in ref["images"].items() for v in _mask_ious(r, ours[image])]
                sahi_masks = [v for image, r in ref["images"].items() for v in _mask_ious(r, emulated[image])]
                print(f"  mask IoU of matched objects: yolo-ov's full pass {np.mean(own_masks):.3f} "
                      f"(n={len(own_masks)}), SAHI's emulated {np.mean(sahi_masks):.3f} (n={len(sahi_masks)})")
                scores[merge] = (own, sahi, float(np.mean(own_masks)), float(np.mean(sahi_masks)))
        finally:
            for d in rect.values():
                d.close()
    for merge, (own, sahi, own_mask, sahi_mask) in scores.items():
        assert own_mask >= 0.85 and sahi_mask >= 0.85, merge
        # measured (docs/slicing.md): 0.94 both ways with SAHI's full pass emulated, the rest 1-3 px of mask
        # edge on cars of 10-60 px; 0.67-0.71 with yolo-ov's own, SAHI's full-pass mask shift moves merged boxes
        assert min(sahi) >= 0.9, merge
        assert min(own) >= 0.6, merge


def test_yolov8n_fp32_cli_latency_path_matches_sahi_and_the_sequential_reference(shared: Any, tmp_path: Path) -> None:
    """The issue's bar on the CLI path, and the concurrent latency path = the sequential reference exactly.

    ``yolo-ov predict data/sliced --slice 512 --overlap 0.2 --mode latency --save-json`` (one image's
    tiles and full pass in flight at once) against SAHI's GREEDYNMM reference, both ways >= 98%; then,
    in process, ``det(image, slicing=...)`` equals :func:`predict_sliced` on the same Detector
    box for box (three of the images, to keep the run short), and the CLI's records are those results.
    """
    from tests.cli_fakes import invoke

    folder = shared.root / "data" / "sliced"
    ref = _reference(shared, "yolov8n")
    out = tmp_path / "sliced.jsonl"
    result = invoke("predict", folder, "-m", shared.fp32_model, "--conf", ref["conf"], "--slice", "512",
                    "--overlap", "0.2", "--mode", "latency", "--save-json", out, "-q")
    assert result.exit_code == 0, result.output
    records = {Path(r["source"]).name: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert set(records) == set(ref["images"])
    cli: dict[str, Detections] = {}
    for name, r in records.items():
        dets = r["detections"]
        cli[name] = Detections(np.array([d["box"] for d in dets], np.float32).reshape(-1, 4),
                               np.array([d["confidence"] for d in dets], np.float32),
                               np.array([d["class_id"] for d in dets]), image_shape=(r["height"], r["width"]),
                               slices=r["slices"])
        assert r["slices"] == ref["images"][name]["slices"]
    with Detector(shared.fp32_model, mode="latency", conf=ref["conf"]) as det:
        fwd, back = _score("yolov8n FP32, greedynmm, yolo-ov predict --slice 512 --mode latency", cli, ref, det)
        for name in ("small-vehicles1.jpeg", "terrain1.jpg", "traffic_1080p_00.jpg"):  # 41 tiles: run time small
            pixels = cv2.imread(str(folder / name))
            concurrent = det(pixels, slicing=CFG)
            sequential = predict_sliced(det, pixels, CFG)
            np.testing.assert_array_equal(concurrent.xyxy, sequential.xyxy)
            np.testing.assert_array_equal(concurrent.confidence, sequential.confidence)
            np.testing.assert_array_equal(concurrent.class_id, sequential.class_id)
            np.testing.assert_allclose(cli[name].xyxy, concurrent.xyxy, atol=0.006)
    assert fwd >= 0.98 and back >= 0.98


def test_yolo11n_seg_concurrent_path_equals_the_sequential_reference(shared: Any) -> None:
    """Masks through the fan-out (moved by ``Detections.offset``, OR-ed by the merge) are the reference's exactly."""
    model = shared.root / "models" / "yolo11n-seg_int8_openvino_model"
    if not model.exists():
        pytest.skip(f"no model at {model}")
    pixels = cv2.imread(str(shared.root / "data" / "sliced" / "terrain2.png"))  # 6 tiles + the full pass
    with Detector(model, mode="latency", conf=0.25) as det:
        concurrent = det(pixels, slicing=CFG)
        sequential = predict_sliced(det, pixels, CFG)
    assert len(concurrent) == len(sequential) >= 5 and concurrent.slices == 6
    np.testing.assert_array_equal(concurrent.xyxy, sequential.xyxy)
    np.testing.assert_array_equal(concurrent.confidence, sequential.confidence)
    for i in range(len(concurrent)):
        np.testing.assert_array_equal(concurrent.data["masks"].mask(i), sequential.data["masks"].mask(i))
