"""KServe v2 gRPC refusals on the fake engine (fast tier): the right status, one line, the same counters as REST.

Bad input (datatype, shape, oversize message, unknown model or version),
an expired deadline, a missing API key, overload, a busy port, the missing
extra, and SIGTERM draining the gRPC calls in flight of ``yolo-ov serve
--grpc-port`` (the command's own start and stop, on the fake engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import threading
import time

import numpy as np
import pytest

from tests.fakes import uniform_image
from tests.grpc_support import Served, assert_fake_outputs, bytes_input, frames_input, png
from tests.serve_support import FAKE_SERVE, ServerProcess, fake_detectors, fake_models, metric_value
from yolo_ov.errors import ConfigError, MissingExtraError
from yolo_ov.serve import ServeConfig, create_app

grpcclient = pytest.importorskip("tritonclient.grpc")
pytest.importorskip("fastapi")
requests = pytest.importorskip("requests")

KEY = "grpc-test-key-0123456789"


def _refused(call, status: str, *words: str) -> str:
    with pytest.raises(grpcclient.InferenceServerException) as info:
        call()
    message = info.value.message()
    assert info.value.status() == f"StatusCode.{status}", (info.value.status(), message)
    assert "\n" not in message and "Traceback" not in message, message
    for word in words:
        assert word in message, message
    return message


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    config = ServeConfig(models=fake_models(root), max_body_mb=1, max_pixels=1_000_000, timeout_s=30)
    with Served(create_app(config, detectors=fake_detectors())) as s:
        yield s


def test_bad_inputs_get_the_right_status_and_one_line(served):
    with grpcclient.InferenceServerClient(served.grpc) as c:
        wrong_type = grpcclient.InferInput("image", [1], "FP32")
        wrong_type.set_data_from_numpy(np.zeros(1, np.float32))
        _refused(lambda: c.infer("yolov8n", [wrong_type]), "INVALID_ARGUMENT", "datatype 'FP32'", "BYTES")
        four = grpcclient.InferInput("image", [1, 8, 8, 4], "UINT8")
        four.set_data_from_numpy(np.zeros((1, 8, 8, 4), np.uint8))
        _refused(lambda: c.infer("yolov8n", [four]), "INVALID_ARGUMENT", "[N, H, W, 3]")
        named = grpcclient.InferInput("images", [1], "BYTES")
        named.set_data_from_numpy(np.array([png(10)], dtype=np.object_))
        _refused(lambda: c.infer("yolov8n", [named]), "INVALID_ARGUMENT", "unknown inputs")
        _refused(lambda: c.infer("yolov8n", [bytes_input(grpcclient, [b"\x89PNG nope"])]), "INVALID_ARGUMENT",
                 "image[0]")
        huge = np.zeros((1, 1200, 1000, 3), np.uint8)  # 3.6 MB: over the 1 MB message limit
        _refused(lambda: c.infer("yolov8n", [frames_input(grpcclient, list(huge))]), "RESOURCE_EXHAUSTED")
        big = np.zeros((1, 600, 1700, 3), np.uint8)  # 3.06 MB too; pixels are over 1 MP as well
        _refused(lambda: c.infer("yolov8n", [frames_input(grpcclient, list(big))]), "RESOURCE_EXHAUSTED")
        frame = [frames_input(grpcclient, [uniform_image(10)])]
        _refused(lambda: c.infer("nope", frame), "NOT_FOUND", "unknown model 'nope'")
        _refused(lambda: c.infer("yolov8n", frame, model_version="2"), "NOT_FOUND", "no version '2'")
        _refused(lambda: c.get_model_metadata("nope"), "NOT_FOUND", "unknown model")
        _refused(lambda: c.infer("yolov8n", frame, outputs=[grpcclient.InferRequestedOutput("masks")]),
                 "INVALID_ARGUMENT", "unknown outputs")
        assert_fake_outputs(c.infer("yolov8n", frame), [10])  # still serving


def test_pixel_limit_within_the_message_size(tmp_path):
    config = ServeConfig(models=fake_models(tmp_path), max_pixels=10_000)
    with Served(create_app(config, detectors=fake_detectors())) as s, \
            grpcclient.InferenceServerClient(s.grpc) as c:
        _refused(lambda: c.infer("yolov8n", [bytes_input(grpcclient, [png(10, (200, 200))])]),
                 "RESOURCE_EXHAUSTED", "--max-pixels")


def test_deadline_gets_deadline_exceeded(tmp_path):
    config = ServeConfig(models=fake_models(tmp_path))
    with Served(create_app(config, detectors=fake_detectors(delay_s=0.5))) as s, \
            grpcclient.InferenceServerClient(s.grpc) as c:
        frame = [frames_input(grpcclient, [uniform_image(10)])]
        _refused(lambda: c.infer("yolov8n", frame, client_timeout=0.1), "DEADLINE_EXCEEDED")
        _refused(lambda: c.infer("yolov8n", frame, timeout=100_000), "DEADLINE_EXCEEDED",
                 "did not answer within the request's deadline")
        assert_fake_outputs(c.infer("yolov8n", frame, client_timeout=30), [10])


def test_api_key_in_metadata(tmp_path):
    config = ServeConfig(models=fake_models(tmp_path), api_key=KEY)
    with Served(create_app(config, detectors=fake_detectors())) as s, \
            grpcclient.InferenceServerClient(s.grpc) as c:
        assert c.is_server_live() and c.is_server_ready()  # health is open, as over REST
        frame = [frames_input(grpcclient, [uniform_image(10)])]
        _refused(lambda: c.infer("yolov8n", frame), "UNAUTHENTICATED", "authorization: Bearer <key>")
        _refused(lambda: c.infer("yolov8n", frame, headers={"authorization": "Bearer wrong"}), "UNAUTHENTICATED")
        _refused(lambda: c.get_model_metadata("yolov8n"), "UNAUTHENTICATED")
        _refused(lambda: c.get_inference_statistics("yolov8n"), "UNAUTHENTICATED")
        good = {"authorization": f"Bearer {KEY}"}
        assert_fake_outputs(c.infer("yolov8n", frame, headers=good), [10])
        assert c.get_model_metadata("yolov8n", headers=good).name == "yolov8n"
        errors: list = []
        c.start_stream(callback=lambda result, error: errors.append(error))
        with contextlib.suppress(grpcclient.InferenceServerException):  # the stream may be refused already
            c.async_stream_infer("yolov8n", frame)
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        c.stop_stream()
        assert errors and "UNAUTHENTICATED" in str(errors[0]), errors


def test_overload_is_unavailable_and_counted_as_rest_counts_it(tmp_path):
    import tritonclient.grpc.aio as aioclient

    config = ServeConfig(models=fake_models(tmp_path), max_queue=2)
    with Served(create_app(config, detectors=fake_detectors(delay_s=0.05))) as s:
        async def run() -> list:
            async with aioclient.InferenceServerClient(s.grpc) as c:
                calls = [c.infer("yolov8n", [bytes_input(aioclient, [png(v)])], client_timeout=60)
                         for v in range(1, 17)]
                return await asyncio.gather(*calls, return_exceptions=True)

        outcomes = asyncio.run(run())
        metrics = requests.get(f"{s.url}/metrics", timeout=10).text
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert refused and len(refused) < len(outcomes)
    for o in refused:
        assert o.status() == "StatusCode.UNAVAILABLE" and "at capacity" in o.message(), o
    for v, o in enumerate(outcomes, 1):
        if not isinstance(o, Exception):
            assert_fake_outputs(o, [v])
    assert metric_value(metrics, "yolo_ov_requests_rejected_total", name="yolov8n") == len(refused)
    assert metric_value(metrics, "yolo_ov_requests_fail_total", endpoint="grpc", code="503") == len(refused)
    assert metric_value(metrics, "yolo_ov_requests_success_total", endpoint="grpc") == len(outcomes) - len(refused)


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="utf-8") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_bad_requests_leak_nothing(served):
    """3,000 refused calls of five kinds (after 500 to warm up): RSS of the process (server and client) stays flat.

    (Oversize messages are refused by gRPC's core before the servicer; each costs ~180 ms here, so they are
    in ``test_bad_inputs_get_the_right_status_and_one_line`` and not in the soak.)
    """
    with grpcclient.InferenceServerClient(served.grpc) as c:
        wrong_type = grpcclient.InferInput("image", [1], "FP32")
        wrong_type.set_data_from_numpy(np.zeros(1, np.float32))
        bomb = png(10, (1100, 1000))  # a few KB declaring 1.1 MP: over --max-pixels
        calls = [
            lambda: c.infer("yolov8n", [wrong_type]),
            lambda: c.infer("yolov8n", [bytes_input(grpcclient, [b"\xff\xd8 cut short"])]),
            lambda: c.infer("nope", [wrong_type]),
            lambda: c.infer("yolov8n", [wrong_type], model_version="9"),
            lambda: c.infer("yolov8n", [bytes_input(grpcclient, [bomb])]),
        ]

        def burst(n: int) -> None:
            for i in range(n):
                with pytest.raises(grpcclient.InferenceServerException):
                    calls[i % len(calls)]()

        burst(500)
        before = _rss_mb()
        burst(3000)
        grown = _rss_mb() - before
    assert grown < 15, f"RSS grew {grown:.1f} MB over 3,000 refused calls"


def test_busy_port_is_one_line(tmp_path):
    from yolo_ov.serve.grpc_server import GrpcServer

    app = create_app(ServeConfig(models=fake_models(tmp_path)), detectors=fake_detectors())
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            with pytest.raises(ConfigError, match=rf"--grpc-port: cannot listen on 127.0.0.1:{port}"):
                GrpcServer(app.state.yolo, "127.0.0.1", port).start()
    finally:
        app.state.yolo.close()


def test_missing_extra_names_it(monkeypatch):
    import importlib.util

    from yolo_ov.cli.serve import _require_grpc

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"needs the 'grpcio' package.*pip install 'yolo-ov\[grpc\]'"):
        _require_grpc(8001)
    _require_grpc(None)  # no gRPC asked for: nothing needed


def test_sigterm_drains_grpc_calls_in_flight(tmp_path):
    proc = ServerProcess(["--root", str(tmp_path / "models"), "--delay-s", "0.02", "--grpc-port", "0"],
                         cache_dir=tmp_path, command=FAKE_SERVE).start()
    found = re.search(r"gRPC on (127\.0\.0\.1:\d+) ", proc.output())
    assert found, proc.output()
    address = found.group(1)
    outcomes: list = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        with grpcclient.InferenceServerClient(address) as c:
            for i in range(60):  # bounded
                value = (k * 60 + i) % 250 + 1
                try:
                    outcome = (value, c.infer("yolov8n", [bytes_input(grpcclient, [png(value)])], client_timeout=60))
                except grpcclient.InferenceServerException as exc:  # refused: never accepted
                    outcome = (value, exc)
                with lock:
                    outcomes.append(outcome)
                if stop.is_set() and isinstance(outcome[1], Exception):
                    return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(not isinstance(o, Exception) for _, o in outcomes) < 12:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join(120)
    code = proc.proc.wait(60)
    output = proc.output()
    assert code == 0, output
    answered = [(v, o) for v, o in outcomes if not isinstance(o, Exception)]
    for value, result in answered:
        assert_fake_outputs(result, [value])
    for _, o in outcomes:
        if isinstance(o, Exception):
            assert o.status() == "StatusCode.UNAVAILABLE", (o.status(), o.message())
    assert "SIGTERM: stopped accepting" in output
    count = int(output.split("stopped: ")[1].split(" request")[0])
    assert count == len(answered), output  # every call the server accepted reached its client
    assert "0 failed, 0 unfinished" in output
    assert len(answered) < len(outcomes)  # cut short by the signal
