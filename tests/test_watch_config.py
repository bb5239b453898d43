"""cameras.yaml (issue 22): the issue's example as written, and every mistake one line with file:line: field."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolo_ov import ConfigError
from yolo_ov.watch.config import load_watch_config, parse_watch_config, redact

ISSUE_EXAMPLE = """\
# cameras.yaml
model: ../shared/models/yolov8n_openvino_model
cameras:
  road:
    url: rtsp://127.0.0.1:8554/road
    lines:
      northbound: [[0, 300], [960, 300]]
  hall:
    url: rtsp://127.0.0.1:8555/hall
    zones:
      entrance: [[0, 0], [640, 0], [640, 720], [0, 720]]
outputs:
  mqtt: {host: 127.0.0.1, port: 1883, topic: yolo-ov}
  jsonl: events.jsonl
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A config folder with the model folder the issue's example names (relative to the file)."""
    (tmp_path / "shared" / "models" / "yolov8n_openvino_model").mkdir(parents=True)
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "clip.avi").write_bytes(b"not checked here")
    return tmp_path / "here"


def load(folder: Path, text: str) -> object:
    path = folder / "cameras.yaml"
    path.write_text(text, encoding="utf-8")
    return load_watch_config(path)


def test_the_issue_example_works_as_written(folder: Path):
    config = load(folder, ISSUE_EXAMPLE)
    assert config.model == (folder / "../shared/models/yolov8n_openvino_model")
    assert [c.name for c in config.cameras] == ["road", "hall"]
    road, hall = config.cameras
    assert road.url == "rtsp://127.0.0.1:8554/road" and road.lines == {"northbound": ((0.0, 300.0), (960.0, 300.0))}
    assert hall.zones["entrance"] == ((0, 0), (640, 0), (640, 720), (0, 720))
    assert config.mqtt is not None and (config.mqtt.host, config.mqtt.port, config.mqtt.topic, config.mqtt.qos) == (
        "127.0.0.1", 1883, "yolo-ov", 1)
    assert config.jsonl == folder / "events.jsonl"  # relative to the file's folder, as the model
    assert config.mode == "throughput" and config.snapshot == "none" and road.detect_every == 1
    assert road.capture.reconnect.max_attempts is None and road.capture.rtsp_transport == "tcp"
    assert config.output_names == ("jsonl", "mqtt")


def test_every_camera_setting_is_read(folder: Path):
    config = load(folder, ISSUE_EXAMPLE.replace("    url: rtsp://127.0.0.1:8554/road\n", """\
    url: clip.avi
    detect_every: 3
    classes: [person, 2]
    conf: 0.4
    outputs: [jsonl]
    reconnect: {attempts: 4, first_delay_s: 0.2, max_delay_s: 5}
    read_timeout_s: 3
    rtsp_transport: udp
    loop: true
""") + "snapshot: crop\ndevice: GPU\nprecision: fp16\nmode: latency\ntracker: botsort\n")
    road = config.cameras[0]
    assert road.url == str(folder / "clip.avi") and road.detect_every == 3 and road.classes == ("person", 2)
    assert road.conf == 0.4 and road.outputs == ("jsonl",) and road.capture.loop
    assert (road.capture.reconnect.max_attempts, road.capture.reconnect.first_delay_s,
            road.capture.reconnect.max_delay_s) == (4, 0.2, 5.0)
    assert road.capture.read_timeout_s == 3.0 and road.capture.rtsp_transport == "udp"
    assert (config.snapshot, config.device, config.precision, config.mode, config.tracker) == (
        "crop", "GPU", "f16", "latency", "botsort")


@pytest.mark.parametrize(("edit", "expected"), [
    # a typo in a key: the line, the dotted path, the nearest key
    (("    lines:", "    linez:"), "cameras.yaml:6: cameras.road.linez: unknown key; did you mean lines?"),
    (("outputs:", "outptus:"), "cameras.yaml:12: outptus: unknown key; did you mean outputs?"),
    (("topic: yolo-ov}", "topik: yolo-ov}"), "cameras.yaml:13: outputs.mqtt.topik: unknown key; did you mean topic?"),
    # a line that is not two points: the issue's own example of the message
    (("[[0, 300], [960, 300]]", "[[0, 300]]"),
     "cameras.yaml:7: cameras.road.lines.northbound: expected two [x, y] points"),
    (("[[0, 300], [960, 300]]", "[[0, 300], [0, 300]]"),
     "cameras.yaml:7: cameras.road.lines.northbound: its two points are the same"),
    (("[[0, 300], [960, 300]]", "[[0, 300], [960, y]]"),
     "cameras.yaml:7: cameras.road.lines.northbound[1]: expected an [x, y] point in pixels"),
    # polygons
    (("[[0, 0], [640, 0], [640, 720], [0, 720]]", "[[0, 0], [640, 0]]"),
     "cameras.yaml:11: cameras.hall.zones.entrance: expected a polygon of at least 3 [x, y] points"),
    (("[[0, 0], [640, 0], [640, 720], [0, 720]]", "[[0, 0], [1, 1], [2, 2]]"),
     "cameras.yaml:11: cameras.hall.zones.entrance: the polygon has no area"),
    # URLs refused at start
    (("rtsp://127.0.0.1:8555/hall", "rtmp://127.0.0.1/hall"),
     "cameras.yaml:9: cameras.hall.url: rtmp://127.0.0.1/hall: unsupported URL scheme rtmp://"),
    (("rtsp://127.0.0.1:8555/hall", "ftp://cam/hall"), "cameras.yaml:9: cameras.hall.url: ftp://cam/hall: "
                                                        "unsupported URL scheme ftp://"),
    (("rtsp://127.0.0.1:8555/hall", "hall.mp4"), "cameras.yaml:9: cameras.hall.url: hall.mp4: no such video file"),
    (("    url: rtsp://127.0.0.1:8555/hall\n", ""), "cameras.yaml:8: cameras.hall: missing url"),
    # values
    (("port: 1883", "port: 99999"), "cameras.yaml:13: outputs.mqtt.port: expected a number between 1 and 65535"),
    (("port: 1883", "port: '1883'"), "cameras.yaml:13: outputs.mqtt.port: expected an integer, got text '1883'"),
    (("topic: yolo-ov", "topic: 'a/#'"), "cameras.yaml:13: outputs.mqtt.topic: 'a/#': expected a topic prefix"),
    (("    url: rtsp://127.0.0.1:8554/road\n", "    url: rtsp://127.0.0.1:8554/road\n    detect_every: 0\n"),
     "cameras.yaml:6: cameras.road.detect_every: expected a number >= 1, got 0"),
    (("    url: rtsp://127.0.0.1:8554/road\n", "    url: rtsp://127.0.0.1:8554/road\n    conf: 2\n"),
     "cameras.yaml:6: cameras.road.conf: expected a number between 0 and 1, got 2"),
    (("    url: rtsp://127.0.0.1:8554/road\n", "    url: rtsp://127.0.0.1:8554/road\n    outputs: [mqt]\n"),
     "cameras.yaml:6: cameras.road.outputs[0]: unknown output 'mqt'; did you mean mqtt?"),
    (("    url: rtsp://127.0.0.1:8554/road\n", "    url: rtsp://127.0.0.1:8554/road\n    reconnect: sometimes\n"),
     "cameras.yaml:6: cameras.road.reconnect: expected auto, off, a number of attempts or a mapping"),
    (("model: ../shared/models/yolov8n_openvino_model", "model: nowhere"), "cameras.yaml:2: model: nowhere: no such "
                                                                           "model"),
    (("  jsonl: events.jsonl", "  jsonl: events.jsonl\nmode: fast"), "cameras.yaml:15: mode: expected one of "
                                                                      "latency, throughput, got text 'fast'"),
    # YAML itself, and a key given twice
    (("[[0, 0], [640, 0], [640, 720], [0, 720]]", "[[0, 0], [640, 0]"), "cameras.yaml:12: not valid YAML"),
    (("  hall:", "  road:"), "cameras.yaml:8: cameras.road: given twice"),
])
def test_a_mistake_is_one_line_with_file_line_and_field(folder: Path, edit: tuple[str, str], expected: str):
    old, new = edit
    assert old in ISSUE_EXAMPLE
    with pytest.raises(ConfigError) as caught:
        load(folder, ISSUE_EXAMPLE.replace(old, new, 1))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(folder / expected.split(":", 1)[0]) + ":" + expected.split(":", 1)[1]), message


@pytest.mark.parametrize(("url", "kept"), [
    ("rtsp://cam/1", "rtsp://cam/1"), ("RTSPS://cam/1", "RTSPS://cam/1"), ("http://cam/mjpg", "http://cam/mjpg"),
    ("https://cam/x", "https://cam/x"), ("0", "0"), (3, "3"),
])
def test_accepted_camera_urls(folder: Path, url: object, kept: str):
    config = parse_watch_config(f"model: .\ncameras:\n  c:\n    url: {url}\n", "c.yaml", base=folder)
    assert config.cameras[0].url == kept


def test_a_missing_file_and_an_empty_one_are_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^nope\.yaml: no such config file$"):
        load_watch_config("nope.yaml")
    (tmp_path / "e.yaml").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_watch_config(tmp_path / "e.yaml")
    (tmp_path / "e.yaml").write_text("model: .\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"e\.yaml: missing cameras:"):
        load_watch_config(tmp_path / "e.yaml")


def test_where_names_the_line_of_a_field_for_errors_found_later(folder: Path):
    config = load(folder, ISSUE_EXAMPLE)
    assert config.where("cameras.hall.zones") == f"{folder / 'cameras.yaml'}:10: cameras.hall.zones"


def test_a_password_in_a_camera_url_is_hidden_where_it_is_shown(folder: Path):
    assert redact("rtsp://admin:s3cret@10.0.0.7:554/stream1") == "rtsp://admin:***@10.0.0.7:554/stream1"
    assert redact("rtsp://10.0.0.7/stream1") == "rtsp://10.0.0.7/stream1"
    assert redact("http://user@cam/x") == "http://user@cam/x" and redact("0") == "0"
    with pytest.raises(ConfigError) as caught:
        parse_watch_config("model: .\ncameras:\n  c: {url: 'rtmp://admin:s3cret@cam/1'}\n", "c.yaml", base=folder)
    assert "s3cret" not in str(caught.value) and "rtmp://admin:***@cam/1" in str(caught.value)
