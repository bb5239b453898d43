"""Task heads piece by piece, against Ultralytics' own functions, and every task through the CLI.

* the classification crop is byte-identical to torchvision ``Resize`` +
  ``CenterCrop`` on a PIL image (what Ultralytics feeds its classifiers);
* ``probiou`` and the rotated NMS equal Ultralytics' ``batch_probiou`` and
  ``TorchNMS.fast_nms``;
* masks computed at original resolution equal Ultralytics' ``process_mask``
  (upsample, threshold, crop) where the letterbox gain is 1;
* masks round-trip through COCO RLE; results index/filter their task data;
* ``yolo-ov predict`` writes the JSONL (and COCO results) of every task.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.tiny_models import classifier_model, save
from yolo_ov import Detector
from yolo_ov.cli import app
from yolo_ov.imaging.letterbox import letterbox_geometry
from yolo_ov.imaging.resample import pil_bilinear_resize, resize_short_side
from yolo_ov.ops.masks import Masks, masks_from_prototypes
from yolo_ov.ops.rotated import probiou, rotated_nms
from yolo_ov.results import Classification, Detections

runner = CliRunner()


# -- classification crop ------------------------------------------------------------------
def test_classify_crop_is_byte_identical_to_torchvision_pil(shared):
    pil = pytest.importorskip("PIL.Image")
    transforms = pytest.importorskip("torchvision.transforms")
    crop = transforms.Compose([transforms.Resize(224), transforms.CenterCrop(224)])
    rng = np.random.default_rng(0)
    images = [cv2.imread(str(p)) for p in shared.coco96_images[::8]]
    images += [rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in [(100, 150), (300, 200), (224, 500), (224, 224)]]
    for image in images:
        expected = np.asarray(crop(pil.fromarray(image)))
        assert np.array_equal(resize_short_side(image, (224, 224)), expected), image.shape


@pytest.mark.parametrize("size", [(224, 298), (37, 100), (700, 900), (5, 3)])
def test_resize_equals_pillow_bilinear(shared, size):
    pil = pytest.importorskip("PIL.Image")
    image = cv2.imread(str(shared.coco96_images[0]))
    expected = np.asarray(pil.fromarray(image).resize(size[::-1], pil.BILINEAR))
    assert np.array_equal(pil_bilinear_resize(image, size), expected)


def test_logits_classifier_gets_softmax(tmp_path):
    with Detector(save(classifier_model(classes=10), tmp_path), warmup=False) as det:
        result = det(np.full((80, 120, 3), 200, np.uint8))
    assert isinstance(result, Classification)
    assert result.probs.shape == (10,)
    assert abs(float(result.probs.sum()) - 1.0) < 1e-5  # the tiny model outputs logits (all 600 * 200/255 * 3)
    assert set(result.to_dict()) == {"source", "width", "height", "top5"}


# -- OBB ------------------------------------------------------------------------------------
def _random_rboxes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0, 200, (n, 2)), rng.uniform(5, 80, (n, 2)),
                            rng.uniform(-np.pi / 4, 3 * np.pi / 4, n)]).astype(np.float32)


def test_probiou_equals_ultralytics():
    pytest.importorskip("ultralytics")
    from ultralytics.utils.metrics import batch_probiou

    a, b = _random_rboxes(20, 1), _random_rboxes(30, 2)
    expected = batch_probiou(a.astype(np.float64), b.astype(np.float64)).numpy()
    np.testing.assert_allclose(probiou(a, b), expected, atol=1e-6)


def test_rotated_nms_equals_ultralytics_fast_nms():
    pytest.importorskip("ultralytics")
    import torch
    from ultralytics.utils.metrics import batch_probiou
    from ultralytics.utils.nms import TorchNMS

    boxes = _random_rboxes(200, 3).astype(np.float64)
    rng = np.random.default_rng(4)
    scores = rng.uniform(0.3, 1.0, 200)
    classes = rng.integers(0, 3, 200)
    offset = boxes.copy()
    offset[:, :2] += classes[:, None] * 7680.0
    expected = TorchNMS.fast_nms(torch.from_numpy(offset), torch.from_numpy(scores), 0.2, iou_func=batch_probiou)
    kept = rotated_nms(boxes, scores, classes, 0.2)
    assert 0 < len(kept) < 200
    assert kept.tolist() == expected.numpy().tolist()


# -- masks ----------------------------------------------------------------------------------
def test_masks_equal_ultralytics_process_mask_at_gain_one():
    """640x480 image in a 640x640 input: every original pixel is one input pixel, so the masks must agree
    pixel for pixel with Ultralytics' (upsample to the input, threshold, crop), shifted by the padding."""
    pytest.importorskip("ultralytics")
    import torch
    from ultralytics.utils import ops

    rng = np.random.default_rng(5)
    protos = rng.normal(size=(32, 160, 160)).astype(np.float32)
    coefs = rng.normal(size=(6, 32)).astype(np.float32) * 0.3
    boxes = np.array([[10, 90, 300, 400], [200.5, 100.2, 639.9, 559.7], [0, 80, 640, 560], [50.3, 300.7, 90.1, 330.2],
                      [600, 500, 640, 560], [320, 320, 321, 321]], np.float32)
    geo = letterbox_geometry((480, 640), (640, 640))
    ours = masks_from_prototypes(protos, coefs, boxes, geo, (640, 640)).dense()
    theirs = ops.process_mask(torch.from_numpy(protos), torch.from_numpy(coefs), torch.from_numpy(boxes.copy()),
                              (640, 640), upsample=True).numpy().astype(bool)
    theirs = theirs[:, geo.pad_top : geo.pad_top + 480, :]
    assert ours.shape == theirs.shape
    assert (ours != theirs).sum() <= 0.001 * theirs.sum()  # only float ties at the 0 threshold may differ


def test_masks_rle_round_trip_and_indexing():
    from faster_coco_eval.core import mask as mask_api

    crops = [np.eye(3, dtype=bool), np.ones((2, 4), bool), np.zeros((1, 1), bool)]
    masks = Masks((6, 8), np.array([[1, 2], [4, 0], [7, 5]]), crops)
    dense = masks.dense()
    for rle, full in zip(masks.to_rle(), dense, strict=True):
        assert rle["size"] == [6, 8] and isinstance(rle["counts"], str)
        decoded = mask_api.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), full)
    assert masks.area.tolist() == [3, 8, 0]
    det = Detections(np.tile([0, 0, 8, 6], (3, 1)), [0.9, 0.8, 0.7], [0, 1, 2], {0: "a", 1: "b", 2: "c"}, (6, 8),
                     data={"masks": masks})
    picked = det[det.confidence < 0.85]
    assert np.array_equal(picked.data["masks"].dense(), dense[1:])
    assert picked.data["masks"].polygons()[0].tolist() == [[4, 0], [4, 1], [7, 1], [7, 0]]


# -- the CLI's records for every task -------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "keys"),
    [("yolo11n-seg_int8_openvino_model", {"mask", "polygon"}), ("yolov8n-pose_int8_openvino_model", {"keypoints"}),
     ("yolo26n-obb_int8.tflite", {"obb", "corners"}), ("yolo26n_int8_openvino_model", set()),
     ("yolo26n-cls_int8.tflite", None)],
)
def test_predict_jsonl_for_every_task(shared, tmp_path, name, keys):
    images = [p for p in shared.coco96_images if p.stem in ("000000000036", "000000000064", "000000000389")]
    out, coco = tmp_path / "out.jsonl", tmp_path / "coco.json"
    args = ["predict", *map(str, images), "--model", str(shared.task_model(name)), "--save-json", str(out),
            "--save-coco", str(coco), "--save-dir", str(tmp_path / "vis"), "-q"]
    if keys and "polygon" in keys:
        args.append("--save-polygons")
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 3 and all({"source", "width", "height"} <= set(r) for r in records)
    assert len(list((tmp_path / "vis").iterdir())) == 3
    entries = json.loads(coco.read_text(encoding="utf-8"))
    if keys is None:  # classification: top-5 per image, no detections, nothing for COCO
        assert all(len(r["top5"]) == 5 and "detections" not in r for r in records)
        assert all(set(t) == {"class_id", "class_name", "confidence"} for r in records for t in r["top5"])
        assert entries == []
        return
    dets = [d for r in records for d in r["detections"]]
    assert dets, "no detections on the three images"
    for d in dets:
        assert set(d) == {"box", "confidence", "class_id", "class_name", *keys}
    by_source = {r["source"]: r for r in records}
    if "mask" in keys:
        from faster_coco_eval.core import mask as mask_api

        for r in records:
            for d in r["detections"]:
                assert d["mask"]["size"] == [r["height"], r["width"]]
                x, y, w, h = mask_api.toBbox({"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode()})
                bx1, by1, bx2, by2 = d["box"]  # the mask lies inside its box
                assert bx1 - 1 <= x and by1 - 1 <= y and x + w <= bx2 + 1 and y + h <= by2 + 1
                assert len(d["polygon"]) >= 3
        assert all("segmentation" in e for e in entries)
    if "keypoints" in keys:
        assert all(len(d["keypoints"]) == 17 and len(d["keypoints"][0]) == 3 for d in dets)
        assert all(len(e["keypoints"]) == 51 for e in entries)
    if "obb" in keys:
        for d in dets:
            corners = np.array(d["corners"])
            assert corners.shape == (4, 2) and len(d["obb"]) == 5
            np.testing.assert_allclose([*corners.min(0), *corners.max(0)], d["box"], atol=0.02)
    assert len(by_source) == 3


# -- the throughput path carries every head ---------------------------------------------------
def test_submit_and_specialised_stream_carry_task_heads(shared):
    """submit() gives the latency path's result; the specialised pipeline (rectangular letterboxes,
    extra compiled shapes of the dynamic seg IR) still finds the same objects with their masks."""
    from yolo_ov.pipeline import PipelineConfig

    images = shared.coco96_images[:8]
    with Detector(shared.task_model("yolo11n-seg_int8_openvino_model"), mode="throughput") as det:
        direct = [det(p) for p in images]
        submitted = [f.result(timeout=120) for f in [det.submit(str(p)) for p in images]]
        config = PipelineConfig(specialize="on")
        list(det.stream(images, config=config))  # starts compiling the rectangular shapes in the background
        det.pipeline(config).lanes.wait_compiled(timeout=300)
        run = det.stream(images, config=config)
        special = list(run)
    for a, b, c in zip(direct, submitted, special, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        assert np.array_equal(a.data["masks"].dense(), b.data["masks"].dense())
        assert len(c.data["masks"]) == len(c)
        for box, conf, cls in zip(a.xyxy, a.confidence, a.class_id, strict=True):
            if conf < 0.5:
                continue
            # another letterbox moves INT8 confidences (one dog: 0.60 square, 0.38 at 480x640): class + IoU only
            ious = [_iou(box, other) for other in c.xyxy[c.class_id == cls]]
            assert ious and max(ious) > 0.8, (a.source, box)
    assert any(shape != "640x640" for shape in run.stats.shapes), run.stats.shapes
    with Detector(shared.task_model("yolo26n-cls_int8.tflite"), mode="throughput") as det:
        assert det.submit(str(images[0])).result(timeout=60).top5 == det(images[0]).top5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    return inter / (float(np.prod(a[2:] - a[:2])) + float(np.prod(b[2:] - b[:2])) - inter)


# -- drawing lives in io/draw, results are data -----------------------------------------------------
def _drawn_results() -> dict[str, Detections | Classification]:
    from yolo_ov.ops.rotated import xywhr_to_corners

    names = {0: "person", 1: "car", 2: "dog"}
    xyxy = np.array([[10, 10, 60, 50], [70, 5, 150, 100]], np.float32)
    base = {"xyxy": xyxy, "confidence": [0.9, 0.5], "class_id": [0, 1], "names": names, "image_shape": (120, 160)}
    xywhr = np.array([[40, 30, 50, 20, 0.3], [100, 60, 60, 30, -0.5]], np.float32)
    corners = xywhr_to_corners(xywhr)
    kpts = np.zeros((2, 17, 3), np.float32)
    kpts[..., 0], kpts[..., 1], kpts[..., 2] = 30, 30, 0.9
    return {
        "detect": Detections(**base),
        "tracked": Detections(**base, data={"track_id": np.array([3, 7])}),
        "segment": Detections(**base, data={"masks": Masks((120, 160), np.array([[10, 10], [70, 5]]),
                                                           [np.ones((40, 50), bool), np.ones((95, 80), bool)])}),
        "pose": Detections(**base, data={"keypoints": kpts}),
        "obb": Detections(np.concatenate([corners.min(1), corners.max(1)], 1), [0.9, 0.5], [0, 1], names, (120, 160),
                          data={"xywhr": xywhr}),
        "classify": Classification(np.array([0.1, 0.6, 0.3]), names, (120, 160)),
    }


@pytest.mark.parametrize("task", ["detect", "tracked", "segment", "pose", "obb", "classify"])
def test_draw_returns_an_annotated_copy(task):
    from yolo_ov.io.draw import draw

    image = np.full((120, 160, 3), 40, np.uint8)
    before = image.copy()
    out = draw(_drawn_results()[task], image)
    assert np.array_equal(image, before), "the input image is left alone"
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out != image).any(axis=2).sum() > 200  # something was drawn
    assert not hasattr(_drawn_results()[task], "draw")  # results are data; drawing is io.draw.draw


def test_draw_colours_by_class_or_by_track():
    from yolo_ov.io.draw import draw, palette_color

    image = np.zeros((120, 160, 3), np.uint8)
    results = _drawn_results()
    # the box's left edge, below its label: the class colour, or the track's when tracked
    assert tuple(draw(results["detect"], image)[40, 10]) == palette_color(0)
    assert tuple(draw(results["tracked"], image)[40, 10]) == palette_color(3)
    assert tuple(draw(results["tracked"], image)[60, 70]) == palette_color(7)


def test_masks_are_blended_at_half_strength():
    from yolo_ov.io.draw import draw, palette_color

    image = np.full((120, 160, 3), 100, np.uint8)
    out = draw(_drawn_results()["segment"], image)
    expected = (np.array([100.0] * 3) * 0.5 + np.array(palette_color(1), np.float64) * 0.5).astype(np.uint8)
    assert tuple(out[60, 110]) == tuple(expected)  # inside the second mask, away from its box and label


def test_one_palette_one_decoder_one_probiou():
    """The issue's duplicates stay gone: each of these is defined in exactly one module of the package."""
    import ast
    from pathlib import Path

    import yolo_ov

    root = Path(yolo_ov.__file__).parent
    defined: dict[str, list[str]] = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                defined.setdefault(node.name, []).append(str(path.relative_to(root)))
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        defined.setdefault(target.id, []).append(str(path.relative_to(root)))
    assert defined["_PALETTE"] == ["io/draw.py"]
    assert defined["probiou"] == ["ops/rotated.py"]
    assert defined["rotated_nms"] == ["ops/rotated.py"]
    assert defined["candidates"] == ["heads/_common.py"]
    assert defined["dim"] == ["heads/_common.py"]
    assert defined["nms"] == ["ops/boxes.py"]
    assert "decode_raw" not in defined and "postprocess" not in defined and "_dim" not in defined


def test_results_module_is_data_only():
    """results.py imports no drawing, no OpenCV, no box decoding and nothing from io/."""
    import ast
    from pathlib import Path

    import yolo_ov.results

    tree = ast.parse(Path(yolo_ov.results.__file__).read_text(encoding="utf-8"))
    imported = {(n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.startswith(("io", "draw", "ops.boxes", "cv2", "heads"))}, imported
