"""Pure parts of the server: image headers, the KServe codec, parameters, limits, settings.

The KServe codec is checked against Triton's own client library: requests
built by ``tritonclient.http`` are parsed here, and responses encoded here
are read back by ``tritonclient``'s ``InferResult``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from yolo_ov import ConfigError, DetectConfig, Detections, ModelLoadError
from yolo_ov.imaging.header import HeaderError, image_size
from yolo_ov.ops.masks import Masks
from yolo_ov.serve.errors import ErrorCode, ServeError
from yolo_ov.serve.kserve import (
    InferRequest,
    ProtocolError,
    RequestedOutput,
    build_response,
    output_specs,
    request_images,
    result_tensors,
)
from yolo_ov.serve.kserve_rest import encode_infer_response, parse_infer_request
from yolo_ov.serve.limits import check_encoded, decode_body
from yolo_ov.serve.params import detect_config
from yolo_ov.serve.settings import ModelSpec, ServeConfig, model_spec

http = pytest.importorskip("tritonclient.http")


def _png_header(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR declaring ``width x height`` and almost no data (a bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 claims another size (what a bomb looks like to a header reader)."""
    pos = data.index(b"\xff\xc0")
    return data[: pos + 5] + struct.pack(">HH", height, width) + data[pos + 9 :]


_IMAGE = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)


# -- image headers --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("ext", "params", "fmt"),
    [
        (".jpg", [], "JPEG"),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "JPEG"),
        (".png", [], "PNG"),
        (".webp", [], "WebP"),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], "WebP"),  # lossless: VP8L
        (".bmp", [], "BMP"),
        (".tif", [], "TIFF"),
    ],
)
def test_image_size_reads_every_supported_format(ext, params, fmt):
    ok, buf = cv2.imencode(ext, _IMAGE, params)
    assert ok
    assert image_size(buf.tobytes()) == (fmt, 53, 37)


def test_image_size_agrees_with_the_decoder_on_coco96(shared):
    for path in shared.coco96_images:
        data = path.read_bytes()
        _, w, h = image_size(data)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert w * h == decoded.shape[0] * decoded.shape[1], path.name


def test_image_size_reads_extended_webp_and_exif_jpeg():
    pil = pytest.importorskip("PIL.Image")
    import io

    out = io.BytesIO()
    pil.fromarray(_IMAGE).convert("RGBA").save(out, "WEBP", lossless=True, exif=b"Exif\0\0II*\0\x08\0\0\0\0\0")
    assert out.getvalue()[12:16] == b"VP8X"
    assert image_size(out.getvalue()) == ("WebP", 53, 37)
    exif = pil.Exif()
    exif[0x0112] = 6  # orientation: rotated; the header still says 53x37
    out = io.BytesIO()
    pil.fromarray(_IMAGE).save(out, "JPEG", exif=exif)
    assert image_size(out.getvalue()) == ("JPEG", 53, 37)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a supported image format"),
        (b"hello, world", "not a supported image format"),
        (b"GIF89a" + b"\0" * 20, "not a supported image format"),
        (b"\xff\xd8\xff\xe0\x00", "cut short"),
        (b"\xff\xd8\xff\xda\x00\x08", "no frame header"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIH", "cut short"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIDAT" + b"\0" * 8, "not IHDR"),
        (b"BM" + b"\0" * 12 + struct.pack("<I", 8), "info header"),
        (b"II*\0" + struct.pack("<I", 10_000), "cut short"),
        (b"RIFF\0\0\0\0WEBPVP8Z" + b"\0" * 20, "unknown first chunk"),
    ],
)
def test_image_size_rejects_what_it_cannot_read(data, message):
    with pytest.raises(HeaderError, match=message):
        image_size(data)


def test_image_size_never_fails_other_than_header_error_on_random_bytes():
    rng = np.random.default_rng(1)
    _ok, jpeg = cv2.imencode(".jpg", _IMAGE)
    seeds = [jpeg.tobytes(), _png_header(10, 10), cv2.imencode(".webp", _IMAGE)[1].tobytes(),
             cv2.imencode(".tif", _IMAGE)[1].tobytes(), cv2.imencode(".bmp", _IMAGE)[1].tobytes()]
    for _ in range(2000):
        seed = bytearray(seeds[rng.integers(len(seeds))])
        for _ in range(rng.integers(1, 8)):
            seed[rng.integers(len(seed))] = rng.integers(256)
        cut = bytes(seed[: rng.integers(1, len(seed) + 1)])
        with contextlib.suppress(HeaderError):
            image_size(cut)


def test_pixel_limit_refuses_bombs_before_decoding():
    _ok, jpeg = cv2.imencode(".jpg", _IMAGE)
    bomb_jpeg = _jpeg_with_size(jpeg.tobytes(), 60_000, 60_000)
    for bomb in (_png_header(20_000, 20_000), bomb_jpeg):
        with pytest.raises(ServeError) as info:
            check_encoded(bomb, 100_000_000, "upload.bin")
        assert info.value.code is ErrorCode.PAYLOAD_TOO_LARGE
        assert "upload.bin" in info.value.message
        assert "over the limit of 100 MP" in info.value.message
    assert check_encoded(jpeg.tobytes(), 53 * 37, "ok.jpg") == (53, 37)
    with pytest.raises(ServeError) as info:
        check_encoded(jpeg.tobytes(), 53 * 37 - 1, "ok.jpg")
    assert info.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    with pytest.raises(ServeError) as info:
        check_encoded(b"not an image", 100, "x.txt")
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


# -- the KServe codec, against tritonclient ------------------------------------------------------

def _body(inputs, outputs=None, parameters=None):
    body, json_size = http.InferenceServerClient.generate_request_body(inputs, outputs=outputs, parameters=parameters)
    return body, json_size


def test_parse_binary_bytes_request_from_tritonclient():
    images = [cv2.imencode(".jpg", _IMAGE)[1].tobytes(), cv2.imencode(".png", _IMAGE)[1].tobytes()]
    inp = http.InferInput("image", [2], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    body, size = _body([inp], parameters={"conf": 0.5, "classes": [0, 2]})
    request = parse_infer_request(body, size)
    assert request.inputs[0].datatype == "BYTES" and request.inputs[0].raw is not None
    assert request_images(request) == images
    assert request.parameters["conf"] == 0.5
    assert request.outputs is None and request.parameters["binary_data_output"]  # no outputs named: all, binary


def test_parse_uint8_frames_binary_and_json():
    frames = np.random.default_rng(3).integers(0, 255, (3, 12, 16, 3), dtype=np.uint8)
    for binary in (True, False):
        inp = http.InferInput("image", list(frames.shape), "UINT8")
        inp.set_data_from_numpy(frames, binary_data=binary)
        outputs = [http.InferRequestedOutput("boxes", binary_data=False)]
        body, size = _body([inp], outputs=outputs)
        request = parse_infer_request(body, size)
        images = request_images(request)
        assert len(images) == 3
        for got, want in zip(images, frames, strict=True):
            assert isinstance(got, np.ndarray)
            assert np.array_equal(got, want)
        assert request.outputs == (RequestedOutput("boxes", {"binary_data": False}),)


def test_parse_json_bytes_are_base64():
    import base64

    data = cv2.imencode(".jpg", _IMAGE)[1].tobytes()
    body = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                   "data": [base64.b64encode(data).decode()]}]}).encode()
    assert request_images(parse_infer_request(body)) == [data]


@pytest.mark.parametrize(
    ("request_json", "tail", "header", "message"),
    [
        (b"{not json", b"", None, "not valid JSON"),
        (b"[]", b"", None, "JSON object"),
        (b'{"inputs": []}', b"", None, "no 'inputs'"),
        (b'{"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}]}', b"", None,
         "one input named 'image'"),
        (b'{"inputs": [{"name": "image", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}', b"", None,
         "datatype 'FP32'"),
        (b'{"inputs": [{"name": "image", "shape": [1, 4, 4, 4], "datatype": "UINT8", "data": [0]}]}', b"", None,
         r"\[N, H, W, 3\]"),
        (b'{"inputs": [{"name": "image", "shape": [1, 1, 1, 3], "datatype": "UINT8", "data": [0, 1, 300]}]}', b"",
         None, "0 to 255"),
        (b'{"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": ["AA=="]}]}', b"", None,
         "holds 1"),
        (b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%"]}]}', b"", None,
         "not valid base64"),
        (b'{"inputs": [{"name": "image", "shape": [-1], "datatype": "BYTES", "data": ["AA=="]}]}', b"", None,
         "non-negative"),
        (b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}]}',
         b"\x05\0\0\0abc", "auto", "binary_data_size is 9 but 7"),
        (b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 7}}]}',
         b"\x09\0\0\0abc", "auto", "declares 9 bytes"),
        (b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}]}', b"xx", "auto",
         "no input has binary_data_size"),
        (b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}]}', b"", "999",
         "does not fit"),
        (b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}], "outputs": "x"}',
         b"", None, "'outputs' must be a list"),
    ],
)
def test_parse_rejects_malformed_requests(request_json, tail, header, message):
    length = len(request_json) if header == "auto" else header
    with pytest.raises(ProtocolError, match=message) as info:
        request_images(parse_infer_request(request_json + tail, length))
    assert info.value.code is ErrorCode.INVALID_ARGUMENT and info.value.status == 400


def _detections(n: int, **data) -> Detections:
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 100, (n, 2))
    return Detections(np.hstack([xy, xy + 10]), rng.uniform(0.3, 1, n), rng.integers(0, 80, n),
                      {0: "person"}, (120, 160), "x.jpg", data=data)


def test_result_tensors_pad_to_the_largest_count_and_round_trip_through_tritonclient():
    a, b, c = _detections(3), _detections(0), _detections(5)
    tensors = result_tensors([a, b, c])
    assert tensors["num_detections"].array.tolist() == [3, 0, 5]
    assert tensors["boxes"].shape == (3, 5, 4)
    assert tensors["classes"].array[1].tolist() == [-1] * 5
    for binary in (True, False):
        request = InferRequest(id="r1", inputs=(), parameters={"binary_data_output": binary})
        body, size = encode_infer_response(request, build_response(request, tensors, model_name="m"))
        result = http.InferResult.from_response_body(body, header_length=size)
        assert result.get_response()["id"] == "r1"
        assert np.array_equal(result.as_numpy("num_detections"), [3, 0, 5])
        np.testing.assert_allclose(result.as_numpy("boxes")[2], c.xyxy, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("scores")[0, :3], a.confidence, rtol=1e-6)
        assert result.as_numpy("classes")[0, :3].tolist() == a.class_id.tolist()


def test_result_tensors_carry_task_fields_generically():
    crop = np.zeros((10, 20), bool)
    crop[2:8, 5:15] = True
    masks = Masks((120, 160), np.array([[30, 10], [0, 0]]), [crop, np.ones((4, 4), bool)])
    kpts = np.random.default_rng(4).uniform(0, 100, (2, 17, 3)).astype(np.float32)
    first = _detections(2, masks=masks, keypoints=kpts, xywhr=np.ones((2, 5), np.float32),
                        track_id=np.array([7, 9]))
    empty = _detections(0, masks=Masks.empty((120, 160)), keypoints=np.zeros((0, 17, 3), np.float32),
                        xywhr=np.zeros((0, 5), np.float32), track_id=np.zeros(0, int))
    tensors = result_tensors([first, empty])
    assert tensors["keypoints"].datatype == "FP32" and tensors["keypoints"].shape == (2, 2, 17, 3)
    assert tensors["obb"].shape == (2, 2, 5)
    assert tensors["track_ids"].datatype == "INT32" and tensors["track_ids"].array.tolist() == [[7, 9], [-1, -1]]
    datatype, rles = tensors["masks"].datatype, tensors["masks"].array
    assert datatype == "BYTES" and rles.shape == (2, 2)
    assert [json.loads(rles[0, j]) for j in range(2)] == masks.to_rle()  # the JSONL record's RLE, as is
    assert rles[1, 0] == b""
    mask_api = pytest.importorskip("faster_coco_eval.core.mask")
    rle = json.loads(rles[0, 0])
    assert (mask_api.decode({"size": rle["size"], "counts": rle["counts"].encode()}) == masks.mask(0)).all()
    request = InferRequest(id=None, inputs=(), parameters={"binary_data_output": True})
    body, size = encode_infer_response(request, build_response(request, tensors, model_name="m"))
    back = http.InferResult.from_response_body(body, header_length=size)
    assert json.loads(back.as_numpy("masks")[0, 0]) == rle
    np.testing.assert_allclose(back.as_numpy("keypoints")[0], kpts)


def test_classification_results_give_top5():
    from yolo_ov.results import Classification

    probs = np.array([0.05, 0.5, 0.1, 0.2, 0.15, 0.0], np.float32)
    tensors = result_tensors([Classification(probs, {}, (10, 10)), Classification(probs[::-1].copy(), {}, (10, 10))])
    assert tensors["top5"].array.tolist() == [[1, 3, 4, 2, 0], [4, 2, 1, 3, 5]]
    np.testing.assert_allclose(tensors["top5_scores"].array[0], [0.5, 0.2, 0.15, 0.1, 0.05])
    with pytest.raises(ProtocolError, match="all be detections or all classifications"):
        result_tensors([Classification(probs, {}, (10, 10)), _detections(1)])


def test_output_specs_per_task():
    assert [s.name for s in output_specs("detect")] == ["num_detections", "boxes", "scores", "classes"]
    assert output_specs("pose", kpt_shape=(17, 3))[-1].shape == (-1, -1, 17, 3)
    assert output_specs("segment")[-1].datatype == "BYTES"
    assert output_specs("obb")[-1].name == "obb"
    assert [s.name for s in output_specs("classify")] == ["top5", "top5_scores"]


def test_response_refuses_unknown_outputs():
    request = InferRequest(id=None, inputs=(), outputs=(RequestedOutput("nope"),))
    with pytest.raises(ProtocolError, match="unknown outputs"):
        build_response(request, result_tensors([_detections(1)]), model_name="m")


# -- parameters, limits, settings ----------------------------------------------------------

@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, DetectConfig()),
        ({"conf": "0.5", "iou": 0.6, "max_det": "10"}, DetectConfig(conf=0.5, iou=0.6, max_det=10)),
        ({"classes": "0, 2"}, DetectConfig(classes=(0, 2))),
        ({"classes": [1, 3]}, DetectConfig(classes=(1, 3))),
        ({"agnostic": "true", "binary_data_output": True}, DetectConfig(agnostic=True)),
        ({"conf": ""}, DetectConfig()),
    ],
)
def test_detect_parameters(params, expected):
    assert detect_config(DetectConfig(), params) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [({"conf": "high"}, "conf"), ({"conf": 2}, "conf"), ({"max_det": 2.5}, "max_det"), ({"classes": "a,b"}, "classes"),
     ({"agnostic": "maybe"}, "agnostic"), ({"iou": True}, "iou"), ({"classes": [-1]}, "classes")],
)
def test_detect_parameters_refuse_bad_values(params, message):
    with pytest.raises(ConfigError, match=message):
        detect_config(DetectConfig(), params)


def test_decode_body_inflates_within_the_limit_only():
    payload = b"x" * 1000
    assert decode_body(gzip.compress(payload), "gzip", 1000) == payload
    assert decode_body(zlib.compress(payload), "deflate", 1000) == payload
    assert decode_body(payload, None, 10) == payload  # identity: the body limit already applied
    bomb = gzip.compress(b"\0" * 5_000_000)
    assert len(bomb) < 10_000
    with pytest.raises(ServeError) as info:
        decode_body(bomb, "gzip", 1_000_000)
    assert info.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    with pytest.raises(ServeError) as info:
        decode_body(b"not gzip", "gzip", 1000)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    with pytest.raises(ServeError) as info:
        decode_body(payload, "br", 1000)
    assert info.value.code is ErrorCode.UNSUPPORTED_ENCODING


class _Models:
    """Model paths for the settings tests: ``ModelSpec`` checks a path's name and existence, not its content."""

    def __init__(self, root):
        self.fp32_model = root / "yolov8n_openvino_model"
        self.int8_model = root / "yolov8n_int8_openvino_model"
        self.pt_model = root / "yolov8n.pt"
        for folder in (self.fp32_model, self.int8_model):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "yolov8n.xml").write_text("<net/>", encoding="utf-8")
        self.pt_model.write_bytes(b"not a pickle")


@pytest.fixture
def models(tmp_path):
    return _Models(tmp_path / "models")


def test_model_specs(models):
    spec = model_spec(str(models.fp32_model))
    assert spec.name == "yolov8n" and spec.path == models.fp32_model
    named = model_spec(f"det={models.int8_model}")
    assert named.name == "det" and named.path == models.int8_model
    assert model_spec(str(models.fp32_model / "yolov8n.xml")).name == "yolov8n"


def _touch(path):
    path.write_text("", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("make", "message", "kind"),
    [
        (lambda s, t: ModelSpec(name="m", path=s.pt_model), "never loads .pt", ModelLoadError),
        (lambda s, t: ModelSpec(name="m", path=t / "missing.xml"), "no such model", ModelLoadError),
        (lambda s, t: ModelSpec(name="bad name!", path=s.fp32_model), "model name", ConfigError),
        (lambda s, t: ModelSpec(name="m", path=_touch(t / "x.txt")), "not a model", ModelLoadError),
        (lambda s, t: ServeConfig(models=()), "at least one model", ConfigError),
        (lambda s, t: ServeConfig(models=(model_spec(str(s.fp32_model)),) * 2), "two models are named yolov8n",
         ConfigError),
        (lambda s, t: ServeConfig(models=(model_spec(str(s.fp32_model)),), max_queue=0), "max_queue", ConfigError),
        (lambda s, t: ServeConfig(models=(model_spec(str(s.fp32_model)),), api_key="short"), "16 characters",
         ConfigError),
        (lambda s, t: ServeConfig(models=(model_spec(str(s.fp32_model)),), timeout_s=0), "timeout_s", ConfigError),
        (lambda s, t: ServeConfig(models=(model_spec(str(s.fp32_model)),), port=70000), "port", ConfigError),
        (lambda s, t: ServeConfig(models=(model_spec(str(s.fp32_model)),), max_connections=0), "max_connections",
         ConfigError),
        (lambda s, t: ServeConfig(models=(model_spec(str(s.fp32_model)),), header_timeout_s=0), "header_timeout_s",
         ConfigError),
        (lambda s, t: ServeConfig(models=(model_spec(str(s.fp32_model)),), keep_alive_s=-1), "keep_alive_s",
         ConfigError),
    ],
)
def test_settings_refuse_bad_values(models, tmp_path, make, message, kind):
    """A model the server cannot load is a ModelLoadError (exit 3, as for predict); a bad setting a ConfigError."""
    with pytest.raises(kind, match=message):
        make(models, tmp_path)


def test_settings_defaults_are_safe(models):
    cfg = ServeConfig(models=(model_spec(str(models.fp32_model)),))
    assert cfg.host == "127.0.0.1" and not cfg.binds_all_interfaces
    assert cfg.runtime.mode.value == "throughput"
    assert cfg.cors_origins == () and cfg.api_key is None
    assert cfg.max_body_bytes == 20 * 1024 * 1024 and cfg.max_pixels == 100_000_000
    assert ServeConfig(models=cfg.models, host="0.0.0.0").binds_all_interfaces
    assert "secret-key-1234567" not in repr(ServeConfig(models=cfg.models, api_key="secret-key-1234567"))


def test_detector_refuses_unknown_classes_per_call():
    """The server's per-request classes reach ``Detector``; its per-call overrides are checked like its own settings.

    Every path (the call, ``submit``, ``stream``, ``stream_callback``) refuses a class id the model does not have
    instead of returning nothing; a valid override still runs.
    """
    from tests.fakes import fake_detector, uniform_image

    bad = DetectConfig(classes=(1, 999))
    image = uniform_image(40)
    with fake_detector(mode="throughput") as det:
        for run in (lambda: det(image, detect=bad), lambda: det.submit(image, detect=bad),
                    lambda: det.stream([image], detect=bad), lambda: det.stream_callback([image], print, detect=bad),
                    lambda: list(det.iter_predict([image], detect=bad))):
            with pytest.raises(ConfigError, match=r"classes \[999\] do not exist in this model: .* 0-3"):
                run()
        assert len(det(image, detect=DetectConfig(classes=(0, 1, 2, 3)))) == 1
        assert len(det.submit(image, detect=DetectConfig(classes=(0, 1, 2, 3))).result(timeout=10)) == 1
