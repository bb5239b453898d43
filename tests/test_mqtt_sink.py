"""MqttSink against a real mosquitto started by the tests on a free loopback port (tests/mqtt_support.py).

Fast tests (no broker): validation, the one-line error when the broker is not there, and the buffer bound
with drops counted exactly. Real-broker tests: topics and payloads, the retained status (online, offline on
close, offline by last will when the publisher is killed), a broker stopped for 10 s then restarted (every
event of that window arrives, ids equal to the JSONL of the same run), and paho's own queueing while
disconnected, which the sink relies on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.mqtt_support import Broker, Subscriber, free_port, retained
from yolo_ov.errors import ConfigError, OutputError
from yolo_ov.io.mqtt import MqttSink, topic_safe
from yolo_ov.io.sink import Sink, Sinks
from yolo_ov.results import Failure

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(60)


def event(i: int, camera: str = "road") -> dict:
    return {"id": f"{camera}-{i}", "camera": camera, "time": 1_700_000_000.0 + i, "type": "line_cross",
            "track_id": i, "class_name": "car", "box": [1.0, 2.0, 3.0, 4.0], "line": "northbound", "direction": "in"}


# --- fast: no broker ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"qos": 2}, "MQTT qos 2: use 0 (at most once) or 1 (at least once)"),
    ({"topic": "a/#"}, "MQTT topic 'a/#'"),
    ({"topic": "/a"}, "MQTT topic '/a'"),
    ({"port": 0}, "MQTT port 0: must be 1-65535"),
    ({"buffer": 0}, "MQTT buffer 0: must be at least 1 message"),
])
def test_bad_settings_are_one_clear_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        MqttSink("127.0.0.1", **kwargs)
    assert str(err.value).startswith(message)


def test_topics_are_made_safe_and_the_sink_keeps_the_contract():
    sink = MqttSink("127.0.0.1", topic="shop")
    assert isinstance(sink, Sink)
    assert topic_safe("gate/1+#") == "gate_1__"
    assert sink.events_topic("gate/1") == "shop/gate_1/events"
    assert sink.records_topic("road") == "shop/road/detections"
    assert sink.status_topic == "shop/status"


def test_a_required_broker_that_is_not_there_is_one_line():
    port = free_port()
    sink = MqttSink("127.0.0.1", port, required=True, connect_timeout_s=3)
    with pytest.raises(OutputError) as err:
        sink.open()
    assert str(err.value) == f"MQTT broker 127.0.0.1:{port}: connection refused; is mosquitto running?"
    with pytest.raises(ConfigError, match="closed"):
        sink.publish_event(event(0))


def test_a_missing_broker_is_a_warning_and_the_buffer_bound_counts_every_drop(caplog):
    """Broker away, buffer 5, 12 events: 7 dropped exactly (the oldest), 5 kept, and one warning for the burst."""
    port = free_port()
    sink = MqttSink("127.0.0.1", port, buffer=5, connect_timeout_s=2, reconnect_max_s=1, close_timeout_s=0.5)
    with caplog.at_level(logging.WARNING, logger="yolo_ov.io"):
        sink.open()
        assert any("connection refused; is mosquitto running?" in r.getMessage() for r in caplog.records)
        for i in range(12):
            sink.publish_event(event(i))
        stats = sink.stats()
        assert stats == {"queued": 5, "sent": 0, "dropped": 7, "failed": 0, "retries": stats["retries"],
                         "connected": 0}
        assert sum("buffer full" in r.getMessage() for r in caplog.records) == 1  # once per burst
        sink.close()
    after = sink.stats()
    assert (after["dropped"], after["sent"], after["queued"]) == (12, 0, 0)  # the 5 left are counted at close
    assert any("5 message(s) not delivered" in r.getMessage() for r in caplog.records)


def test_a_write_before_open_says_so():
    sink = MqttSink("127.0.0.1", free_port())
    with pytest.raises(ConfigError, match="not open yet"):
        sink.publish_event(event(0))
    sink.close()


# --- real broker -------------------------------------------------------------------------------------------


def test_events_and_records_arrive_on_their_topics_with_their_payloads_and_the_status_is_retained():
    with Broker() as broker, Subscriber(broker.port) as sub:
        sink = MqttSink("127.0.0.1", broker.port, topic="yolo-ov", records=True)
        with Sinks([sink]) as sinks:
            assert sub.wait_for(lambda s: s.on("yolo-ov/status") == [b"online"], 5)
            assert retained(broker.port, "yolo-ov/status") == b"online"
            sinks.write(Failure("rtsp://cam/road", "stalled"),
                        extra={"camera": "road", "events": [event(1), event(2, "hall/west")]})
            sink.publish_event(event(3))
            assert sink.stats()["connected"] == 1
            assert sub.wait_for(lambda s: len(s.on("yolo-ov/road/events")) == 2, 5)
            assert sub.wait_for(lambda s: len(s.on("yolo-ov/hall_west/events")) == 1, 5)
        assert sub.events("yolo-ov/road/events") == [event(1), event(3)]
        assert sub.events("yolo-ov/hall_west/events") == [event(2, "hall/west")]
        assert sub.events("yolo-ov/road/detections") == [
            {"source": "rtsp://cam/road", "error": "stalled", "camera": "road"}]
        assert sink.stats() == {"queued": 0, "sent": 4, "dropped": 0, "failed": 0, "retries": 0, "connected": 0}
        assert sink.describe() == f"MQTT: 127.0.0.1:{broker.port} yolo-ov/# (4 sent)"
        assert sub.wait_for(lambda s: s.on("yolo-ov/status")[-1:] == [b"offline"], 5)
        assert retained(broker.port, "yolo-ov/status") == b"offline"
        with pytest.raises(ConfigError, match="closed"):
            sink.publish_event(event(4))


_PUBLISHER = """
import sys, time
from yolo_ov.io.mqtt import MqttSink
sink = MqttSink("127.0.0.1", int(sys.argv[1]), topic="killed", keepalive=5, required=True)
sink.open()
sink.publish_event({"id": "x", "camera": "c", "time": 0, "type": "appear"})
print("ready", flush=True)
time.sleep(60)
"""


def test_the_last_will_says_offline_when_the_publisher_is_killed():
    with Broker() as broker:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        proc = subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(broker.port)], stdout=subprocess.PIPE,
                                env=env, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            assert retained(broker.port, "killed/status") == b"online"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
            deadline = time.monotonic() + 10
            status = None
            while time.monotonic() < deadline and status != b"offline":
                status = retained(broker.port, "killed/status", timeout=1)
            assert status == b"offline"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_paho_keeps_a_qos1_message_published_while_disconnected_and_sends_it_after_the_reconnect():
    """What the sink relies on: a message handed to paho stays in its queue across a reconnect."""
    import paho.mqtt.client as mqtt

    with Broker(persistence=True) as broker, Subscriber(broker.port, "t/#", persistent=True) as sub:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-check")
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        connected, acked = threading.Event(), []
        client.on_connect = lambda *a: connected.set()
        client.on_publish = lambda client, userdata, mid, *a: acked.append(mid)
        client.on_disconnect = lambda *a: connected.clear()
        client.connect("127.0.0.1", broker.port, keepalive=10)
        client.loop_start()
        try:
            assert connected.wait(5)
            broker.stop()
            deadline = time.monotonic() + 5
            while connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
            info = client.publish("t/x", b"kept", qos=1)
            assert info.rc == mqtt.MQTT_ERR_NO_CONN  # refused for now, but kept in paho's queue
            broker.start()
            assert sub.wait_for(lambda s: s.on("t/x") == [b"kept"], 15)
            deadline = time.monotonic() + 5
            while info.mid not in acked and time.monotonic() < deadline:
                time.sleep(0.05)
            assert info.mid in acked
        finally:
            client.disconnect()
            client.loop_stop()


def test_broker_stopped_10_s_then_restarted_every_event_of_the_window_arrives(tmp_path):
    """Events published before, during and after a 10 s outage: each id arrives (at least once), the set of ids
    equals the JSONL of the same run, and nothing was dropped."""
    jsonl = tmp_path / "events.jsonl"
    with Broker(persistence=True) as broker, Subscriber(broker.port, "yolo-ov/#", persistent=True) as sub:
        sink = MqttSink("127.0.0.1", broker.port, reconnect_max_s=2, close_timeout_s=10)
        with sink, jsonl.open("w", encoding="utf-8") as out:
            def publish(i: int) -> None:
                e = event(i)
                out.write(json.dumps(e) + "\n")
                sink.publish_event(e)

            for i in range(10):
                publish(i)
            assert sub.wait_for(lambda s: len(s.on("yolo-ov/road/events")) == 10, 5)
            broker.stop()
            outage = time.monotonic()
            i = 10
            while time.monotonic() - outage < 10:  # the outage: 10 s, an event every 0.25 s
                publish(i)
                i += 1
                time.sleep(0.25)
            assert sink.stats()["connected"] == 0
            during = sink.stats()["queued"]
            assert during >= 30
            broker.start()
            for _ in range(5):
                publish(i)
                i += 1
            assert sink._outbox.flush(20)
        expected = {json.loads(line)["id"] for line in jsonl.read_text(encoding="utf-8").splitlines()}
        assert len(expected) == i
        arrived = sub.wait_for(lambda s: {e["id"] for e in s.events("yolo-ov/road/events")} >= expected, 15)
        assert arrived, sorted(expected - {e["id"] for e in sub.events("yolo-ov/road/events")})
        got = [e["id"] for e in sub.events("yolo-ov/road/events")]
        assert set(got) == expected  # each event at least once; duplicates only as QoS 1 allows
        stats = sink.stats()
        assert (stats["sent"], stats["dropped"], stats["failed"]) == (i, 0, 0)
        assert stats["retries"] >= 1
        assert sub.on("yolo-ov/status").count(b"online") >= 2  # online again after the reconnect


def test_qos0_events_and_a_jpeg_snapshot_arrive():
    with Broker() as broker, Subscriber(broker.port) as sub:
        with MqttSink("127.0.0.1", broker.port, topic="q0", qos=0) as sink:
            sink.publish_event({**event(1), "snapshot": b"\xff\xd8\xff", "box": np.array([1.0, 2.0, 3.0, 4.0])})
            assert sub.wait_for(lambda s: len(s.on("q0/road/events")) == 1, 5)
        assert sub.events("q0/road/events") == [{**event(1), "snapshot": "/9j/"}]
        assert sink.stats()["sent"] == 1


def test_a_broker_that_refuses_the_credentials_is_one_line():
    with Broker(anonymous=False) as broker:
        sink = MqttSink("127.0.0.1", broker.port, username="cam", password="wrong", required=True,
                        connect_timeout_s=5)
        with pytest.raises(OutputError) as err:
            sink.open()
    assert str(err.value).startswith(f"MQTT broker 127.0.0.1:{broker.port}: the broker refused the connection (")
    assert str(err.value).endswith("); check the credentials")
