"""KServe v2 gRPC on the fake engine (fast tier): metadata, inference, streaming, statistics, against REST.

The gRPC transport runs beside a real uvicorn on the same app state
(:class:`tests.grpc_support.Served`, both on free 127.0.0.1 ports); requests
are made with Triton's own ``tritonclient.grpc`` (sync, ``aio`` and
``start_stream``) and compared with ``tritonclient.http`` on REST. Every
model is ``tests.fakes.fake_detector``: a uniform image of grey value ``v``
gets one box of class ``v % 4`` and score ``0.5 + v/1024``, so each answer is
checked image by image.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time

import numpy as np
import pytest

from tests.fakes import fake_detector, uniform_image
from tests.grpc_support import Served, assert_fake_outputs, bytes_input, frames_input, png
from tests.serve_support import fake_detectors, fake_models
from yolo_ov.serve import ServeConfig, create_app

grpcclient = pytest.importorskip("tritonclient.grpc")
http = pytest.importorskip("tritonclient.http")
pytest.importorskip("fastapi")
import grpc  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402

VALUES = [10, 40, 77, 130, 201]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    config = ServeConfig(models=fake_models(root, "yolov8n", "int8"), max_body_mb=1, timeout_s=30)
    with Served(create_app(config, detectors=fake_detectors())) as s:
        yield s


@pytest.fixture
def client(served):
    with grpcclient.InferenceServerClient(served.grpc) as c:
        yield c


def test_health_and_metadata_match_rest(served, client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("yolov8n")
    assert client.is_model_ready("int8", "1")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "yolo-ov" and "statistics" in meta["extensions"]
    rest = http.InferenceServerClient(served.url.removeprefix("http://"))
    for name in ("yolov8n", "int8"):
        got = client.get_model_metadata(name, as_json=True)
        want = rest.get_model_metadata(name)
        assert got["name"] == want["name"] and got["versions"] == want["versions"]
        assert got["platform"] == want["platform"]
        for key in ("inputs", "outputs"):
            assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in got[key]] == \
                   [(t["name"], t["datatype"], t["shape"]) for t in want[key]]
    config = client.get_model_config("yolov8n", as_json=True)["config"]
    assert config["name"] == "yolov8n" and config["input"][0]["data_type"] == "TYPE_STRING"
    assert [o["name"] for o in config["output"]] == ["num_detections", "boxes", "scores", "classes"]
    assert '"0":"person"' in config["parameters"]["names"]["string_value"]


def test_infer_bytes_and_uint8(client):
    result = client.infer("yolov8n", [bytes_input(grpcclient, [png(v) for v in VALUES])], request_id="r-7")
    assert_fake_outputs(result, VALUES)
    assert result.get_response().id == "r-7" and result.get_response().model_name == "yolov8n"
    frames = [uniform_image(v) for v in VALUES]
    assert_fake_outputs(client.infer("int8", [frames_input(grpcclient, frames)]), VALUES)
    chosen = client.infer("yolov8n", [bytes_input(grpcclient, [png(40)])],
                          outputs=[grpcclient.InferRequestedOutput("scores"),
                                   grpcclient.InferRequestedOutput("classes")])
    assert [o.name for o in chosen.get_response().outputs] == ["scores", "classes"]
    assert chosen.as_numpy("classes").tolist() == [[0]]


def test_infer_typed_contents_and_parameters(served):
    """BYTES in ``contents.bytes_contents`` (not raw), UINT8 in ``uint_contents``; a class filter parameter."""
    with grpc.insecure_channel(served.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="yolov8n")
        tensor = request.inputs.add(name="image", datatype="BYTES", shape=[2])
        tensor.contents.bytes_contents.extend([png(77), png(130)])
        response = stub.ModelInfer(request, timeout=30)
        result = grpcclient.InferResult(response)
        assert_fake_outputs(result, [77, 130])
        request.parameters["classes"].string_param = "2"  # 130 % 4 == 2: keeps only the second image's box
        filtered = grpcclient.InferResult(stub.ModelInfer(request, timeout=30))
        assert filtered.as_numpy("num_detections").tolist() == [0, 1]
        frames = service_pb2.ModelInferRequest(model_name="yolov8n")
        tensor = frames.inputs.add(name="image", datatype="UINT8", shape=[1, 64, 64, 3])
        tensor.contents.uint_contents.extend([201] * (64 * 64 * 3))
        assert_fake_outputs(grpcclient.InferResult(stub.ModelInfer(frames, timeout=30)), [201])


def test_outputs_equal_rest_for_the_same_images(served, client):
    rest = http.InferenceServerClient(served.url.removeprefix("http://"))
    images = [png(v, (48 + v % 32, 80)) for v in VALUES]  # letterboxed: not the model's own size
    got = client.infer("yolov8n", [bytes_input(grpcclient, images)])
    want = rest.infer("yolov8n", [bytes_input(http, images)])
    names = [o.name for o in got.get_response().outputs]
    assert names == [o["name"] for o in want.get_response()["outputs"]]
    for name in names:
        np.testing.assert_array_equal(got.as_numpy(name), want.as_numpy(name), err_msg=name)


def test_aio_client_concurrent_requests(served):
    import tritonclient.grpc.aio as aioclient

    async def run() -> list:
        async with aioclient.InferenceServerClient(served.grpc) as c:
            assert await c.is_server_live()
            return await asyncio.gather(*(c.infer("yolov8n", [bytes_input(aioclient, [png(v)])]) for v in VALUES))

    for v, result in zip(VALUES, asyncio.run(run()), strict=True):
        assert_fake_outputs(result, [v])


def _stream(address: str, frames: list[np.ndarray], *, model: str = "yolov8n", timeout_s: float = 60.0) -> list:
    """Stream ``frames`` one request each with ``start_stream``; the (result, error) pairs in arrival order."""
    answers: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(address) as c:
        c.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            for i, frame in enumerate(frames):
                c.async_stream_infer(model, [frames_input(grpcclient, [frame])], request_id=str(i))
            out = [answers.get(timeout=timeout_s) for _ in frames]
        finally:
            c.stop_stream()
    return out


def test_stream_answers_100_frames_in_order_as_detector_stream(served):
    frames = [uniform_image(v) for v in range(1, 101)]
    answers = _stream(served.grpc, frames)
    assert [e for _, e in answers if e is not None] == []
    assert [r.get_response().id for r, _ in answers] == [str(i) for i in range(100)]
    with fake_detector(mode="throughput") as det:
        reference = list(det.stream(frames, drop=None))
    for i, ((result, _), want) in enumerate(zip(answers, reference, strict=True)):
        assert result.as_numpy("num_detections").tolist() == [len(want)], i
        np.testing.assert_array_equal(result.as_numpy("boxes")[0], want.xyxy.astype(np.float32))
        np.testing.assert_array_equal(result.as_numpy("scores")[0], want.confidence.astype(np.float32))
        np.testing.assert_array_equal(result.as_numpy("classes")[0], want.class_id.astype(np.int32))


def test_stream_keeps_a_bounded_window_in_flight(tmp_path):
    """A client that writes 40 frames at once: never more than STREAM_WINDOW of them in the server, yet several."""
    from yolo_ov.serve.grpc_server import STREAM_WINDOW

    config = ServeConfig(models=fake_models(tmp_path), max_queue=64)
    with Served(create_app(config, detectors=fake_detectors(delay_s=0.01))) as s:
        seen: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                seen.append(s.state.metrics.snapshot()["models"]["yolov8n"]["in_flight"])
                time.sleep(0.001)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            answers = _stream(s.grpc, [uniform_image(v) for v in range(1, 41)])
        finally:
            done.set()
            sampler.join(10)
    assert all(e is None for _, e in answers)
    assert 2 <= max(seen) <= STREAM_WINDOW, max(seen)


def test_stream_error_goes_in_the_stream_which_goes_on(served):
    answers: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(served.grpc) as c:
        c.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            c.async_stream_infer("yolov8n", [frames_input(grpcclient, [uniform_image(10)])], request_id="a")
            bad = grpcclient.InferInput("image", [1], "FP32")
            bad.set_data_from_numpy(np.zeros(1, np.float32))
            c.async_stream_infer("yolov8n", [bad], request_id="b")
            c.async_stream_infer("yolov8n", [frames_input(grpcclient, [uniform_image(40)])], request_id="c")
            got = [answers.get(timeout=30) for _ in range(3)]
        finally:
            c.stop_stream()
    (ok1, e1), (_, e2), (ok3, e3) = got
    assert e1 is None and e3 is None
    assert_fake_outputs(ok1, [10])
    assert_fake_outputs(ok3, [40])
    assert "INVALID_ARGUMENT" in str(e2) and "datatype 'FP32'" in str(e2) and "\n" not in str(e2)


def test_statistics_over_grpc_and_rest_as_triton(tmp_path):
    config = ServeConfig(models=fake_models(tmp_path, "yolov8n", "int8"))
    with Served(create_app(config, detectors=fake_detectors())) as s, \
            grpcclient.InferenceServerClient(s.grpc) as c:
        rest = http.InferenceServerClient(s.url.removeprefix("http://"))
        c.infer("yolov8n", [bytes_input(grpcclient, [png(v) for v in VALUES[:3]])])
        c.infer("yolov8n", [bytes_input(grpcclient, [png(10)])])
        rest.infer("yolov8n", [bytes_input(http, [png(40)])])
        with pytest.raises(grpcclient.InferenceServerException):
            c.infer("yolov8n", [bytes_input(grpcclient, [b"not an image"])])
        got = c.get_inference_statistics("yolov8n", as_json=True)["model_stats"]
        want = rest.get_inference_statistics("yolov8n")["model_stats"]
        everything = rest.get_inference_statistics()["model_stats"]
    (entry,) = want
    stats = entry["inference_stats"]
    assert entry["name"] == "yolov8n" and entry["version"] == "1"
    assert entry["inference_count"] == 5 and entry["execution_count"] == 5  # images; device runs (batch 1)
    assert stats["success"]["count"] == 3 and stats["fail"]["count"] == 1
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert stats[phase]["count"] == 3 and stats[phase]["ns"] > 0, phase
    assert stats["success"]["ns"] >= stats["compute_infer"]["ns"]
    assert abs(entry["last_inference"] / 1e3 - time.time()) < 60
    (g,) = got  # protobuf's JSON writes 64-bit integers as strings
    assert int(g["inference_count"]) == 5 and int(g["inference_stats"]["success"]["count"]) == 3
    assert int(g["inference_stats"]["queue"]["ns"]) == stats["queue"]["ns"]
    assert [m["name"] for m in everything] == ["yolov8n", "int8"]
    assert everything[1]["inference_count"] == 0


def test_stream_ends_unavailable_when_the_server_stops_accepting(tmp_path):
    config = ServeConfig(models=fake_models(tmp_path))
    with Served(create_app(config, detectors=fake_detectors())) as s:
        answers: queue.Queue = queue.Queue()
        with grpcclient.InferenceServerClient(s.grpc) as c:
            c.start_stream(callback=lambda result, error: answers.put((result, error)))
            try:
                for v in (10, 40):
                    c.async_stream_infer("yolov8n", [frames_input(grpcclient, [uniform_image(v)])])
                first = [answers.get(timeout=30) for _ in range(2)]
                s.state.accepting = False  # what SIGTERM does, before the transports drain
                c.async_stream_infer("yolov8n", [frames_input(grpcclient, [uniform_image(77)])])
                _, error = answers.get(timeout=30)
            finally:
                c.stop_stream()
    for (result, e), v in zip(first, (10, 40), strict=True):
        assert e is None
        assert_fake_outputs(result, [v])
    assert error is not None and error.status() == "StatusCode.UNAVAILABLE", error
    assert "shutting down" in error.message() and "\n" not in error.message()
