"""The server's connections on real sockets (fast tier): hang-ups, slow headers, the cap, early 413s, accept errors.

Every test drives ``yolo-ov serve`` itself on the fake engine (``python -m
tests.serve_support``: the command's own uvicorn, options and logging) on a
free 127.0.0.1 port with raw sockets or ``http.client``, and reads what the
process wrote to stderr. Timeouts and caps are small (1-5 s, 8 connections)
so each test takes seconds.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time

import cv2
import pytest

from tests.fakes import uniform_image
from tests.serve_support import FAKE_SERVE, ServerProcess, metric_value

pytest.importorskip("fastapi")


@pytest.fixture(params=["httptools", "h11"])
def parser(request) -> str:
    """Both of uvicorn's HTTP/1.1 parsers carry the same guard (``--http``)."""
    if request.param == "httptools":
        pytest.importorskip("httptools")
    return request.param


def _serve(tmp_path, *args: str, parser: str = "auto") -> ServerProcess:
    return ServerProcess(["--root", str(tmp_path / "models"), "--http", parser, *args], cache_dir=tmp_path,
                         command=FAKE_SERVE).start()


def _address(proc: ServerProcess) -> tuple[str, int]:
    host, port = proc.host_port.rsplit(":", 1)
    return host, int(port)


def _get(proc: ServerProcess, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*_address(proc), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (EOF or reset), reading whatever it sent."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_client_hanging_up_mid_request_is_counted_499_not_logged_as_an_error(tmp_path, parser):
    """Half a body, then the socket closes: no traceback, no 500 in the metrics, a client-closed count per hang-up."""
    proc = _serve(tmp_path, parser=parser)
    try:
        head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(3):
            with socket.create_connection(_address(proc), timeout=10) as sock:
                sock.sendall(head + b"\0" * 50_000)
                time.sleep(0.2)  # the request is in the application, reading the body, when the client goes
        deadline = time.monotonic() + 10
        while True:
            metrics = _get(proc, "/metrics")[1].decode()
            if metric_value(metrics, "yolo_ov_requests_client_closed_total") >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert metric_value(metrics, "yolo_ov_requests_client_closed_total", name="yolov8n", endpoint="predict") == 3
        assert metric_value(metrics, "yolo_ov_requests_fail_total") == 0, metrics
        stats = json.loads(_get(proc, "/stats")[1])["models"]["yolov8n"]
        assert stats["closed"] == 3 and stats["fail"] == 0 and stats["in_flight"] == 0, stats
        png = cv2.imencode(".png", uniform_image(40))[1].tobytes()
        conn = http.client.HTTPConnection(*_address(proc), timeout=10)
        conn.request("POST", "/predict", body=png, headers={"Content-Type": "image/png"})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        code = proc.stop()
    output = proc.output()
    assert code == 0, output
    assert "Traceback" not in output and "Exception in ASGI application" not in output, output
    assert "ClientDisconnect" not in output, output


def test_a_413_reaches_a_client_that_writes_its_whole_body_before_reading(tmp_path, parser):
    """http.client sends all 30 MB, then reads: it gets the 413 (the body is drained), not a connection reset."""
    proc = _serve(tmp_path, "--max-body-mb", "1", parser=parser)
    try:
        for _ in range(2):
            conn = http.client.HTTPConnection(*_address(proc), timeout=30)
            conn.request("POST", "/predict", body=b"\0" * (30 << 20), headers={"Content-Type": "image/png"})
            response = conn.getresponse()
            assert response.status == 413
            assert "over the limit of 1 MB" in json.loads(response.read())["error"]
            conn.close()
        assert _get(proc, "/v2/health/ready")[0] == 200
    finally:
        assert proc.stop() == 0, proc.output()


def test_slow_header_and_idle_keep_alive_connections_are_closed(tmp_path, parser):
    """A client dribbling its request head is closed after --header-timeout-s; an idle kept-alive one after
    --keep-alive-s; a client that sends its head in time is answered."""
    proc = _serve(tmp_path, "--header-timeout-s", "1", "--keep-alive-s", "1", parser=parser)
    try:
        started = time.monotonic()
        dribblers = [socket.create_connection(_address(proc), timeout=10) for _ in range(5)]
        silent = socket.create_connection(_address(proc), timeout=10)
        for i, byte in enumerate(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n"):  # a byte per 0.2 s: no whole head
            if time.monotonic() - started > 2.5:
                break
            for sock in dribblers:
                with contextlib.suppress(OSError):
                    sock.send(bytes([byte]))
            time.sleep(0.2)
            if i == 2:  # ~0.6 s in: before the timeout, every one is still connected
                assert not any(_closed_within(s, 0.01) for s in [*dribblers, silent])
        for sock in [*dribblers, silent]:  # dribbling bytes does not restart the clock
            assert _closed_within(sock, 2), "a slow client was not closed"
            sock.close()

        kept = http.client.HTTPConnection(*_address(proc), timeout=10)
        kept.request("GET", "/v2/health/ready")
        assert kept.getresponse().read() == b'{"ready":true}'
        idle_from = time.monotonic()
        assert _closed_within(kept.sock, 4), "an idle kept-alive connection was not closed"
        assert 0.8 <= time.monotonic() - idle_from < 4
        kept.close()
    finally:
        assert proc.stop() == 0, proc.output()


def test_connections_beyond_the_cap_get_503_and_the_server_answers_once_they_go(tmp_path, parser):
    proc = _serve(tmp_path, "--max-connections", "8", "--header-timeout-s", "5", parser=parser)
    idle = []
    try:
        idle = [socket.create_connection(_address(proc), timeout=10) for _ in range(8)]
        time.sleep(0.3)  # all 8 accepted
        refused: list[bytes] = []
        for _ in range(3):
            with socket.create_connection(_address(proc), timeout=10) as extra:
                extra.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := extra.recv(65536):
                    data += chunk
                refused.append(data)
        for data in refused:
            assert data.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in data.lower(), data
            assert b"--max-connections" in data
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 5
        while _get(proc, "/v2/health/ready")[0] != 200:
            assert time.monotonic() < deadline, "the server did not answer after the idle connections closed"
            time.sleep(0.05)
    finally:
        for sock in idle:
            sock.close()
        code = proc.stop()
    assert code == 0, proc.output()


@pytest.mark.parametrize("loop", ["asyncio", "auto"])
def test_accept_errors_are_logged_once_per_interval(tmp_path, loop):
    """With the file descriptors exhausted (a low open-file limit, a cap above it), the accept loop's error is one
    line per interval, no traceback; the server answers again once the sockets go.

    ``asyncio``: Python's own loop (uvicorn's choice without uvloop installed) retries accept every second and
    logs each failure with a traceback unless limited. ``auto``: whatever uvicorn picks here (uvloop when
    installed, whose libuv sheds the excess connections itself).
    """
    args = ["--no-uvloop"] if loop == "asyncio" else []
    proc = _serve(tmp_path, "--nofile", "64", "--max-connections", "1000", "--header-timeout-s", "30", *args)
    held: list[socket.socket] = []
    try:
        for _ in range(120):
            held.append(socket.create_connection(_address(proc), timeout=10))
        time.sleep(2.5)  # asyncio retries accept every second: three errors unfiltered
        for sock in held:
            sock.close()
        held.clear()
        deadline = time.monotonic() + 10
        while True:
            try:
                if _get(proc, "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.2)
    finally:
        for sock in held:
            sock.close()
        code = proc.stop()
    output = proc.output()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "the open-file limit is 64 (ulimit -n), too low for --max-connections 1000" in output, output
    if loop == "asyncio":
        assert output.count("socket.accept() out of system resource: [Errno 24] Too many open files") == 1, output
    else:
        assert output.count("Too many open files") <= 1, output
