"""The server on the fake engine under a real uvicorn (fast tier): overload, batching, body limit, SIGTERM drain.

Concurrency needs a real server: :class:`~tests.serve_support.LiveServer`
runs the app under uvicorn on a free 127.0.0.1 port in a thread, and
``python -m tests.serve_support`` is ``yolo-ov serve`` itself (its own start,
signal handling, drain and totals) on the fake engine, driven as a process.
Also here: the transport-neutral pieces a gRPC transport will share
(error codes, the state, a model's life).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from tests.fakes import expected_for, fake_detector, uniform_image
from tests.serve_support import FAKE_SERVE, LiveServer, ServerProcess, fake_detectors, fake_models, metric_value
from yolo_ov.serve import ServeConfig, create_app

requests = pytest.importorskip("requests")
pytest.importorskip("fastapi")


def png(value: int) -> bytes:
    return cv2.imencode(".png", uniform_image(value))[1].tobytes()


def check_record(record: dict, value: int) -> None:
    cls, score = expected_for(value)
    (det,) = record["detections"]
    assert det["class_id"] == cls and abs(det["confidence"] - score) < 1e-4, (record, value)


def _app(tmp_path, *, delay_s: float = 0.0, batch: int = 1, **settings):
    config = ServeConfig(models=fake_models(tmp_path), **settings)
    return create_app(config, detectors=fake_detectors(delay_s=delay_s, batch=batch))


# -- overload, metrics, batching --------------------------------------------------------------------

def test_overload_gets_503_at_once_and_every_200_is_right(tmp_path):
    """16 clients against a queue of 2: the excess is refused with Retry-After, nothing else fails; metrics add up."""
    with LiveServer(_app(tmp_path, delay_s=0.05, max_queue=2)) as server:
        before = requests.get(f"{server.url}/metrics", timeout=10).text
        values = list(range(1, 49))

        def call(value: int):
            r = requests.post(f"{server.url}/predict", files={"file": (f"{value}.png", png(value))}, timeout=60)
            return value, r.status_code, r.headers.get("Retry-After"), r.json()

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, values))
        statuses = Counter(status for _, status, _, _ in results)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[503] > 0 and statuses[200] > 0, statuses
        for value, status, retry_after, body in results:
            if status == 503:
                assert retry_after == "1" and "at capacity" in body["error"] and set(body) == {"error"}
            else:
                check_record(body, value)
        after = requests.get(f"{server.url}/metrics", timeout=10).text
        stats = requests.get(f"{server.url}/stats", timeout=10).json()["models"]["yolov8n"]

    def delta(metric, /, **labels):
        return metric_value(after, metric, **labels) - metric_value(before, metric, **labels)

    assert delta("yolo_ov_requests_success_total", name="yolov8n", endpoint="predict") == statuses[200]
    assert delta("yolo_ov_requests_fail_total", name="yolov8n", endpoint="predict", code="503") == statuses[503]
    assert delta("yolo_ov_requests_rejected_total", name="yolov8n") == statuses[503]
    assert delta("yolo_ov_images_total", name="yolov8n") == statuses[200]
    assert delta("yolo_ov_request_time_us_count", name="yolov8n", endpoint="predict") == len(values)
    assert delta("yolo_ov_inference_time_us_count", name="yolov8n") == statuses[200]
    assert metric_value(after, "yolo_ov_images_in_queue", name="yolov8n") == 0
    assert metric_value(after, "yolo_ov_current_requests", name="yolov8n") == 0
    assert metric_value(after, "yolo_ov_max_queue", name="yolov8n") == 2
    assert stats["rejected"] == statuses[503] and stats["success"] == statuses[200]
    assert stats["in_flight"] == 0 and stats["queued"] == 0 and stats["images"] == statuses[200]


def test_metrics_count_kserve_requests_and_failures_by_status(tmp_path):
    with LiveServer(_app(tmp_path)) as server:
        body = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                       "data": [__import__("base64").b64encode(png(40)).decode()]}]})
        for _ in range(3):
            assert requests.post(f"{server.url}/v2/models/yolov8n/infer", data=body, timeout=30).status_code == 200
        assert requests.post(f"{server.url}/v2/models/yolov8n/infer", data="{x", timeout=30).status_code == 400
        assert requests.post(f"{server.url}/predict", data=b"", timeout=30).status_code == 400
        text = requests.get(f"{server.url}/metrics", timeout=10)
    assert text.headers["content-type"].startswith("text/plain")
    m = text.text
    assert metric_value(m, "yolo_ov_requests_success_total", name="yolov8n", endpoint="kserve") == 3
    assert metric_value(m, "yolo_ov_requests_fail_total", name="yolov8n", endpoint="kserve", code="400") == 1
    assert metric_value(m, "yolo_ov_requests_fail_total", name="yolov8n", endpoint="predict", code="400") == 1
    assert metric_value(m, "yolo_ov_images_total", name="yolov8n") == 3
    assert metric_value(m, "yolo_ov_infer_requests_total", name="yolov8n") >= 3
    assert metric_value(m, "yolo_ov_streams", name="yolov8n") >= 1


def test_batch_model_groups_images_of_concurrent_requests(tmp_path):
    """A batch-4 engine: single-image requests from concurrent clients share inference requests, answers unchanged."""
    with LiveServer(_app(tmp_path, batch=4, delay_s=0.02, max_wait_ms=50)) as server:
        (model,) = requests.get(f"{server.url}/models", timeout=10).json()["models"]
        assert model["batch"] == 4
        before = requests.get(f"{server.url}/metrics", timeout=10).text
        values = list(range(20, 36))

        def call(value: int):
            return value, requests.post(f"{server.url}/predict", data=png(value), timeout=60).json()

        with ThreadPoolExecutor(8) as pool:
            for value, record in pool.map(call, values):
                check_record(record, value)
        after = requests.get(f"{server.url}/metrics", timeout=10).text
    images = metric_value(after, "yolo_ov_images_total") - metric_value(before, "yolo_ov_images_total")
    infer = metric_value(after, "yolo_ov_infer_requests_total") - metric_value(before, "yolo_ov_infer_requests_total")
    assert images == len(values)
    assert 4 <= infer < images, (infer, images)


# -- the body limit on the wire -------------------------------------------------------------------

def _raw_request(url: str, head: str, body_parts=()) -> tuple[int, dict]:
    """Send a request by hand on a socket; return the status and the JSON body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_body_limit_refuses_before_reading_the_body(tmp_path):
    """A declared body over the limit is refused before a byte of it is sent; a chunked one at the limit."""
    with LiveServer(_app(tmp_path, max_body_mb=1)) as server:
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {2 << 20}\r\n\r\n"
        status, body = _raw_request(server.url, head)  # no body sent at all: the answer comes anyway
        assert status == 413 and body == {"error": "request body of 2 MB is over the limit of 1 MB (--max-body-mb)"}
        parts = [b"10000\r\n" + b"\0" * 65536 + b"\r\n"] * 17  # 1 MB + 64 kB, chunked
        head = "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        status, body = _raw_request(server.url, head, parts)
        assert status == 413 and body == {"error": "request body is over the limit of 1 MB (--max-body-mb)"}
        after = requests.post(f"{server.url}/predict", data=png(77), timeout=30)
        check_record(after.json(), 77)


# -- SIGTERM drain: yolo-ov serve's own run loop on the fake engine ----------------------------------

def test_sigterm_under_load_finishes_every_accepted_request(tmp_path):
    proc = ServerProcess(["--root", str(tmp_path / "models"), "--delay-s", "0.02"], cache_dir=tmp_path,
                         command=FAKE_SERVE).start()
    outcomes: list[tuple[int, object]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        with requests.Session() as s:
            for i in range(60):  # bounded
                value = (k * 60 + i) % 250 + 1
                try:
                    outcome = (value, s.post(f"{proc.url}/predict", data=png(value), timeout=60))
                except requests.ConnectionError as exc:  # refused or reset: never accepted
                    outcome = (value, exc)
                with lock:
                    outcomes.append(outcome)
                if stop.is_set() and not isinstance(outcome[1], requests.Response):
                    return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(isinstance(o, requests.Response) for _, o in outcomes) < 16:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join(120)
    code = proc.proc.wait(60)
    output = proc.output()
    assert code == 0, output
    responses = [(v, o) for v, o in outcomes if isinstance(o, requests.Response)]
    assert all(r.status_code == 200 for _, r in responses), Counter(r.status_code for _, r in responses)
    for value, r in responses:
        check_record(r.json(), value)
    assert "SIGTERM: stopped accepting" in output
    answered = int(output.split("stopped: ")[1].split(" request")[0])
    assert answered == len(responses), output  # every request the server accepted reached its client
    assert "0 failed, 0 unfinished" in output
    assert len(responses) < len(outcomes)  # the run was cut short by the signal, not finished


# -- transport-neutral pieces ---------------------------------------------------------------------

def test_error_codes_carry_http_and_grpc_statuses():
    from yolo_ov.serve.errors import ErrorCode, ServeError
    from yolo_ov.serve.http_errors import error_headers

    assert len({c.value for c in ErrorCode}) == len(ErrorCode)  # no code is an alias of another
    assert {c.name: c.http_status for c in ErrorCode} == {
        "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "NOT_FOUND": 404, "PAYLOAD_TOO_LARGE": 413,
        "UNSUPPORTED_ENCODING": 415, "INTERNAL": 500, "OVERLOADED": 503, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
    }
    grpc_names = {"INVALID_ARGUMENT", "UNAUTHENTICATED", "NOT_FOUND", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED",
                  "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED"}  # grpc.StatusCode members
    assert {c.grpc_status for c in ErrorCode} <= grpc_names
    busy = ServeError(ErrorCode.OVERLOADED, "full", retry_after_s=3)
    assert busy.status == 503 and error_headers(busy) == {"Retry-After": "3"}
    assert error_headers(ServeError(ErrorCode.UNAUTHENTICATED, "key")) == {"WWW-Authenticate": "Bearer"}
    assert error_headers(ServeError(ErrorCode.NOT_FOUND, "x")) == {}


def test_state_finds_models_and_versions(tmp_path):
    from yolo_ov.serve.errors import ErrorCode, ServeError
    from yolo_ov.serve.state import load_models

    config = ServeConfig(models=fake_models(tmp_path, "a", "b"))
    state = load_models(config, open_detector=fake_detectors())
    try:
        assert state.ready and list(state.models) == ["a", "b"]
        assert state.model(None).name == "a" and state.model("b", "1").name == "b"
        for name, version, message in (("c", None, "unknown model 'c'"), ("a", "2", "no version '2'")):
            with pytest.raises(ServeError, match=message) as info:
                state.model(name, version)
            assert info.value.code is ErrorCode.NOT_FOUND
    finally:
        state.close()
    assert not state.ready and not state.accepting


def test_a_model_that_fails_to_load_closes_those_loaded(tmp_path):
    from yolo_ov.serve.state import load_models

    opened: list = []
    good = fake_detectors(opened=opened)

    def second_fails(spec, config):
        if spec.name == "b":
            raise RuntimeError("no such device")
        return good(spec, config)

    with pytest.raises(RuntimeError, match="no such device"):
        load_models(ServeConfig(models=fake_models(tmp_path, "a", "b")), open_detector=second_fails)
    (first,) = opened
    with pytest.raises(Exception, match="closed"):
        first(uniform_image(3))


def test_a_model_whose_warm_up_fails_is_closed(tmp_path):
    from tests.fakes import fake_engine
    from yolo_ov.serve.metrics import ServeMetrics
    from yolo_ov.serve.models import ServedModel

    def broken(batch: np.ndarray):
        raise RuntimeError("device lost")

    engine = fake_engine()
    engine.fn = broken
    det = fake_detector(mode="throughput", engine=engine)
    config = ServeConfig(models=fake_models(tmp_path))
    with pytest.raises(Exception, match="device lost"):
        ServedModel("m", tmp_path, det, config, ServeMetrics())
    assert engine.closed


def test_a_closed_model_answers_503_not_accepting(tmp_path):
    from fastapi.testclient import TestClient

    app = _app(tmp_path)
    with TestClient(app) as client:
        assert client.post("/predict", content=png(40)).status_code == 200
        app.state.yolo.models["yolov8n"].close()
        r = client.post("/predict", content=png(40))
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.json() == {"error": "model 'yolov8n' is not accepting work: it is closed"}
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/yolov8n/ready").json() == {"name": "yolov8n", "ready": False}


def test_service_infer_without_http(tmp_path):
    """The KServe operations on the protocol's dataclasses alone: what a gRPC servicer will call."""
    import asyncio

    from yolo_ov.serve.kserve import InferRequest, RequestedOutput, Tensor
    from yolo_ov.serve.service import infer
    from yolo_ov.serve.state import load_models

    state = load_models(ServeConfig(models=fake_models(tmp_path)), open_detector=fake_detectors())
    try:
        frames = np.stack([uniform_image(v) for v in (40, 77)])
        request = InferRequest(id="g1", inputs=(Tensor("image", "UINT8", frames.shape, raw=frames.tobytes()),),
                               parameters={"conf": 0.3}, outputs=(RequestedOutput("classes"),
                                                                  RequestedOutput("num_detections")))
        response = asyncio.run(infer(state.model("yolov8n"), request))
        assert response.id == "g1" and response.model_name == "yolov8n" and response.model_version == "1"
        assert [o.name for o in response.outputs] == ["classes", "num_detections"]
        assert response.outputs[0].array.tolist() == [[expected_for(40)[0]], [expected_for(77)[0]]]
        assert response.outputs[1].raw() == np.array([1, 1], "<i4").tobytes()
        typed = InferRequest(id=None, inputs=(Tensor("image", "BYTES", (1,), data=[png(201)]),))
        (count, boxes, scores, classes) = asyncio.run(infer(state.model(None), typed)).outputs
        assert count.array.tolist() == [1] and classes.array.tolist() == [[expected_for(201)[0]]]
        assert boxes.shape == (1, 1, 4) and scores.array[0, 0] == pytest.approx(expected_for(201)[1], abs=1e-5)
    finally:
        state.close()
