"""Reduced JPEG decoding (``DetectConfig.fast_decode``): chosen only when the letterbox needs so few pixels,
geometry of the full image kept, the same answer on every path, and close to the full decode on 4K photos.

The header reader and its EXIF orientation are checked against OpenCV's own
decoder on real files (written here, never committed).
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.matching import matched_fraction
from yolo_ov import DetectConfig, Detector, InputError, PipelineConfig
from yolo_ov.heads.classify import ClassifyHead
from yolo_ov.imaging.decode import load_image, load_image_for, reduction_factor
from yolo_ov.imaging.header import jpeg_orientation
from yolo_ov.imaging.letterbox import letterbox, letterbox_geometry
from yolo_ov.runtime.model import HeadType, ModelInfo, TensorSpec

FAST = DetectConfig(fast_decode=True)


@pytest.mark.parametrize(("original", "target", "factor"), [
    ((2160, 3840), (640, 640), 4),    # 4K: the letterbox is 360x640; 1/4 is 540x960, 1/8 would be 270x480
    ((3000, 4000), (640, 640), 4),    # 12 MP photo: 480x640 letterbox
    ((480, 640), (640, 640), 1),      # COCO-sized: never reduced
    ((1280, 1280), (640, 640), 2),    # exactly twice: 640 from 1280 // 2
    ((1279, 1279), (640, 640), 1),    # one pixel short of it: no upscaling, ever
    ((5120, 5120), (640, 640), 8),
    ((5119, 5119), (640, 640), 4),
    ((2160, 3840), (384, 640), 4),    # a specialised lane needs the same letterbox as the model's own shape
    ((3840, 2160), (640, 640), 4),    # portrait
    ((640, 10000), (640, 640), 8),    # a panorama: the short side decides (41 px tall letterbox)
    ((200, 200), (640, 640), 1),      # upscaled by the letterbox: decoded in full
])
def test_reduction_factor_only_when_the_target_is_small_enough(original, target, factor):
    assert reduction_factor(original, target) == factor
    if factor > 1:  # the reduced decode still holds the letterbox: never upscaled
        nh, nw = letterbox_geometry(original, target).resized
        assert original[0] // factor >= nh and original[1] // factor >= nw


def _picture(hw: tuple[int, int] = (480, 640), seed: int = 3) -> np.ndarray:
    """A COCO-sized picture made here (smooth texture and shapes): the decoding tests need pixels, not a model."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (*hw, 3), np.uint8), (0, 0), 3)
    cv2.rectangle(img, (120, 90), (330, 400), (40, 170, 210), -1)
    cv2.circle(img, (480, 220), 100, (190, 60, 80), -1)
    return img


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A picture upscaled to 3840x2880 (4:3, 11 MP)."""
    return cv2.resize(_picture(), (3840, 2880), interpolation=cv2.INTER_CUBIC)


def _jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def test_large_jpeg_is_decoded_reduced_with_its_full_size(photo, tmp_path):
    data = _jpeg(photo)
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    for given in (data, path, str(path), bytearray(data), memoryview(data)):
        pixels, original = load_image_for(given, (640, 640))
        assert original == (2880, 3840)
        assert pixels.shape == (720, 960, 3)  # 1/4: the letterbox needs 480x640
    pixels, original = load_image_for(data, (640, 640), reduce=False)
    assert pixels.shape == (2880, 3840, 3) and original == (2880, 3840)
    pixels, original = load_image_for(data, None)
    assert pixels.shape == (2880, 3840, 3)
    # The reduced pixels are a smaller picture of the same image.
    fast, _ = load_image_for(data, (640, 640))
    full_small = cv2.resize(load_image(data), (960, 720), interpolation=cv2.INTER_AREA)
    assert np.abs(fast.astype(int) - full_small.astype(int)).mean() < 3


def test_what_is_never_reduced(photo, tmp_path):
    png = cv2.imencode(".png", cv2.resize(photo, (1920, 1440)))[1].tobytes()
    pixels, original = load_image_for(png, (640, 640))
    assert pixels.shape[:2] == original == (1440, 1920)
    pixels, original = load_image_for(photo, (640, 640))  # arrays are already decoded
    assert pixels is photo and original == (2880, 3840)
    small = tmp_path / "small.jpg"
    cv2.imwrite(str(small), _picture())
    pixels, original = load_image_for(small, (640, 640))
    assert pixels.shape[:2] == original == cv2.imread(str(small)).shape[:2]


def test_a_truncated_large_jpeg_is_still_an_error(photo):
    data = _jpeg(photo)
    with pytest.raises(InputError, match="truncated JPEG"):
        load_image_for(data[: len(data) // 2], (640, 640), "cut.jpg")
    with pytest.raises(InputError, match="no such file"):
        load_image_for("/nonexistent/x.jpg", (640, 640))


def _exif_jpeg(img: np.ndarray, orientation: int) -> bytes:
    from PIL import Image

    pil = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_applied_as_opencv_does(photo, orientation):
    wide = cv2.resize(photo, (2560, 1440))  # 16:9, so a rotation shows in the shape
    data = _exif_jpeg(wide, orientation)
    assert jpeg_orientation(data) == orientation
    full = load_image(data)
    pixels, original = load_image_for(data, (640, 640))
    assert original == full.shape[:2]
    f = reduction_factor(full.shape[:2], (640, 640))
    assert f == 4 and pixels.shape[:2] == (-(-full.shape[0] // f), -(-full.shape[1] // f))
    same = cv2.resize(full, pixels.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(pixels.astype(int) - same.astype(int)).mean() < 3  # same picture, same way up


def test_no_exif_reads_as_orientation_1(photo):
    assert jpeg_orientation(_jpeg(photo)) == 1
    assert jpeg_orientation(b"not a jpeg") == 1
    assert jpeg_orientation(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00") == 1  # cut short


def test_letterbox_of_a_reduced_image_keeps_the_full_geometry(photo):
    pixels, original = load_image_for(_jpeg(photo), (640, 640))
    frame, geo = letterbox(pixels, (640, 640), original_hw=original)
    full_frame, full_geo = letterbox(photo, (640, 640))
    assert geo == full_geo and frame.shape == full_frame.shape == (640, 640, 3)
    assert np.abs(frame.astype(int) - full_frame.astype(int)).mean() < 4


def test_classification_is_always_decoded_in_full():
    info = ModelInfo(path=Path("cls.xml"), names={i: str(i) for i in range(10)},
                     names_source="test", imgsz=(224, 224), stride=32, task="classify", head=HeadType.RAW,
                     inputs=(TensorSpec("images", "[1,3,224,224]"),), outputs=(TensorSpec("output0", "[1,10]"),),
                     batch=1)
    assert ClassifyHead(info).decode_reduction((3000, 4000), (224, 224)) == 1


@pytest.fixture(scope="module")
def photos(shared, tmp_path_factory) -> list:
    """12 coco96 images upscaled to 3840 px on the long side, as JPEG files."""
    folder = tmp_path_factory.mktemp("photos4k")
    out = []
    for p in shared.coco96_images[:12]:
        img = cv2.imread(str(p))
        r = 3840 / max(img.shape[:2])
        big = cv2.resize(img, (round(img.shape[1] * r), round(img.shape[0] * r)), interpolation=cv2.INTER_CUBIC)
        path = folder / p.name
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


def test_fast_decode_finds_the_same_objects_on_4k_photos(photos, int8_detector):
    """Same objects as the full decode, boxes in original pixels (measured on 96 images: 96% of
    detections at conf >= 0.4 within IoU 0.8 and 0.1 confidence for INT8, 98% for FP32)."""
    ok = total = 0
    for path in photos:
        full = int8_detector(path)
        fast = int8_detector(path, detect=FAST)
        assert fast.image_shape == full.image_shape == cv2.imread(str(path)).shape[:2]
        h, w = fast.image_shape
        assert (fast.xyxy[:, 2] <= w).all() and (fast.xyxy[:, 3] <= h).all()
        m, n = matched_fraction((fast.xyxy, fast.confidence, fast.class_id),
                                (full.xyxy, full.confidence, full.class_id), min_conf=0.4, min_iou=0.8, conf_tol=0.1)
        ok, total = ok + m, total + n
    assert total >= 25 and ok / total >= 0.85, (ok, total)


def test_fast_decode_gives_one_answer_on_every_path(photos, shared, int8_detector):
    """Latency, stream() and submit() decode the same reduced pixels: the same detections."""
    images = photos[:4]
    latency = [int8_detector(p, detect=FAST) for p in images]
    with Detector(shared.int8_model, mode="throughput", detect=FAST) as det:
        streamed = list(det.stream(images))
        submitted = [det.submit(p).result() for p in images]
        drawn = list(det.stream(images, with_images=True))  # sinks that draw need the whole image
        specialised = list(det.stream(images, config=PipelineConfig(specialize="on")))
    for a, b, c in zip(latency, streamed, submitted, strict=True):
        for other in (b, c):
            np.testing.assert_allclose(a.xyxy, other.xyxy, atol=1e-3)
            np.testing.assert_allclose(a.confidence, other.confidence, atol=1e-4)
    for (result, image), path in zip(drawn, images, strict=True):
        assert image.shape[:2] == result.image_shape == cv2.imread(str(path)).shape[:2]
        full = int8_detector(path)
        np.testing.assert_allclose(result.xyxy, full.xyxy, atol=1e-3)  # decoded in full for drawing
    assert all(r.image_shape == a.image_shape for r, a in zip(specialised, latency, strict=True))


def test_cli_fast_decode(photos, shared, tmp_path):
    """`predict --fast-decode`: records in original pixels; drawn images stay full size."""
    import json

    from typer.testing import CliRunner

    from yolo_ov.cli import app

    folder = photos[0].parent
    out = tmp_path / "p.jsonl"
    r = CliRunner().invoke(app, ["predict", str(folder), "--model", str(shared.int8_model), "--fast-decode",
                                 "--save-json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(photos) and all(max(rec["width"], rec["height"]) == 3840 for rec in records)
    assert sum(len(rec["detections"]) for rec in records) > 20
    # One image (the latency path), drawn: the drawing is on the full image.
    single = CliRunner().invoke(app, ["predict", str(photos[0]), "--model", str(shared.int8_model), "--fast-decode",
                                      "--save-dir", str(tmp_path / "vis"), "-q"])
    assert single.exit_code == 0, single.output
    (drawn,) = (tmp_path / "vis").iterdir()
    assert cv2.imread(str(drawn)).shape[:2] == cv2.imread(str(photos[0])).shape[:2]


def test_serve_fast_decode(photos, shared, int8_detector, tmp_path_factory):
    """`yolo-ov serve --fast-decode`: a 4K photo posted to /predict gets the in-process fast-decode answer."""
    requests = pytest.importorskip("requests")
    pytest.importorskip("fastapi")
    from tests.serve_support import ServerProcess, assert_same_detections, record_arrays

    server = ServerProcess(["--model", str(shared.int8_model), "--fast-decode", "--max-body-mb", "32"],
                           cache_dir=tmp_path_factory.getbasetemp() / "yolo-ov-cache").start()
    try:
        for path in photos[:3]:
            got = requests.post(f"{server.url}/predict", files={"file": (path.name, path.read_bytes())},
                                timeout=120).json()
            expected = int8_detector(path, detect=FAST).to_dict()
            assert (got["width"], got["height"]) == (expected["width"], expected["height"])
            assert_same_detections(record_arrays(got), record_arrays(expected), where=path.name)
    finally:
        assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def synthetic_photos(tmp_path_factory) -> list:
    """4 pictures upscaled to 3840 px on the long side, as JPEG files (no asset needed)."""
    folder = tmp_path_factory.mktemp("synthetic4k")
    out = []
    for k, hw in enumerate([(480, 640), (360, 640), (640, 480), (427, 640)]):
        img = _picture(hw, seed=k)
        r = 3840 / max(hw)
        big = cv2.resize(img, (round(hw[1] * r), round(hw[0] * r)), interpolation=cv2.INTER_CUBIC)
        path = folder / f"photo{k}.jpg"
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


def test_fast_decode_gives_one_answer_on_every_path_on_the_fake_engine(synthetic_photos):
    """Latency, stream() and submit() decode the same reduced pixels: the same detections (the fake's one
    object follows the pixels it is given); drawing decodes in full; boxes are in original pixels."""
    from tests.fakes import fake_detector

    images = synthetic_photos
    with fake_detector(imgsz=(640, 640), detect=FAST) as det:
        latency = [det(p) for p in images]
        streamed = list(det.stream(images))
        submitted = [det.submit(p).result() for p in images]
        drawn = list(det.stream(images, with_images=True))
        full = [det(p, detect=DetectConfig()) for p in images]
    for a, b, c, path in zip(latency, streamed, submitted, images, strict=True):
        assert a.image_shape == cv2.imread(str(path)).shape[:2]
        for other in (b, c):
            np.testing.assert_allclose(a.xyxy, other.xyxy, atol=1e-3)
            np.testing.assert_allclose(a.confidence, other.confidence, atol=1e-4)
    for (result, image), path, whole in zip(drawn, images, full, strict=True):
        assert image.shape[:2] == result.image_shape == cv2.imread(str(path)).shape[:2]
        np.testing.assert_allclose(result.xyxy, whole.xyxy, atol=1e-3)  # decoded in full for drawing


def test_cli_fast_decode_on_the_fake_engine(synthetic_photos, tmp_path, monkeypatch):
    """`predict --fast-decode`: records in original pixels; drawn images stay full size (folder and latency)."""
    import json

    from tests.cli_fakes import invoke, use_fake_detector

    calls = use_fake_detector(monkeypatch, imgsz=(640, 640))
    folder = synthetic_photos[0].parent
    out = tmp_path / "p.jsonl"
    r = invoke("predict", folder, "--fast-decode", "--save-json", out, "-q")
    assert r.exit_code == 0, r.output
    assert calls[-1]["detect"].fast_decode
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(synthetic_photos) and all(max(rec["width"], rec["height"]) == 3840 for rec in records)
    assert all(len(rec["detections"]) == 1 for rec in records)
    single = invoke("predict", synthetic_photos[0], "--fast-decode", "--save-dir", tmp_path / "vis", "-q")
    assert single.exit_code == 0 and "(latency, CPU)" in single.output, single.output
    (drawn,) = (tmp_path / "vis").iterdir()
    assert cv2.imread(str(drawn)).shape[:2] == cv2.imread(str(synthetic_photos[0])).shape[:2]
