"""``yolo-ov watch`` put together (issue 22): the service, its outputs and its cameras page, with real parts.

A real ``yolo-ov watch`` process on the fake engine (looped clips as cameras,
so no model is needed and the events are steady) with:

* ``--port 0``: the cameras page on a free port, printed; ``/cameras.json``
  follows the cameras live and shows the outputs' counters, ``/metrics`` has
  per-camera frames, a camera's MJPEG stream yields a JPEG; SIGTERM exits 0
  and the port is closed. A busy port is one line, exit 2, before a model loads.
* MQTT (Debian's mosquitto on a free port, stopped 10 s then restarted
  mid-run), a webhook receiver answering 500 then 200, and the JSONL file, all
  fed by the same run: every event id of the JSONL arrives over MQTT (after
  de-duplication, QoS 1) and at the webhook (each signature valid); the
  status topic is ``online`` while it runs and ``offline`` (retained) after SIGTERM.
* A broker absent at start is a warning and the cameras run; its events wait
  and arrive once the broker is up; the drain is bounded when it never comes.

The clip ramps a grey level up and down, which moves the fake detector's one
box across a zone edge twice a cycle: a ``zone_enter`` and a ``zone_exit``
every ~1.6 s per camera, on one track.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cli_fakes import invoke, use_fake_detector
from tests.fakes import fake_detector
from tests.media import grey_frames, write_clip
from tests.mqtt_support import Broker, Subscriber, free_port, mosquitto_or_skip, retained
from tests.test_webhook_sink import Receiver
from yolo_ov.watch.config import parse_watch_config
from yolo_ov.watch.service import WatchService

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[1]
#: The fake detector's box grows with the grey level: its centre goes from y=8 to y=24 and back, in and out of
#: the zone below y=16 (one track: consecutive boxes overlap).
RAMP = [4 + round(i * 248 / 19) for i in range(20)]
ZONE = "low: [[16, 16], [64, 16], [64, 64], [16, 64]]"

RUN_ON_THE_FAKE = """
import sys
sys.path.insert(0, {root!r})
from tests.fakes import fake_detector
from yolo_ov.cli import _options, main
_options.open_detector = lambda model, *, runtime, detect: fake_detector(mode=runtime.mode.value, detect=detect)
sys.argv = ["yolo-ov", "watch", *{args!r}]
main()
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "m").mkdir()
    write_clip(tmp_path / "ramp.avi", grey_frames(RAMP + RAMP[::-1]))
    return tmp_path


def write_config(folder: Path, outputs: str, cameras: tuple[str, ...] = ("road", "hall")) -> Path:
    body = "".join(f"  {name}: {{url: ramp.avi, loop: true, zones: {{{ZONE}}}}}\n" for name in cameras)
    path = folder / "cameras.yaml"
    path.write_text(f"model: m\ncameras:\n{body}outputs:\n{textwrap.indent(outputs, '  ')}\n", encoding="utf-8")
    return path


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def wait_for(check: Any, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return False


class Watch:
    """``yolo-ov watch ARGS`` in a child process (on the fake engine unless ``model``); stderr read as it comes."""

    def __init__(self, folder: Path, *args: Any, model: bool = False) -> None:
        argv = [str(a) for a in args]
        command = ["-m", "yolo_ov", "watch", *argv] if model else [
            "-c", RUN_ON_THE_FAKE.format(root=str(ROOT), args=argv)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "COLUMNS": "200"}
        self.proc = subprocess.Popen([sys.executable, *command], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def err(self) -> str:
        return "\n".join(self.lines)

    def page_url(self, timeout: float = 30) -> str:
        prefix = "cameras page: "
        found = wait_for(lambda: any(line.startswith(prefix) for line in self.lines) or self.proc.poll() is not None,
                         timeout)
        line = next((line for line in self.lines if line.startswith(prefix)), None)
        assert found and line, f"no page address printed:\n{self.err}"
        return line[len(prefix):].split()[0].rstrip("/")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 40) -> int:
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        self.reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def first_jpeg(url: str, timeout: float = 20) -> bytes:
    """The first whole JPEG of an MJPEG stream (read until its end marker)."""
    buf = b""
    deadline = time.monotonic() + timeout
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        while time.monotonic() < deadline:
            chunk = r.read1(65536)
            if not chunk:
                break
            buf += chunk
            start = buf.find(b"\xff\xd8")
            end = buf.find(b"\xff\xd9", start + 2) if start >= 0 else -1
            if end > 0:
                return buf[start:end + 2]
    raise AssertionError(f"no JPEG in {len(buf)} bytes of {url}")


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_watch_with_port_0_serves_the_cameras_live_and_sigterm_closes_the_port(folder: Path):
    config = write_config(folder, "jsonl: events.jsonl")
    watch = Watch(folder, config, "--port", "0")
    try:
        url = watch.page_url()
        port = int(url.rsplit(":", 1)[1])
        assert port > 0

        def cameras() -> dict[str, Any]:
            return {c["name"]: c for c in get_json(f"{url}/cameras.json")["cameras"]}

        assert wait_for(lambda: all(c["state"] == "live" and c["frames"]["inferred"] >= 5
                                    for c in cameras().values()), 30, every=0.2), cameras()
        before = cameras()
        assert sorted(before) == ["hall", "road"]
        time.sleep(1.0)
        after = cameras()
        assert all(after[n]["frames"]["inferred"] > before[n]["frames"]["inferred"] for n in after)  # live
        assert all(c["fps"] > 0 and c["latency_s"] is not None for c in after.values())
        # the outputs' counters reach the page (once a second) and agree with the file
        assert wait_for(lambda: get_json(f"{url}/cameras.json")["outputs"].get("jsonl", {}).get("sent", 0) >= 4,
                        20, every=0.2)
        status = get_json(f"{url}/cameras.json")
        assert 0 < status["outputs"]["jsonl"]["sent"] <= len(jsonl(folder / "events.jsonl"))
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            metrics = r.read().decode("utf-8")
        for name in ("road", "hall"):
            line = next(m for m in metrics.splitlines()
                        if m.startswith(f'yolo_ov_camera_frames_total{{camera="{name}",kind="inferred"}}'))
            assert float(line.split()[-1]) >= 5, line
        assert 'yolo_ov_output_sent_total{output="jsonl"}' in metrics
        jpeg = first_jpeg(f"{url}/cameras/road/stream.mjpg")
        assert len(jpeg) > 500
        code = watch.stop(signal.SIGTERM)
    finally:
        watch.kill()
    assert code == 0, watch.err
    assert "stopped (SIGTERM), drained" in watch.err and "Traceback" not in watch.err
    assert port_closed(port)


def test_a_busy_port_is_one_line_and_exit_2_before_a_model_loads(folder: Path, monkeypatch: pytest.MonkeyPatch):
    config = write_config(folder, "jsonl: events.jsonl")
    calls = use_fake_detector(monkeypatch)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("watch", config, "--port", port, "--duration", 1)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert f"127.0.0.1:{port}" in result.output and "--port" in result.output
    assert calls == []  # refused before the model loaded


def test_mqtt_webhook_and_jsonl_of_one_run_agree_through_a_10_s_broker_outage(folder: Path):
    """The issue's done-means, through ``yolo-ov watch``: broker stopped 10 s then restarted mid-run."""
    mosquitto_or_skip()
    with Broker(persistence=True) as broker, Subscriber(broker.port, "t/#", persistent=True) as sub, \
            Receiver(codes=[500] * 3) as hook:
        from tests.test_webhook_sink import SECRET

        config = write_config(folder, f"mqtt: {{host: 127.0.0.1, port: {broker.port}, topic: t}}\n"
                                      f"jsonl: events.jsonl\n"
                                      f"webhook: {{url: '{hook.url}', secret: {SECRET}}}")
        watch = Watch(folder, config)
        events_file = folder / "events.jsonl"

        def mqtt_ids() -> set[str]:
            return {e["id"] for topic in ("t/road/events", "t/hall/events") for e in sub.events(topic)}

        try:
            assert sub.wait_for(lambda s: b"online" in s.on("t/status"), 30), watch.err
            assert retained(broker.port, "t/status") == b"online"
            assert wait_for(lambda: len(jsonl(events_file)) >= 8 and {e["id"] for e in jsonl(events_file)}
                            <= mqtt_ids(), 30, every=0.2), watch.err
            broker.stop()
            outage_start = len(jsonl(events_file))
            time.sleep(10)
            during = len(jsonl(events_file)) - outage_start
            assert during >= 8, f"only {during} events during the outage"
            assert not {e["id"] for e in jsonl(events_file)} <= mqtt_ids()  # the outage's events have not arrived
            broker.start()
            back = time.monotonic()
            # the sink reconnects (its backoff is at most 16 s here) and sends what waited, in order
            assert wait_for(lambda: {e["id"] for e in jsonl(events_file)[:outage_start + during]} <= mqtt_ids(),
                            60, every=0.2), watch.err
            caught_up = time.monotonic() - back
            assert sub.on("t/status").count(b"online") >= 2
            code = watch.stop(signal.SIGTERM)
        finally:
            watch.kill()
        assert code == 0, watch.err
        assert "Traceback" not in watch.err
        expected = {e["id"] for e in jsonl(events_file)}
        assert len(expected) == len(jsonl(events_file))  # ids unique in the file
        assert sub.wait_for(lambda s: mqtt_ids() >= expected, 15)
        assert mqtt_ids() == expected  # every event of the run, once after de-duplication; nothing else
        by_topic = {e["id"]: t for t in ("t/road/events", "t/hall/events") for e in sub.events(t)}
        assert all(by_topic[e["id"]] == f"t/{e['camera']}/events" for e in jsonl(events_file))
        assert {e["camera"] for e in jsonl(events_file)} == {"road", "hall"}
        assert sub.on("t/status")[-1] == b"offline"
        assert retained(broker.port, "t/status") == b"offline"
        # the webhook: 500 three times, then 200; every event delivered, each request signed
        assert wait_for(lambda: {e["id"] for e in hook.delivered} >= expected, 10)
        assert {e["id"] for e in hook.delivered} == expected
        assert [r["status"] for r in hook.requests[:3]] == [500, 500, 500]
        assert all(r["signed"] for r in hook.requests)
        received = sum(len(sub.events(t)) for t in ("t/road/events", "t/hall/events"))
        print(f"{len(expected)} events ({during} during the 10 s outage), all {len(expected)} over MQTT "
              f"({received - len(expected)} duplicates), the outage's caught up {caught_up:.1f} s after the "
              f"broker came back; webhook {len(hook.requests)} requests for {len(expected)} events")


def test_a_broker_absent_at_start_is_a_warning_the_cameras_run_and_its_events_arrive_later(
        folder: Path, caplog: pytest.LogCaptureFixture):
    mosquitto_or_skip()
    port = free_port()
    write_config(folder, f"mqtt: {{host: 127.0.0.1, port: {port}, topic: t}}\njsonl: events.jsonl",
                 cameras=("road",))
    cfg = parse_watch_config((folder / "cameras.yaml").read_text(encoding="utf-8"), folder / "cameras.yaml")
    caplog.set_level(logging.WARNING)
    with fake_detector(mode="throughput") as det:
        service = WatchService(cfg, det).start()
        try:
            assert any("connection refused" in r.getMessage() for r in caplog.records), caplog.text
            assert wait_for(lambda: service.stats()["road"].inferred >= 10 and len(jsonl(folder / "events.jsonl"))
                            >= 4, 30)
            assert service.stats()["road"].state == "live"
            assert service.output_stats()["mqtt"]["connected"] == 0
            assert service.output_stats()["mqtt"]["queued"] >= 1
            with Broker(port, persistence=True) as broker, Subscriber(broker.port, "t/#", persistent=True) as sub:
                waited = {e["id"] for e in jsonl(folder / "events.jsonl")}
                assert sub.wait_for(lambda s: {e["id"] for e in s.events("t/road/events")} >= waited, 45)
                service.close()
                expected = {e["id"] for e in jsonl(folder / "events.jsonl")}
                assert sub.wait_for(lambda s: {e["id"] for e in s.events("t/road/events")} == expected, 10)
        finally:
            service.close()
    assert service.output_stats()["mqtt"]["dropped"] == 0


def test_the_drain_is_bounded_when_the_broker_never_comes(folder: Path):
    port = free_port()
    write_config(folder, f"mqtt: {{host: 127.0.0.1, port: {port}, topic: t}}\njsonl: events.jsonl",
                 cameras=("road",))
    cfg = parse_watch_config((folder / "cameras.yaml").read_text(encoding="utf-8"), folder / "cameras.yaml")
    with fake_detector(mode="throughput") as det:
        service = WatchService(cfg, det).start()
        try:
            assert wait_for(lambda: len(jsonl(folder / "events.jsonl")) >= 4, 30)
        finally:
            began = time.monotonic()
            service.close()
            took = time.monotonic() - began
    stats = service.output_stats()["mqtt"]
    events = len(jsonl(folder / "events.jsonl"))
    assert took < 5.0 + 3.0, f"the drain took {took:.1f} s"  # the MQTT sink's close_timeout_s, plus the cameras'
    assert stats["sent"] == 0 and stats["dropped"] == events  # what never went out is counted, not lost silently


def test_every_output_the_config_accepts_is_built_with_its_settings(folder: Path):
    """The config's ``outputs:`` and the sinks' constructors agree (each key reaches its sink)."""
    from yolo_ov.io.mqtt import MqttSink
    from yolo_ov.io.webhook import WebhookSink
    from yolo_ov.watch.outputs import EventsJsonlSink, build_outputs

    path = write_config(folder, "mqtt: {host: 127.0.0.1, port: 1884, topic: t, qos: 0, client_id: c, username: u, "
                                "password: p, buffer: 7}\n"
                                "jsonl: events.jsonl\n"
                                "webhook: {url: 'http://127.0.0.1:9/e', secret: s, timeout_s: 2, buffer: 9}")
    sinks = build_outputs(parse_watch_config(path.read_text(encoding="utf-8"), path))
    try:
        assert isinstance(sinks["jsonl"], EventsJsonlSink)
        mqtt, hook = sinks["mqtt"], sinks["webhook"]
        assert isinstance(mqtt, MqttSink) and isinstance(hook, WebhookSink)
        assert (mqtt.port, mqtt.topic, mqtt.qos, mqtt.client_id, mqtt.username, mqtt.buffer) == (1884, "t", 0, "c",
                                                                                                "u", 7)
        assert (hook.url, hook.timeout_s) == ("http://127.0.0.1:9/e", 2.0)
    finally:
        for sink in sinks.values():
            sink.close()


def test_a_real_rtsp_camera_and_model_through_watch_with_the_page_mqtt_and_jsonl(shared: Any, rtsp: None,
                                                                                   tmp_path: Path):
    """Model tier, all real: GStreamer's RTSP server playing the traffic clip, yolov8n, mosquitto, the page."""
    from tests.rtsp_support import RtspCamera

    mosquitto_or_skip()
    clip = shared.root / "data" / "video" / "traffic_540p.mp4"
    with RtspCamera({"road": str(clip)}) as camera, Broker() as broker, Subscriber(broker.port, "t/#") as sub:
        path = tmp_path / "cameras.yaml"
        path.write_text(f"model: {shared.fp32_model}\ncameras:\n  road:\n    url: {camera.url('road')}\n"
                        f"    lines:\n      across: [[0, 270], [960, 270]]\n"
                        f"outputs:\n  mqtt: {{host: 127.0.0.1, port: {broker.port}, topic: t}}\n"
                        f"  jsonl: events.jsonl\n", encoding="utf-8")
        watch = Watch(tmp_path, path, "--port", 0, model=True)
        try:
            url = watch.page_url(60)
            objects = lambda: [e for e in jsonl(tmp_path / "events.jsonl") if e["type"] != "camera"]  # noqa: E731
            assert wait_for(lambda: len(objects()) >= 5, 60, every=0.5), watch.err
            road = get_json(f"{url}/cameras.json")["cameras"][0]
            assert road["name"] == "road" and road["state"] == "live" and road["frames"]["inferred"] > 0
            assert sum(road["events"].values()) > 0
            assert len(first_jpeg(f"{url}/cameras/road/stream.mjpg")) > 5000
            code = watch.stop(signal.SIGTERM)
        finally:
            watch.kill()
        assert code == 0, watch.err
        expected = {e["id"] for e in jsonl(tmp_path / "events.jsonl")}
        assert sub.wait_for(lambda s: {e["id"] for e in s.events("t/road/events")} >= expected, 10)
        assert {e["id"] for e in sub.events("t/road/events")} == expected
        assert retained(broker.port, "t/status") == b"offline"
    print(f"\n{len(expected)} events ({len(objects())} object events) on JSONL and MQTT alike; page at {url}; "
          f"{road['fps']} fps, latency {road['latency_s']:.3f} s")
