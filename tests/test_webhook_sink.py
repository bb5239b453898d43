"""WebhookSink against a receiver written in the test (http.server on a free loopback port).

The receiver answers 500 for a while then 200: every event arrives once it does, each signature checks out
with the shared secret, and a 4xx is not retried. Fast: the signature itself, URL validation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.mqtt_support import free_port
from yolo_ov.errors import ConfigError
from yolo_ov.io.outbox import Backoff
from yolo_ov.io.sink import Sink, Sinks
from yolo_ov.io.webhook import WebhookSink, sign
from yolo_ov.results import Failure

pytestmark = pytest.mark.timeout(60)
SECRET = "s3cret"


def event(i: int) -> dict:
    return {"id": f"hall-{i}", "camera": "hall", "time": 1_700_000_000.0 + i, "type": "zone_enter", "track_id": i,
            "class_name": "person", "box": [1.0, 2.0, 3.0, 4.0], "zone": "entrance"}


class Receiver:
    """A web hook receiver: answers ``codes`` in turn (then 200), verifies each signature, keeps what it got."""

    def __init__(self, codes=(), port=0):
        self.codes = list(codes)
        self.requests: list[dict] = []  # every request: id, status answered, signature ok
        self.delivered: list[dict] = []  # bodies of requests answered 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                timestamp = self.headers["X-Yolo-Ov-Timestamp"]
                # what the docs tell a receiver to do, in five lines:
                expected = "sha256=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + body,
                                                hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(expected, self.headers.get("X-Yolo-Ov-Signature", ""))
                fresh = abs(time.time() - int(timestamp)) < 300
                with receiver.lock:
                    code = receiver.codes.pop(0) if receiver.codes else 200
                    receiver.requests.append({"id": self.headers["X-Yolo-Ov-Event-Id"], "status": code,
                                              "signed": ok and fresh})
                    if code == 200:
                        receiver.delivered.append(json.loads(body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


FAST = Backoff(first_s=0.05, max_s=0.2)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"id":"a"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", body) == f"sha256={expected}"
    assert sign(b"k", "1700000000", body) == sign("k", "1700000000", body)
    assert sign("k", "1700000001", body) != sign("k", "1700000000", body)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": "ftp://host/x"}, "webhook URL 'ftp://host/x': give an http:// or https:// URL"),
    ({"url": "http:///x"}, "webhook URL 'http:///x'"),
    ({"url": "http://h/x", "buffer": 0}, "webhook buffer 0: must be at least 1 event"),
    ({"url": "http://h/x", "timeout_s": 0}, "webhook timeout 0: must be more than 0 seconds"),
])
def test_bad_settings_are_one_clear_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        WebhookSink(**kwargs)
    assert str(err.value).startswith(message)


def test_500_then_200_every_event_is_delivered_once_the_receiver_answers_and_every_signature_checks():
    with Receiver(codes=[500, 500, 503]) as rx:
        sink = WebhookSink(rx.url, secret=SECRET, backoff=FAST)
        assert isinstance(sink, Sink)
        with Sinks([sink]) as sinks:
            sinks.write(Failure("cam", "x"), extra={"events": [event(0), event(1)]})
            for i in range(2, 6):
                sink.publish_event(event(i))
        assert rx.delivered == [event(i) for i in range(6)]  # in order, each once
        assert [r["status"] for r in rx.requests] == [500, 500, 503] + [200] * 6
        assert [r["id"] for r in rx.requests[:4]] == ["hall-0"] * 4  # the first event retried until it went
        assert all(r["signed"] for r in rx.requests)
        assert sink.stats() == {"queued": 0, "sent": 6, "dropped": 0, "failed": 0, "retries": 3, "connected": 1}
        assert sink.describe() == f"webhook: {rx.url} (6 sent)"


def test_a_4xx_is_counted_as_failed_and_not_retried():
    with Receiver(codes=[400, 200, 404]) as rx:
        sink = WebhookSink(rx.url, secret=SECRET, backoff=FAST)
        with sink:
            for i in range(4):
                sink.publish_event(event(i))
        assert [(r["id"], r["status"]) for r in rx.requests] == [
            ("hall-0", 400), ("hall-1", 200), ("hall-2", 404), ("hall-3", 200)]
        assert sink.stats()["failed"] == 2 and sink.stats()["sent"] == 2 and sink.stats()["retries"] == 0
        assert sink.describe().endswith("(2 sent, 2 failed)")


def test_a_receiver_that_is_not_there_yet_gets_every_event_when_it_comes_up():
    port = free_port()
    sink = WebhookSink(f"http://127.0.0.1:{port}/events", secret=SECRET, backoff=FAST, close_timeout_s=10)
    for i in range(3):
        sink.publish_event(event(i))
    deadline = time.monotonic() + 5
    while sink.stats()["retries"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink.stats()["connected"] == 0 and sink.stats()["queued"] == 3
    with Receiver(port=port) as rx:
        sink.close()  # waits for the buffer to drain
        assert [e["id"] for e in rx.delivered] == ["hall-0", "hall-1", "hall-2"]
        assert all(r["signed"] for r in rx.requests)
    assert sink.stats()["sent"] == 3 and sink.stats()["retries"] >= 2


def test_buffer_bound_with_the_receiver_away_counts_drops_exactly():
    sink = WebhookSink("http://127.0.0.1:9/none", buffer=3, backoff=FAST, timeout_s=1, close_timeout_s=0.2)
    for i in range(10):
        sink.publish_event(event(i))
    assert sink.stats()["dropped"] == 7 and sink.stats()["queued"] == 3
    sink.close()
    assert sink.stats()["dropped"] == 10 and sink.stats()["sent"] == 0
    with pytest.raises(ConfigError, match="closed"):
        sink.publish_event(event(11))
