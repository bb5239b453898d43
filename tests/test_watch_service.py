"""The watch service on the fake engine (issue 22 item 2): looped clips as cameras, events to sinks and observers,
per-camera outputs, a camera that dies for good, the CLI's errors, and the SIGTERM drain of a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli_fakes import invoke, use_fake_detector
from tests.fakes import fake_detector
from tests.media import grey_frames, write_clip
from tests.rtsp_support import free_port
from yolo_ov import ConfigError
from yolo_ov.watch.config import parse_watch_config
from yolo_ov.watch.observer import CameraObserver
from yolo_ov.watch.outputs import EventsJsonlSink
from yolo_ov.watch.service import WatchService

ROOT = Path(__file__).resolve().parents[1]
ALL = "[[0, 0], [64, 0], [64, 64], [0, 64]]"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "m").mkdir()
    write_clip(tmp_path / "grey.avi", grey_frames([100] * 10))
    return tmp_path


def config(folder: Path, cameras: str, outputs: str = "outputs: {jsonl: events.jsonl}") -> Any:
    text = f"model: m\ncameras:\n{textwrap.indent(textwrap.dedent(cameras), '  ')}\n{outputs}\n"
    (folder / "cameras.yaml").write_text(text, encoding="utf-8")
    return parse_watch_config(text, folder / "cameras.yaml")


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class Recorder:
    """A CameraObserver that notes every call (and a sink that notes every write)."""

    needs_images = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def _note(self, name: str, value: Any = None) -> None:
        with self.lock:
            self.calls.append((name, value))

    def on_start(self, cameras: Any) -> None:
        self._note("on_start", list(cameras))

    def on_frame(self, camera: str, record: Any, image: Any, *, latency_s: float) -> None:
        self._note("on_frame", (camera, image is not None, latency_s))

    def on_dropped(self, camera: str, frames: int) -> None:
        self._note("on_dropped", (camera, frames))

    def on_health(self, camera: str, change: Any) -> None:
        self._note("on_health", (camera, change.state))

    def on_event(self, event: Any) -> None:
        self._note("on_event", event)

    def on_outputs(self, stats: Any) -> None:
        self._note("on_outputs", stats)

    def on_stop(self) -> None:
        self._note("on_stop")

    # as a sink
    def open(self) -> None:
        self._note("open")

    def write(self, record: Any, image: Any = None, *, extra: Any = None) -> None:
        self.events += list((extra or {}).get("events", ()))

    def close(self) -> None:
        self._note("close")

    def named(self, name: str) -> list[Any]:
        return [v for n, v in self.calls if n == name]


def wait_for(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_cameras_events_go_to_the_jsonl_file_and_the_observers(folder: Path):
    cfg = config(folder, f"""
        a: {{url: grey.avi, loop: true, zones: {{all: {ALL}}}}}
        b: {{url: grey.avi, loop: true}}
    """)
    observer = Recorder()
    assert isinstance(observer, CameraObserver)
    started = time.time()
    with fake_detector(mode="throughput") as det:
        service = WatchService(cfg, det, observers=[observer]).start()
        try:
            assert wait_for(lambda: all(s.inferred >= 10 for s in service.stats().values()), 20)
        finally:
            service.close()
    ended = time.time()
    events = lines(folder / "events.jsonl")
    assert sorted((e["camera"], e["type"]) for e in events if e["type"] != "camera") == [
        ("a", "appear"), ("a", "zone_enter"), ("b", "appear")]
    camera_states = [(e["camera"], e["state"]) for e in events if e["type"] == "camera"]
    assert sorted(camera_states) == [("a", "connecting"), ("a", "live"), ("b", "connecting"), ("b", "live")]
    assert len({e["id"] for e in events}) == len(events)
    assert all(started <= e["time"] <= ended for e in events)  # capture time, epoch seconds
    appear = next(e for e in events if e["type"] == "appear")
    assert appear["class_name"] == "dog" and isinstance(appear["track_id"], int) and len(appear["box"]) == 4
    # the observers saw it all, in order, from one start to one stop
    assert observer.calls[0][0] == "on_start" and observer.calls[-1][0] == "on_stop"
    assert [c.name for c in observer.named("on_start")[0]] == ["a", "b"]
    assert observer.named("on_start")[0][0].zones == {"all": ((0, 0), (64, 0), (64, 64), (0, 64))}
    frames = observer.named("on_frame")
    assert len(frames) == sum(s.inferred for s in service.stats().values())
    assert all(has_image and 0 <= latency < 5 for _, has_image, latency in frames)
    assert [e["id"] for e in observer.named("on_event")] == [e["id"] for e in events]
    assert ("a", "live") in observer.named("on_health")
    assert observer.named("on_outputs")[-1]["jsonl"]["sent"] == len(events)
    stats = service.stats()["a"]
    assert stats.state == "live" and stats.frames_read >= stats.inferred >= 10 and stats.events == 4


def test_each_camera_feeds_only_its_outputs_and_detect_every_skips_frames(folder: Path):
    cfg = config(folder, """
        a: {url: grey.avi, loop: true}
        b: {url: grey.avi, loop: true, detect_every: 3, outputs: [mqtt]}
    """, "outputs: {jsonl: events.jsonl, mqtt: {host: 127.0.0.1}}")
    mqtt = Recorder()
    with fake_detector(mode="throughput") as det:
        service = WatchService(cfg, det, outputs={"jsonl": EventsJsonlSink(folder / "events.jsonl"), "mqtt": mqtt})
        with service:
            assert wait_for(lambda: service.stats()["b"].frames_read >= 30, 20)
    assert mqtt.named("open") and mqtt.named("close")
    assert {e["camera"] for e in lines(folder / "events.jsonl")} == {"a"}
    assert {e["camera"] for e in mqtt.events} == {"a", "b"}
    b = service.stats()["b"]
    assert b.inferred <= b.frames_read / 3 + 1 and b.inferred >= b.frames_read / 3 - 2


def test_a_camera_given_up_on_is_a_failed_event_and_the_others_go_on(folder: Path):
    dead = f"http://127.0.0.1:{free_port()}/nothing"  # nothing listens: refused at once
    cfg = config(folder, f"""
        a: {{url: grey.avi, loop: true}}
        gone: {{url: "{dead}", reconnect: {{attempts: 2, first_delay_s: 0.05, max_delay_s: 0.1}}, open_timeout_s: 1}}
    """)
    with fake_detector(mode="throughput") as det, WatchService(cfg, det) as service:
        assert wait_for(lambda: service.stats()["gone"].state == "failed", 20)
        before = service.stats()["a"].inferred
        assert wait_for(lambda: service.stats()["a"].inferred >= before + 10, 10), "camera a stopped with the other"
    failed = [e for e in lines(folder / "events.jsonl") if e["camera"] == "gone" and e["type"] == "camera"]
    assert [e["state"] for e in failed][-1] == "failed" and "gave up after 2" in failed[-1]["reason"]
    assert "reconnecting" in [e["state"] for e in failed]


def test_snapshots_crop_the_object(folder: Path):
    import base64

    import cv2
    import numpy as np

    text = (f"model: m\nsnapshot: crop\ncameras:\n  a: {{url: grey.avi, loop: true, zones: {{all: {ALL}}}}}\n"
            "outputs: {jsonl: events.jsonl}\n")
    cfg = parse_watch_config(text, folder / "cameras.yaml")
    observer = Recorder()
    with fake_detector(mode="throughput") as det, WatchService(cfg, det, observers=[observer]) as service:
        assert wait_for(lambda: service.stats()["a"].events >= 4, 20)
    objects = [e for e in lines(folder / "events.jsonl") if e["type"] != "camera"]
    assert objects and all("snapshot" in e for e in objects)
    crop = cv2.imdecode(np.frombuffer(base64.b64decode(objects[0]["snapshot"]), np.uint8), cv2.IMREAD_COLOR)
    x1, y1, x2, y2 = objects[0]["box"]
    assert abs(crop.shape[1] - (x2 - x1)) <= 2 and abs(crop.shape[0] - (y2 - y1)) <= 2


def test_observers_never_see_a_camera_password(folder: Path):
    cfg = config(folder, "b: {url: 'rtsp://admin:s3cret@127.0.0.1:1/x'}")
    with fake_detector() as det:
        service = WatchService(cfg, det)
        assert [c.url for c in service.cameras] == ["rtsp://admin:***@127.0.0.1:1/x"]
        assert service.health("b").source == "rtsp://admin:***@127.0.0.1:1/x"
        service.close()


def test_an_observer_that_raises_is_logged_and_kept(folder: Path, caplog: pytest.LogCaptureFixture):
    class Broken(Recorder):
        def on_frame(self, camera: str, record: Any, image: Any, *, latency_s: float) -> None:
            super().on_frame(camera, record, image, latency_s=latency_s)
            raise RuntimeError("page crashed")

    broken = Broken()
    cfg = config(folder, "a: {url: grey.avi, loop: true}")
    with fake_detector(mode="throughput") as det, WatchService(cfg, det, observers=[broken]) as service:
        assert wait_for(lambda: len(broken.named("on_frame")) >= 5, 20)
    assert "page crashed" in caplog.text and service.error is None and broken.named("on_stop")


def test_a_class_the_model_does_not_have_is_one_line_with_its_place(folder: Path):
    cfg = config(folder, "a: {url: grey.avi, classes: [person, unicorn]}")
    with fake_detector() as det, pytest.raises(ConfigError) as caught:
        WatchService(cfg, det)
    assert str(caught.value).startswith(f"{folder / 'cameras.yaml'}:3: cameras.a.classes[1]: unknown class 'unicorn'")


def test_the_cli_runs_for_a_duration_and_reports_each_camera(folder: Path, monkeypatch: pytest.MonkeyPatch):
    config(folder, f"a: {{url: grey.avi, loop: true, zones: {{all: {ALL}}}}}")
    calls = use_fake_detector(monkeypatch)
    result = invoke("watch", folder / "cameras.yaml", "--duration", "1.5")
    assert result.exit_code == 0, result.output
    assert calls[0]["model"] == str(folder / "m") and calls[0]["runtime"].mode.value == "throughput"
    assert "a: live" in result.output and "inferred" in result.output
    assert {e["type"] for e in lines(folder / "events.jsonl")} >= {"camera", "appear", "zone_enter"}


def test_the_cli_exits_1_when_a_camera_was_given_up_on(folder: Path, monkeypatch: pytest.MonkeyPatch):
    dead = f"http://127.0.0.1:{free_port()}/nothing"
    config(folder, f"""
        a: {{url: grey.avi, loop: true}}
        gone: {{url: "{dead}", reconnect: {{attempts: 1, first_delay_s: 0.05, max_delay_s: 0.1}}, open_timeout_s: 1}}
    """)
    use_fake_detector(monkeypatch)
    result = invoke("watch", folder / "cameras.yaml", "--duration", "2")
    assert result.exit_code == 1, result.output
    assert "gone: failed" in result.output and "a: live" in result.output


def test_the_cli_refuses_a_typo_in_one_line_before_a_model_loads(folder: Path, monkeypatch: pytest.MonkeyPatch):
    (folder / "bad.yaml").write_text("model: m\ncameras:\n  a:\n    url: grey.avi\n    detect_evry: 2\n",
                                     encoding="utf-8")
    calls = use_fake_detector(monkeypatch)
    result = invoke("watch", folder / "bad.yaml")
    assert result.exit_code == 2 and not calls
    assert result.output.strip() == (f"error: {folder / 'bad.yaml'}:5: cameras.a.detect_evry: unknown key; "
                                     "did you mean detect_every?")


def test_the_cli_says_in_one_line_when_the_model_cannot_load(folder: Path):
    config(folder, "a: {url: grey.avi}")
    result = invoke("watch", folder / "cameras.yaml")
    assert result.exit_code == 3 and len(result.output.strip().splitlines()) == 1, result.output
    assert "no .xml model file" in result.output


RUN_ON_THE_FAKE = """
import sys
sys.path.insert(0, {root!r})
from tests.fakes import fake_detector
from yolo_ov.cli import _options, main
_options.open_detector = lambda model, *, runtime, detect: fake_detector(mode=runtime.mode.value, detect=detect)
sys.argv = ["yolo-ov", "watch", {config!r}]
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_drains_the_service_and_exits_0_with_every_event_written(folder: Path, signum: int):
    config(folder, f"""
        a: {{url: grey.avi, loop: true, zones: {{all: {ALL}}}}}
        b: {{url: grey.avi, loop: true}}
    """)
    script = RUN_ON_THE_FAKE.format(root=str(ROOT), config=str(folder / "cameras.yaml"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (folder / "events.jsonl").exists() and sum(
            e["type"] == "appear" for e in lines(folder / "events.jsonl")) >= 2, 30), "no events"
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"stopped ({signal.Signals(signum).name}), drained" in err
    assert "Traceback" not in err
    events = lines(folder / "events.jsonl")  # every line whole
    assert sorted(e["camera"] for e in events if e["type"] == "appear") == ["a", "b"]
    assert not [e for e in events if e["type"] == "camera" and e["state"] == "failed"]  # stopping is not failing
