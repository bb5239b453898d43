"""The ``Sink`` contract and ``Sinks``: every built-in output implements it, a new one is a plain class,
one record reaches every output or none, and Ctrl-C/SIGTERM never tears a write."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.fakes import expected_for, fake_detector, uniform_image
from yolo_ov import ConfigError, Detections, Failure, OutputError
from yolo_ov.io.signals import Terminated, deferred, terminate_as_interrupt
from yolo_ov.io.sinks import (
    AnnotatedImageSink,
    CocoJsonSink,
    JsonlSink,
    Sink,
    SinkBase,
    Sinks,
    VideoSink,
)
from yolo_ov.results import Classification


def _det(source="x/000000000042.jpg", stream=None, frame=None, hw=(64, 64)) -> Detections:
    return Detections(np.array([[4, 4, 20, 20]], np.float32), np.array([0.8], np.float32), np.array([1], np.int32),
                      {0: "person", 1: "car"}, hw, source, stream=stream, frame=frame)


class Recorder:
    """A new output as issue 22 would add one (MQTT, a webhook): a plain class, no base class."""

    needs_images = False

    def __init__(self) -> None:
        self.events: list[object] = []
        self.closed = False

    def open(self) -> None:
        self.events.append("open")

    def write(self, record, image=None, *, extra=None) -> None:
        if self.closed:
            raise ConfigError("closed")
        self.events.append((record.to_json(), extra))

    def close(self) -> None:
        self.closed = True
        self.events.append("close")

    def describe(self) -> str:
        return f"recorder ({len(self.events)} events)"

    def __enter__(self) -> Recorder:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.mark.parametrize("make", [
    lambda p: JsonlSink(p / "a.jsonl"),
    lambda p: CocoJsonSink(p / "a.json"),
    lambda p: AnnotatedImageSink(p / "vis"),
    lambda p: VideoSink(p / "a.avi"),
    lambda p: Recorder(),
])
def test_every_output_implements_the_sink_contract(tmp_path, make):
    sink = make(tmp_path)
    try:
        assert isinstance(sink, Sink)
    finally:
        sink.close()


def test_only_the_drawing_sinks_ask_for_images(tmp_path):
    assert [s.needs_images for s in (JsonlSink(tmp_path / "a.jsonl"), CocoJsonSink(tmp_path / "b.json"),
                                      AnnotatedImageSink(tmp_path / "v"), VideoSink(tmp_path / "c.avi"))] == \
        [False, False, True, True]
    with Sinks([JsonlSink(tmp_path / "x.jsonl")]) as only_json:
        assert not only_json.needs_images
    with Sinks([JsonlSink(tmp_path / "y.jsonl"), AnnotatedImageSink(tmp_path / "v")]) as with_images:
        assert with_images.needs_images


def test_sinks_fan_a_record_out_to_every_sink_in_order(tmp_path):
    rec = Recorder()
    with Sinks([JsonlSink(tmp_path / "a.jsonl"), None, rec]) as sinks:
        assert len(sinks) == 2
        sinks.write(_det("a.jpg"))
        sinks.write(Failure("b.jpg", "broken"))
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["source"] for x in lines] == ["a.jpg", "b.jpg"]
    assert rec.events[0] == "open" and rec.events[-1] == "close"
    assert [json.loads(e[0])["source"] for e in rec.events[1:-1]] == ["a.jpg", "b.jpg"]


def test_sinks_describe_what_each_output_holds(tmp_path):
    with Sinks([JsonlSink(tmp_path / "a.jsonl"), CocoJsonSink(tmp_path / "c.json"),
                AnnotatedImageSink(tmp_path / "vis"), VideoSink(tmp_path / "v.avi")]) as sinks:
        assert sinks.describe().endswith("; video: none written")
        sinks.write(_det("a.jpg"), np.zeros((64, 64, 3), np.uint8))
        text = sinks.describe()
    assert text == (f"; JSONL: {tmp_path / 'a.jsonl'} (1 lines); COCO: {tmp_path / 'c.json'} (1 detections)"
                    f"; annotated: {tmp_path / 'vis'} (1 images); video: {tmp_path / 'v.avi'} (1 frames)")
    assert Sinks().describe() == ""


def test_extra_fields_go_into_the_json_record(tmp_path):
    counts = {"lines": {"line1": {"in": 1, "out": 0}}, "zones": {}}
    with JsonlSink(tmp_path / "t.jsonl") as sink:
        sink.write(_det("a.jpg"), extra={"counts": counts})
        sink.write(_det("b.jpg"))
    first, second = (json.loads(x) for x in (tmp_path / "t.jsonl").read_text(encoding="utf-8").splitlines())
    assert first["counts"] == counts and first["detections"] == second["detections"]
    assert "counts" not in second


def test_image_sinks_skip_failures_and_records_without_their_image(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    with AnnotatedImageSink(tmp_path / "vis") as images, VideoSink(tmp_path / "v.avi") as video:
        for sink in (images, video):
            sink.write(Failure("a.jpg", "broken"), image)
            sink.write(_det("b.jpg"))
        assert images.write(_det("c.png"), image) == tmp_path / "vis" / "c.png"
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["c.png"]
    assert video.frames == 0 and not (tmp_path / "v.avi").exists()


def test_coco_sink_skips_classifications(tmp_path):
    cls = Classification(np.array([0.2, 0.8], np.float32), {0: "cat", 1: "dog"}, (10, 10), "a.jpg")
    with CocoJsonSink(tmp_path / "c.json") as coco, JsonlSink(tmp_path / "c.jsonl") as jsonl:
        for sink in (coco, jsonl):
            sink.write(cls)
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8")) == []
    assert json.loads((tmp_path / "c.jsonl").read_text(encoding="utf-8"))["top5"][0]["class_name"] == "dog"


@pytest.mark.parametrize("make", [lambda p: JsonlSink(p / "a.jsonl"), lambda p: CocoJsonSink(p / "a.json")])
def test_a_write_after_close_is_an_error(tmp_path, make):
    sink = make(tmp_path)
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(ConfigError, match="closed"):
        sink.write(_det())


def test_coco_file_is_valid_json_once_closed_even_after_an_error(tmp_path):
    def run() -> None:
        with CocoJsonSink(tmp_path / "c.json") as coco:
            coco.write(_det("1.jpg"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run()
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))[0]["image_id"] == 1


class _Failing(SinkBase):
    def __init__(self, where: str) -> None:
        self.where, self.closed = where, False
        if where == "init":
            raise OutputError("cannot open")

    def open(self) -> None:
        if self.where == "open":
            raise OutputError("cannot connect")

    def write(self, record, image=None, *, extra=None) -> None:
        raise OutputError("disk full")

    def close(self) -> None:
        self.closed = True
        if self.where == "close":
            raise OutputError("cannot flush")


def test_opening_closes_the_sinks_already_built_when_one_fails(tmp_path):
    built: list[Recorder] = []

    def recorder() -> Recorder:
        built.append(Recorder())
        return built[-1]

    with pytest.raises(OutputError, match="cannot open"):
        Sinks.opening(recorder, lambda: None, lambda: _Failing("init"), recorder)
    assert len(built) == 1 and built[0].closed


def test_open_closes_the_sinks_already_open_when_one_cannot_open():
    first, second = Recorder(), Recorder()
    with pytest.raises(OutputError, match="cannot connect"), Sinks([first, _Failing("open"), second]):
        pass
    assert first.closed and "open" not in second.events


def test_close_closes_every_sink_then_raises_the_first_failure():
    a, b = Recorder(), Recorder()
    bad = _Failing("close")
    with pytest.raises(OutputError, match="cannot flush"):
        Sinks([a, bad, b]).close()
    assert a.closed and bad.closed and b.closed


def test_a_failing_write_stops_the_record_at_that_sink():
    before, after = Recorder(), Recorder()
    with pytest.raises(OutputError, match="disk full"):
        Sinks([before, _Failing("write"), after]).write(_det("a.jpg"))
    assert len(before.events) == 1 and after.events == []


def _signal_during_write(sinks: Sinks, signum: int) -> None:
    """Write one record while ``signum`` arrives inside the first sink's write."""

    class Interrupting(Recorder):
        def write(self, record, image=None, *, extra=None) -> None:
            os.kill(os.getpid(), signum)
            super().write(record, image, extra=extra)

    sinks.sinks.insert(0, Interrupting())
    sinks.write(_det("a.jpg"))


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_during_a_write_waits_until_the_record_is_in_every_sink(tmp_path, signum, raised):
    jsonl = JsonlSink(tmp_path / "a.jsonl")
    last = Recorder()
    sinks = Sinks([jsonl, last])
    with pytest.raises(raised), terminate_as_interrupt():
        _signal_during_write(sinks, signum)
    sinks.close()
    assert (tmp_path / "a.jsonl").read_text(encoding="utf-8").count("\n") == 1  # written whole
    assert len(last.events) == 2 and last.events[-1] == "close"  # the sink after it got the record too


def test_a_built_in_sink_write_alone_is_signal_safe(tmp_path):
    sink = JsonlSink(tmp_path / "a.jsonl")
    real = sink._file.append  # type: ignore[union-attr]

    def append_then_signal(data: bytes) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write
        real(data)

    sink._file.append = append_then_signal  # type: ignore[union-attr,method-assign]
    with pytest.raises(Terminated), terminate_as_interrupt():
        sink.write(_det("a.jpg"))
    sink.close()
    assert sink.count == 1 and json.loads((tmp_path / "a.jsonl").read_text(encoding="utf-8"))["source"] == "a.jpg"


def test_deferred_outside_the_handlers_changes_nothing():
    with deferred():
        pass
    if threading.current_thread() is threading.main_thread():
        with terminate_as_interrupt(), deferred(), deferred():
            pass  # nested sections, no signal: nothing raised

def test_fake_detector_results_through_every_sink(tmp_path):
    """The whole path without a model: results of the fake engine, written by each output."""
    values = [30, 90, 150]
    images = [uniform_image(v) for v in values]
    with fake_detector() as det, Sinks([JsonlSink(tmp_path / "r.jsonl"), CocoJsonSink(tmp_path / "r.json"),
                                        AnnotatedImageSink(tmp_path / "vis"), VideoSink(tmp_path / "r.avi")]) as sinks:
        for k, (record, image) in enumerate(zip(det.iter_predict(images), images, strict=True)):
            record.source, record.stream, record.frame = f"img{k}.png", 0, k
            sinks.write(record, image)
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(d["detections"][0]["class_id"], d["detections"][0]["confidence"]) for d in lines] == \
        [pytest.approx(expected_for(v), abs=1e-3) for v in values]
    coco = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert [c["image_id"] for c in coco] == ["img0_0_0", "img1_0_1", "img2_0_2"]
    assert len(list((tmp_path / "vis").iterdir())) == 3
    cap = cv2.VideoCapture(str(tmp_path / "r.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_annotated_names_do_not_collide(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    with AnnotatedImageSink(tmp_path / "vis") as sink:
        paths = [sink.write(_det(src), image) for src in ("a/x.jpg", "b/x.jpg", "<array>", "v.mp4")]
    assert [Path(p).name for p in paths] == ["x.jpg", "x_1.jpg", "image.jpg", "v.jpg"]


def test_writes_from_another_thread_leave_the_main_threads_signals_alone(tmp_path):
    """A sink written from a worker thread (a stream_callback) must not defer the main thread's signals."""
    from yolo_ov.io import signals

    sink = JsonlSink(tmp_path / "a.jsonl")
    seen = []

    def worker() -> None:
        with deferred():
            seen.append(signals._depth)
        sink.write(_det("t.jpg"))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    sink.close()
    assert seen == [0] and signals._depth == 0 and sink.count == 1


# -- every output or none, on a full disk (issue 24, item 6) ----------------------------------------

def _enospc_on(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The annotated image named ``name`` meets a full disk as it is moved into place."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            raise OSError(28, os.strerror(28), str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_a_record_an_annotated_image_failed_on_is_taken_back_from_the_other_outputs(tmp_path, monkeypatch):
    _enospc_on(monkeypatch, "b.jpg")
    image = np.zeros((64, 64, 3), np.uint8)
    sinks = Sinks([JsonlSink(tmp_path / "a.jsonl"), CocoJsonSink(tmp_path / "c.json"),
                   AnnotatedImageSink(tmp_path / "v")])
    with sinks:
        sinks.write(_det("a.jpg"), image)
        with pytest.raises(OutputError, match=r"b\.jpg: cannot write the annotated image \(No space left on device\)"):
            sinks.write(_det("b.jpg"), image)
        assert "(1 lines)" in sinks.describe() and "(1 detections)" in sinks.describe()
    assert [json.loads(x)["source"] for x in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()] == \
        ["a.jpg"]
    assert [e["image_id"] for e in json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))] == ["a"]
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["a.jpg"]


def test_a_record_the_jsonl_failed_on_takes_its_annotated_image_back(tmp_path, monkeypatch):
    image = np.zeros((64, 64, 3), np.uint8)
    images, jsonl = AnnotatedImageSink(tmp_path / "v"), JsonlSink(tmp_path / "a.jsonl")
    with Sinks([images, jsonl]) as sinks:
        sinks.write(_det("a.jpg"), image)
        monkeypatch.setattr(jsonl._file._fh, "write", lambda data: (_ for _ in ()).throw(OSError(28, "full")),
                            raising=False)  # type: ignore[union-attr]
        with pytest.raises(OutputError, match="full"):
            sinks.write(_det("b.jpg"), image)
        monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["a.jpg"] and images.count == 1
    assert (tmp_path / "a.jsonl").read_text(encoding="utf-8").count("\n") == 1


def test_sinks_that_cannot_undo_are_written_first():
    class Undoable(Recorder):
        def undo(self) -> None:
            self.events.append("undo")

    first, failing = Undoable(), _Failing("write")
    with pytest.raises(OutputError, match="disk full"):
        Sinks([first, failing]).write(_det("a.jpg"))
    assert first.events == []  # the sink that could not take the record back was asked first; it failed
    kept, last = Recorder(), Undoable()
    with pytest.raises(OutputError, match="disk full"):
        Sinks([last, kept, _Failing("write")]).write(_det("a.jpg"))
    assert len(kept.events) == 1 and last.events == []  # order among the undo-less sinks is kept; last never wrote
