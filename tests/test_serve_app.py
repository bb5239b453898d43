"""The server's behaviour on the fake engine (fast tier): KServe v2 REST, ``/predict``, refusals, limits, metrics.

Every model here is ``tests.fakes.fake_detector`` in throughput mode, opened
through the server's own seam (``create_app(config, detectors=...)``), so the
real app, ``ServedModel``, ``Detector.submit()`` and the real head run; only
the compiled network is fake. Its answer follows each image: a uniform image
of grey value ``v`` gets one box ``[4, 4, 12 + v/8, 12 + v/8]`` of class
``v % 4`` and score ``0.5 + v/1024``, so every answer is checked image by
image. Requests are built and answers read with Triton's own
``tritonclient.http`` codec. The comparisons with the real model stay in
``test_serve.py``.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from tests.fakes import NAMES, expected_for, uniform_image
from tests.serve_support import fake_detectors, fake_models
from yolo_ov.serve import ServeConfig, create_app

http = pytest.importorskip("tritonclient.http")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

KEY = "test-key-0123456789abcdef"
INFER = "/v2/models/yolov8n/infer"
VALUES = (10, 40, 77, 130, 201)


def png(value: int, hw: tuple[int, int] = (64, 64)) -> bytes:
    return cv2.imencode(".png", uniform_image(value, hw))[1].tobytes()


def jpeg(value: int) -> bytes:
    return cv2.imencode(".jpg", uniform_image(value), [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()


def expected_box(value: int) -> list[float]:
    side = 8.0 + value / 8.0
    return [4.0, 4.0, 4.0 + side, 4.0 + side]


def assert_record(record: dict, value: int, source: str | None = None) -> None:
    """A ``/predict`` record of the uniform image of ``value``: its one detection, as the fake reports it."""
    cls, score = expected_for(value)
    assert (record["width"], record["height"]) == (64, 64)
    if source is not None:
        assert record["source"] == source
    (det,) = record["detections"]
    assert det["class_id"] == cls and det["class_name"] == NAMES[cls]
    assert det["confidence"] == pytest.approx(score, abs=1e-4)
    np.testing.assert_allclose(det["box"], expected_box(value), atol=0.01)


def assert_tensors(result, values) -> None:
    """KServe outputs of a request of uniform images ``values``: one detection each, padded to one."""
    assert result.as_numpy("num_detections").tolist() == [1] * len(values)
    for i, v in enumerate(values):
        cls, score = expected_for(v)
        assert result.as_numpy("classes")[i].tolist() == [cls]
        np.testing.assert_allclose(result.as_numpy("scores")[i], [score], atol=1e-5)
        np.testing.assert_allclose(result.as_numpy("boxes")[i, 0], expected_box(v), atol=0.01)


def bytes_input(images: list[bytes]):
    inp = http.InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    return inp


def post_infer(client, inputs, *, model: str = "yolov8n", outputs=None, parameters=None, request_id: str = "",
               headers: dict | None = None, version: str | None = None, timeout_us: int | None = None):
    """POST a request built by ``tritonclient``; the status, and the answer read back by ``tritonclient``."""
    body, size = http.InferenceServerClient.generate_request_body(inputs, outputs=outputs, parameters=parameters,
                                                                 request_id=request_id, timeout=timeout_us)
    head = dict(headers or {})
    if size is not None:
        head["Inference-Header-Content-Length"] = str(size)
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    response = client.post(path, content=body, headers=head)
    if response.status_code != 200:
        return response, None
    length = response.headers.get("inference-header-content-length")
    return response, http.InferResult.from_response_body(response.content,
                                                          header_length=int(length) if length else None)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    config = ServeConfig(models=fake_models(root, "yolov8n", "int8"), max_body_mb=4, timeout_s=30)
    return create_app(config, detectors=fake_detectors())


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def make_client(tmp_path):
    """A client of a server of its own: ``make_client(delay_s=..., batch=..., **ServeConfig settings)``."""
    clients = []

    def make(*names: str, delay_s: float = 0.0, batch: int = 1, **settings):
        config = ServeConfig(models=fake_models(tmp_path / f"m{len(clients)}", *names), **settings)
        c = TestClient(create_app(config, detectors=fake_detectors(delay_s=delay_s, batch=batch)),
                       raise_server_exceptions=False)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


# -- health and metadata ----------------------------------------------------------------------

def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "yolo-ov"
    assert meta["extensions"] == ["binary_tensor_data", "model_configuration", "statistics", "model_repository"]


@pytest.mark.parametrize("path", ["/v2/models/yolov8n", "/v2/models/yolov8n/versions/1"])
def test_model_metadata(client, path):
    meta = client.get(path).json()
    assert meta["name"] == "yolov8n" and meta["versions"] == ["1"] and meta["platform"] == "yolo_ov_openvino"
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]} == {
        "num_detections": ("INT32", [-1]), "boxes": ("FP32", [-1, -1, 4]), "scores": ("FP32", [-1, -1]),
        "classes": ("INT32", [-1, -1]),
    }


def test_model_ready_and_config(client):
    for name in ("yolov8n", "int8"):
        r = client.get(f"/v2/models/{name}/ready")
        assert r.status_code == 200 and r.json() == {"name": name, "ready": True}
    config = client.get("/v2/models/yolov8n/config").json()
    assert config["parameters"]["names"] == {str(k): v for k, v in NAMES.items()}
    assert config["parameters"]["detect"] == {"conf": 0.25, "iou": 0.7, "max_det": 300}
    assert config["input"][0]["alternatives"][0]["data_type"] == "TYPE_UINT8"
    assert [o["data_type"] for o in config["output"]] == ["TYPE_INT32", "TYPE_FP32", "TYPE_FP32", "TYPE_INT32"]


@pytest.mark.parametrize(("path", "message"), [
    ("/v2/models/nope", "unknown model 'nope'; this server has ['int8', 'yolov8n']"),
    ("/v2/models/nope/ready", "unknown model 'nope'"),
    ("/v2/models/yolov8n/versions/2", "model 'yolov8n' has no version '2'; it has version '1'"),
    ("/v2/models/yolov8n/versions/2/config", "has no version '2'"),
])
def test_unknown_models_and_versions_are_404(client, path, message):
    r = client.get(path)
    assert r.status_code == 404 and set(r.json()) == {"error"} and message in r.json()["error"]


def test_models_lists_what_the_engine_chose(client):
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert set(models) == {"yolov8n", "int8"}
    m = models["yolov8n"]
    assert m["mode"] == "throughput" and m["task"] == "detect" and m["ready"]
    assert m["classes"] == len(NAMES) and m["input_shape"] == [64, 64] and m["batch"] == 1
    assert m["requests_in_flight"] >= 1
    assert m["limits"] == {"max_queue": 64, "max_wait_ms": 2.0, "timeout_s": 30, "max_body_mb": 4,
                           "max_pixels": 100_000_000, "header_timeout_s": 10.0, "keep_alive_s": 5.0,
                           "max_connections": 1000}


# -- KServe inference -------------------------------------------------------------------------

@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("encode", [png, jpeg], ids=["png", "jpeg"])
def test_infer_bytes_images_image_by_image(client, binary, encode):
    images = [encode(v) for v in VALUES]
    if binary:
        response, result = post_infer(client, [bytes_input(images)], request_id="r7")
    else:  # JSON carries BYTES as base64 (tritonclient sends only UTF-8 text as JSON BYTES)
        body = {"id": "r7", "inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES",
                                        "data": [base64.b64encode(i).decode() for i in images]}]}
        response = client.post(INFER, json=body)
        assert "inference-header-content-length" not in response.headers
        result = http.InferResult.from_response_body(response.content)
    assert response.status_code == 200, response.text
    assert result.get_response()["id"] == "r7" and result.get_response()["model_name"] == "yolov8n"
    assert_tensors(result, VALUES)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_uint8_frames(client, binary):
    frames = np.stack([uniform_image(v) for v in VALUES[:3]])
    inp = http.InferInput("image", list(frames.shape), "UINT8")
    inp.set_data_from_numpy(frames, binary_data=binary)
    response, result = post_infer(client, [inp])
    assert response.status_code == 200, response.text
    assert_tensors(result, VALUES[:3])


def test_infer_pads_to_the_most_detections(client):
    """An image with no detection (conf above its score) is padded: 0 boxes, class -1."""
    low, high = 10, 200  # scores 0.51 and 0.70
    response, result = post_infer(client, [bytes_input([png(low), png(high)])], parameters={"conf": 0.6})
    assert response.status_code == 200
    assert result.as_numpy("num_detections").tolist() == [0, 1]
    assert result.as_numpy("classes").tolist() == [[-1], [expected_for(high)[0]]]
    assert result.as_numpy("boxes")[0].tolist() == [[0, 0, 0, 0]]


def test_infer_parameters_filter_classes(client):
    values = [8, 9, 10, 11]  # classes 0, 1, 2, 3
    response, result = post_infer(client, [bytes_input([png(v) for v in values])], parameters={"classes": [1, 3]})
    assert response.status_code == 200
    assert result.as_numpy("num_detections").tolist() == [0, 1, 0, 1]


def test_infer_outputs_chosen_in_order_binary_or_json(client):
    outputs = [http.InferRequestedOutput("scores", binary_data=False), http.InferRequestedOutput("classes"),
               http.InferRequestedOutput("num_detections")]
    response, result = post_infer(client, [bytes_input([png(v) for v in VALUES])], outputs=outputs)
    assert response.status_code == 200
    body = result.get_response()
    assert [o["name"] for o in body["outputs"]] == ["scores", "classes", "num_detections"]
    assert "data" in body["outputs"][0] and "parameters" in body["outputs"][1]
    assert result.as_numpy("boxes") is None
    assert result.as_numpy("num_detections").tolist() == [1] * len(VALUES)


def test_infer_on_the_second_model_and_versioned_path(client):
    response, result = post_infer(client, [bytes_input([png(v) for v in VALUES])], model="int8", version="1")
    assert response.status_code == 200 and result.get_response()["model_name"] == "int8"
    assert_tensors(result, VALUES)


def test_infer_plain_json_with_base64_and_gzip(client):
    body = json.dumps({"id": "x", "inputs": [{"name": "image", "shape": [2], "datatype": "BYTES",
                                              "data": [base64.b64encode(png(v)).decode() for v in (40, 77)]}]})
    r = client.post(INFER, content=gzip.compress(body.encode()), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    answer = r.json()
    assert answer["id"] == "x"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["num_detections"]["data"] == [1, 1]
    assert outputs["classes"]["data"] == [expected_for(40)[0], expected_for(77)[0]]


def test_tritonclient_round_trip_metadata_through_uvicorn(tmp_path):
    """Triton's own HTTP client against a real uvicorn: metadata, readiness, a sync and an async inference."""
    from tests.serve_support import LiveServer

    app = create_app(ServeConfig(models=fake_models(tmp_path, "yolov8n", "int8")), detectors=fake_detectors())
    with LiveServer(app) as server:
        c = http.InferenceServerClient(server.url.removeprefix("http://"), concurrency=2)
        try:
            assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("int8")
            assert not c.is_model_ready("nope")
            assert c.get_model_metadata("yolov8n")["inputs"][0]["name"] == "image"
            assert c.get_model_config("yolov8n")["parameters"]["names"]["0"] == "person"
            assert_tensors(c.infer("yolov8n", [bytes_input([png(v) for v in VALUES])]), VALUES)
            job = c.async_infer("int8", [bytes_input([png(v) for v in VALUES[:2]])], request_id="a1")
            result = job.get_result(timeout=30)
            assert result.get_response()["id"] == "a1"
            assert_tensors(result, VALUES[:2])
        finally:
            c.close()
    assert not app.state.yolo.accepting  # uvicorn's lifespan closed the models at shutdown
    assert not any(m.ready for m in app.state.yolo.models.values())


# -- /predict ---------------------------------------------------------------------------------

def test_predict_multipart_raw_and_source(client):
    r = client.post("/predict", files={"file": ("grey.png", png(77), "image/png")})
    assert r.status_code == 200
    assert_record(r.json(), 77, "grey.png")
    assert "inference;dur=" in r.headers["Server-Timing"] and "total;dur=" in r.headers["Server-Timing"]
    data = png(130)
    r = client.post("/predict?model=int8", content=data, headers={"Content-Type": "image/png"})
    assert_record(r.json(), 130, f"<{len(data)} bytes>")
    r = client.post("/predict", params={"source": "cam/7.png"}, content=png(40))
    assert_record(r.json(), 40, "cam/7.png")


def test_predict_record_is_the_detector_record(client):
    """The record is what ``Detections.to_dict()`` gives for the same image on the latency path."""
    from tests.fakes import fake_detector

    with fake_detector() as det:
        expected = det(uniform_image(201), source="x.png").to_dict()
    got = client.post("/predict", params={"source": "x.png"}, files={"file": ("y.png", png(201))}).json()
    assert got == expected


def test_predict_query_settings_and_gzip(client):
    assert client.post("/predict", params={"conf": "0.6"}, content=png(40)).json()["detections"] == []
    assert len(client.post("/predict", params={"conf": "0.5"}, content=png(40)).json()["detections"]) == 1
    assert client.post("/predict", params={"classes": "1,2"}, content=png(40)).json()["detections"] == []
    r = client.post("/predict", content=gzip.compress(png(77)), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert_record(r.json(), 77)


def test_predict_uses_the_server_default_detect_settings(make_client):
    from yolo_ov import DetectConfig

    c = make_client(detect=DetectConfig(conf=0.6))
    assert c.post("/predict", content=png(40)).json()["detections"] == []  # score 0.539 < 0.6
    assert len(c.post("/predict", params={"conf": "0.3"}, content=png(40)).json()["detections"]) == 1


# -- refusals: each with its status and KServe's error body, and the server keeps answering ----------

def _png_bomb() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def _kserve_json(shape, datatype, data, **extra):
    return json.dumps({"inputs": [{"name": "image", "shape": shape, "datatype": datatype, "data": data}], **extra})


def _binary_request(declared: int, tail: bytes) -> dict:
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": declared}}]}).encode()
    return {"content": header + tail, "headers": {"Inference-Header-Content-Length": str(len(header))}}


_JPEG = jpeg(77)
_B64 = base64.b64encode(png(40)).decode()

REFUSALS = [
    # (id, method, path, request kwargs, status, message)
    ("unknown-model-predict", "POST", "/predict?model=nope", {"content": _JPEG}, 404, "unknown model 'nope'"),
    ("unknown-model-infer", "POST", "/v2/models/nope/infer", {"content": "{}"}, 404, "unknown model"),
    ("unknown-version", "POST", "/v2/models/yolov8n/versions/7/infer", {"content": "{}"}, 404, "no version"),
    ("unknown-route", "GET", "/v3/nothing", {}, 404, "Not Found"),
    ("not-an-image", "POST", "/predict", {"content": b"hello, I am text"}, 400, "not a supported image format"),
    ("empty-body", "POST", "/predict", {"content": b""}, 400, "no image"),
    ("truncated-jpeg", "POST", "/predict", {"content": _JPEG[: len(_JPEG) // 2]}, 400, "truncated JPEG"),
    ("form-without-file", "POST", "/predict", {"files": {"name": (None, "x")}}, 400, "no file"),
    ("multipart-gzip", "POST", "/predict", {"files": {"file": ("a.png", png(3))},
                                            "headers": {"Content-Encoding": "gzip"}}, 415, "uncompressed"),
    ("png-bomb", "POST", "/predict", {"content": _png_bomb()}, 413, "900.0 MP) is over the limit"),
    ("gzip-bomb", "POST", INFER, {"content": gzip.compress(b"\0" * (8 << 20)), "headers": {"Content-Encoding": "gzip"}},
     413, "inflates past"),
    ("corrupt-gzip", "POST", "/predict", {"content": b"not gzip", "headers": {"Content-Encoding": "gzip"}}, 400,
     "corrupt"),
    ("brotli", "POST", "/predict", {"content": _JPEG, "headers": {"Content-Encoding": "br"}}, 415, "not supported"),
    ("declared-body-too-large", "POST", "/predict", {"content": b"\0" * (5 << 20)}, 413, "over the limit of 4 MB"),
    ("bad-conf", "POST", "/predict?conf=2", {"content": _JPEG}, 400, "conf must be within"),
    ("bad-classes", "POST", "/predict?classes=cat", {"content": _JPEG}, 400, "classes"),
    ("unknown-class-id", "POST", "/predict?classes=1,999", {"content": _JPEG}, 400,
     "parameter classes=[999]: no such class id; this model's class ids are 0-3 (4 classes)"),
    ("unknown-class-id-kserve", "POST", INFER,
     {"content": _kserve_json([1], "BYTES", [_B64], parameters={"classes": [4, 0, 7]})}, 400,
     "parameter classes=[4, 7]: no such class id; this model's class ids are 0-3"),
    ("bad-json", "POST", INFER, {"content": "{oops"}, 400, "not valid JSON"),
    ("no-inputs", "POST", INFER, {"content": "{}"}, 400, "no 'inputs'"),
    ("wrong-datatype", "POST", INFER, {"content": _kserve_json([1, 3], "FP32", [1, 2, 3])}, 400, "datatype 'FP32'"),
    ("wrong-shape", "POST", INFER, {"content": _kserve_json([1, 2, 2, 4], "UINT8", [0] * 16)}, 400, "[N, H, W, 3]"),
    ("wrong-input-name", "POST", INFER, {"content": json.dumps({"inputs": [{"name": "images"}]})}, 400,
     "one input named 'image'"),
    ("binary-size-mismatch", "POST", INFER, _binary_request(100, b"\0" * 10), 400, "binary_data_size is 100"),
    ("header-length-too-long", "POST", INFER, {"content": "{}", "headers": {"Inference-Header-Content-Length": "99"}},
     400, "does not fit"),
    ("unknown-output", "POST", INFER,
     {"content": _kserve_json([1], "BYTES", [_B64], outputs=[{"name": "masks"}])}, 400, "unknown outputs ['masks']"),
    ("bad-timeout", "POST", INFER, {"content": _kserve_json([1], "BYTES", [_B64], parameters={"timeout": -5})}, 400,
     "timeout"),
    ("bad-parameter", "POST", INFER, {"content": _kserve_json([1], "BYTES", [_B64], parameters={"iou": "x"})}, 400,
     "parameter iou='x'"),
    ("too-many-images", "POST", INFER, {"content": _kserve_json([65], "BYTES", [_B64] * 65)}, 413, "holds 65 images"),
    ("bad-image-in-batch", "POST", INFER, {"content": _kserve_json([2], "BYTES", [_B64, "AAAA"])}, 400,
     "image[1]: not a supported image format"),
    ("wrong-method", "GET", INFER, {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "message"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusals_and_the_server_keeps_answering(client, method, path, kwargs, status, message):
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    if status != 200:
        body = response.json()
        assert set(body) == {"error"}, body  # KServe's error form, on both protocols
        assert message in body["error"]
    after = client.post("/predict", content=png(130))
    assert after.status_code == 200
    assert_record(after.json(), 130)


def test_pixel_limit_on_frames_and_images(make_client):
    c = make_client(max_pixels=64 * 64)
    assert c.post("/predict", content=png(40)).status_code == 200
    r = c.post("/predict", content=png(40, (65, 64)))
    assert r.status_code == 413 and "(--max-pixels)" in r.json()["error"]
    frames = np.stack([uniform_image(40, (64, 65))])
    inp = http.InferInput("image", list(frames.shape), "UINT8")
    inp.set_data_from_numpy(frames)
    response, _ = post_infer(c, [inp])
    assert response.status_code == 413 and "image[0]: frame of 65x64" in response.json()["error"]


def test_request_queue_bound_refuses_large_requests(make_client):
    c = make_client(max_queue=2)
    response, _ = post_infer(c, [bytes_input([png(v) for v in (1, 2, 3)])])
    assert response.status_code == 413 and "at most 2 (--max-queue)" in response.json()["error"]
    response, result = post_infer(c, [bytes_input([png(v) for v in (1, 2)])])
    assert response.status_code == 200
    assert_tensors(result, (1, 2))


# -- time-outs ----------------------------------------------------------------------------------

def test_request_timeout_parameter_gets_504_and_the_server_goes_on(make_client):
    c = make_client(delay_s=0.3)
    response, _ = post_infer(c, [bytes_input([png(40)])], timeout_us=1000)  # 1 ms
    assert response.status_code == 504
    assert "did not answer within the request's deadline" in response.json()["error"]
    response, result = post_infer(c, [bytes_input([png(40)])], timeout_us=10_000_000)
    assert response.status_code == 200
    assert_tensors(result, (40,))


def test_server_timeout_gets_504_on_both_endpoints(make_client):
    c = make_client(delay_s=0.4, timeout_s=0.1)
    r = c.post("/predict", content=png(40))
    assert r.status_code == 504 and "(--timeout-s 0.1 or the request's own timeout)" in r.json()["error"]
    response, _ = post_infer(c, [bytes_input([png(40)])])
    assert response.status_code == 504
    stats = c.get("/stats").json()["models"]["yolov8n"]
    assert stats["fail"] == 2 and stats["success"] == 0 and stats["in_flight"] == 0


# -- API key and CORS -----------------------------------------------------------------------------

def test_api_key(make_client):
    c = make_client(api_key=KEY)
    assert c.get("/v2/health/live").status_code == 200
    assert c.get("/v2/health/ready").status_code == 200
    assert c.get("/").status_code == 200  # the page itself holds no data
    guarded = (("POST", "/predict"), ("GET", "/models"), ("GET", "/metrics"), ("GET", "/stats"),
               ("GET", "/v2"), ("GET", "/v2/models/yolov8n"), ("POST", INFER))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        for method, path in guarded:
            r = c.request(method, path, content=png(40) if method == "POST" else None, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert r.json() == {"error": "missing or wrong API key: send 'Authorization: Bearer <key>'"}
    auth = {"Authorization": f"Bearer {KEY}"}
    assert_record(c.post("/predict", content=png(40), headers=auth).json(), 40)
    response, result = post_infer(c, [bytes_input([png(40)])], headers=auth)
    assert response.status_code == 200
    assert_tensors(result, (40,))


def test_cors_only_for_the_origin_given(make_client, client):
    c = make_client(cors_origins=("http://app.example",))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = c.options("/predict", headers={"Origin": "http://app.example", **preflight})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "http://app.example"
    other = c.options("/predict", headers={"Origin": "http://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in other.headers
    plain = client.get("/v2/health/live", headers={"Origin": "http://app.example"})
    assert "Access-Control-Allow-Origin" not in plain.headers  # no --cors: no cross-origin calls


def test_web_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-cache"
    assert "<html" in page.text.lower()
    assert client.get("/static/nothing-here.js").status_code == 404


# -- sliced inference: /predict query parameters and KServe request parameters ----------------------------------

def test_predict_and_infer_slice_parameters_give_the_sliced_answer(client):
    from tests.fakes import fake_detector
    from tests.test_slicing_fanout import patchwork
    from yolo_ov import SliceConfig
    from yolo_ov.pipeline.slicing import predict_sliced

    image = patchwork((150, 200), 7)
    body = cv2.imencode(".png", image)[1].tobytes()
    cfg = SliceConfig(size=64, overlap=0.25, merge="nms")
    with fake_detector() as det:
        want = predict_sliced(det, image, cfg)
    response = client.post("/predict?slice=64&overlap=0.25&slice_merge=nms", content=body,
                           headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["slices"] == want.slices == 12
    np.testing.assert_allclose([d["box"] for d in record["detections"]], want.xyxy, atol=0.01)
    plain = client.post("/predict", content=body, headers={"content-type": "image/png"}).json()
    assert "slices" not in plain and len(plain["detections"]) == 1
    response, result = post_infer(client, [bytes_input([body])],
                                  parameters={"slice": 64, "overlap": 0.25, "slice_merge": "nms"})
    assert response.status_code == 200, response.text
    assert result.as_numpy("num_detections").tolist() == [len(want)]


@pytest.mark.parametrize(("query", "message"), [
    ("slice=0", "parameter slice must be a positive tile size"),
    ("slice=64&overlap=1.5", "overlap must be within [0, 1)"),
    ("slice=64&slice_merge=wbf", "slice merge must be one of"),
    ("overlap=0.3", "parameter overlap goes with slice"),
    ("slice=64&full_pass=maybe", "parameter full_pass='maybe': expected true or false"),
])
def test_bad_slice_parameters_are_400_with_one_line(client, query, message):
    response = client.post(f"/predict?{query}", content=png(40), headers={"content-type": "image/png"})
    assert response.status_code == 400, response.text
    text = response.text
    assert message in text and "\\n" not in text and "Traceback" not in text
