"""The watch service's config file (``cameras.yaml``): parsed, validated, with line numbers in every error.

A person writes this file by hand, so a mistake must point at the line:
``cameras.yaml:7: cameras.road.lines.northbound: expected two [x, y] points``.
The YAML is composed into nodes first (PyYAML's ``compose`` keeps each
node's position), turned into plain values while every dotted path's line
is remembered, and only then checked field by field; an unknown key is
answered with the nearest known one ("did you mean detect_every?").

Paths in the file (``model``, ``outputs.jsonl``) are relative to the file's
folder, so a config works from any working directory. Camera URLs are
checked at start: ``rtsp://``, ``rtsps://``, ``http://``, ``https://``, a
video file that exists, or a device index; anything else is refused before
a model loads.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "m").mkdir()
    >>> _ = (folder / "c.yaml").write_text(
    ...     "model: m\\ncameras:\\n  road:\\n    url: rtsp://127.0.0.1:8554/road\\n", encoding="utf-8")
    >>> load_watch_config(folder / "c.yaml").cameras[0].name
    'road'
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..io.capture import CaptureConfig, ReconnectConfig

__all__ = ["SNAPSHOTS", "CameraConfig", "MqttOutput", "WatchConfig", "WebhookOutput", "load_watch_config", "redact"]

#: What an object event may carry as a picture: nothing, the whole frame, or the object's box.
SNAPSHOTS = ("none", "frame", "crop")
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
MODES = ("latency", "throughput")
Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class MqttOutput:
    """``outputs.mqtt``: the broker and the topic prefix (events on ``<topic>/<camera>/events``)."""

    host: str
    port: int = 1883
    topic: str = "yolo-ov"
    qos: int = 1
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    buffer: int = 10000


@dataclass(frozen=True, slots=True)
class WebhookOutput:
    """``outputs.webhook``: where events are POSTed, and the HMAC-SHA256 secret that signs them."""

    url: str
    secret: str | None = None
    timeout_s: float = 5.0
    buffer: int = 10000


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """One camera of the file.

    Attributes:
        name: its key under ``cameras`` (event ``camera`` field, MQTT topic level).
        url: RTSP/HTTP URL, video file (absolute) or device index (as text).
        detect_every: infer every Nth frame of this camera (the others are read, not decoded).
        classes: class names or ids whose tracks make events (``None``: all).
        conf: the lowest confidence of a tracked object that makes events.
        zones: named polygons (frame pixels).
        lines: named two-point lines (frame pixels).
        outputs: the outputs this camera's events go to (``None``: every output).
        capture: how it is opened and reconnected (time-outs, back-off, looping a file).
    """

    name: str
    url: str
    detect_every: int = 1
    classes: tuple[int | str, ...] | None = None
    conf: float = 0.25
    zones: Mapping[str, tuple[Point, ...]] = field(default_factory=dict)
    lines: Mapping[str, tuple[Point, Point]] = field(default_factory=dict)
    outputs: tuple[str, ...] | None = None
    capture: CaptureConfig = field(default_factory=CaptureConfig)


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """The whole file.

    Attributes:
        path: the file itself (errors name it as given).
        model: the model folder or ``.xml``, resolved against the file's folder.
        device, precision, mode: the runtime settings as the CLI names them
            (``--device``, ``--precision``, ``--mode``; throughput by default).
        tracker: ``bytetrack`` or ``botsort``.
        cameras: in file order.
        mqtt, webhook: the network outputs, when configured.
        jsonl: the events file, resolved against the file's folder.
        snapshot: ``none``, ``frame`` or ``crop`` (a base64 JPEG in object events).
        origins: ``"file:line"`` of every dotted path, for errors found later (an unknown class name).
    """

    path: Path
    model: Path
    cameras: tuple[CameraConfig, ...]
    device: str = "CPU"
    precision: str | None = None
    mode: str = "throughput"
    tracker: str = "bytetrack"
    mqtt: MqttOutput | None = None
    webhook: WebhookOutput | None = None
    jsonl: Path | None = None
    snapshot: str = "none"
    origins: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The outputs configured, in a fixed order."""
        return tuple(n for n, v in (("jsonl", self.jsonl), ("mqtt", self.mqtt), ("webhook", self.webhook))
                     if v is not None)

    def where(self, path: str) -> str:
        """``"cameras.yaml:9: path"``: how an error about ``path`` starts."""
        return f"{self.origins.get(path, str(self.path))}: {path}"


# -- YAML with positions -----------------------------------------------------------------------------------


class _Doc:
    """The file's values plus the line of every dotted path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[str, int] = {}

    def at(self, path: str) -> str:
        line = self.lines.get(path)
        while line is None and "." in path:
            path = path.rsplit(".", 1)[0]
            line = self.lines.get(path)
        return f"{self.file}:{line}" if line else self.file

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.at(path)}: {path}: {message}" if path else f"{self.at(path)}: {message}")


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _compose(text: str, file: str) -> tuple[_Doc, Any]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file}{line}: not valid YAML ({exc.problem or exc.context})") from None
    doc = _Doc(file)
    if node is None:
        raise ConfigError(f"{file}: the file is empty; it needs at least model: and cameras:")
    return doc, _to_value(doc, node, "")


def _to_value(doc: _Doc, node: yaml.Node, path: str) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node)) if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            sub = f"{path}.{key}" if path else key
            doc.lines[sub] = key_node.start_mark.line + 1
            if key in out:
                raise doc.error(sub, "given twice")
            out[key] = _to_value(doc, value_node, sub)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_value(doc, n, f"{path}[{i}]") for i, n in enumerate(node.value)]
    return _scalar(node)


# -- checking ----------------------------------------------------------------------------------------------


def _mapping(doc: _Doc, value: Any, path: str, known: tuple[str, ...], what: str = "a mapping") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(path, f"expected {what}, got {_kind(value)}")
    for key in value:
        if key not in known:
            sub = f"{path}.{key}" if path else key
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; expected one of {', '.join(known)}"
            raise doc.error(sub, f"unknown key{hint}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: f"text {value!r}", bool: f"{value}"}.get(
        type(value), f"{type(value).__name__} {value!r}")


def _str(doc: _Doc, value: Any, path: str) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
        raise doc.error(path, f"expected text, got {_kind(value)}")
    return str(value)


def _number(doc: _Doc, value: Any, path: str, *, low: float | None = None, high: float | None = None,
            integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise doc.error(path, f"expected {'an integer' if integer else 'a number'}, got {_kind(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"between {low} and {high}" if low is not None and high is not None else (
            f">= {low}" if low is not None else f"<= {high}")
        raise doc.error(path, f"expected a number {span}, got {value}")
    return value


def _point(doc: _Doc, value: Any, path: str) -> Point:
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise doc.error(path, f"expected an [x, y] point in pixels, got {_kind(value)}")
    return float(value[0]), float(value[1])


def _line(doc: _Doc, value: Any, path: str) -> tuple[Point, Point]:
    if not isinstance(value, list) or len(value) != 2:
        raise doc.error(path, "expected two [x, y] points, e.g. [[0, 300], [960, 300]]")
    a, b = _point(doc, value[0], f"{path}[0]"), _point(doc, value[1], f"{path}[1]")
    if a == b:
        raise doc.error(path, "its two points are the same")
    return a, b


def _polygon(doc: _Doc, value: Any, path: str) -> tuple[Point, ...]:
    if not isinstance(value, list) or len(value) < 3:
        raise doc.error(path, "expected a polygon of at least 3 [x, y] points, "
                              "e.g. [[0, 0], [640, 0], [640, 720]]")
    points = tuple(_point(doc, v, f"{path}[{i}]") for i, v in enumerate(value))
    area = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True))
    if abs(area) < 1e-9:
        raise doc.error(path, "the polygon has no area (its points are on one line)")
    return points


def redact(url: str) -> str:
    """``url`` with its password hidden, for what is printed or shown on a page.

    >>> redact("rtsp://admin:secret@10.0.0.7/stream1")
    'rtsp://admin:***@10.0.0.7/stream1'
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo.split("/")[0]:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def check_url(url: str, base: Path) -> str:
    """The source a camera's ``url`` names, or a :class:`ValueError` saying what is accepted.

    Accepted: ``rtsp://``, ``rtsps://``, ``http://``, ``https://``, a device
    index (``0``), or a video file that exists (relative to ``base``).
    """
    text = url.strip()
    if text.isdigit():
        return text
    if "://" in text:
        if text.lower().startswith(URL_SCHEMES):
            return text
        raise ValueError(f"{redact(text)}: unsupported URL scheme {text.split('://', 1)[0]}://; expected rtsp://, "
                         "rtsps://, http://, https://, a video file or a device index (0)")
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ValueError(f"{text}: no such video file (and not an rtsp://, http(s):// URL or a device index)")
    return str(path)


_TOP = ("model", "device", "precision", "mode", "tracker", "snapshot", "cameras", "outputs")
_CAMERA = ("url", "detect_every", "classes", "conf", "zones", "lines", "outputs", "reconnect", "read_timeout_s",
           "open_timeout_s", "rtsp_transport", "loop")
_RECONNECT = ("attempts", "first_delay_s", "max_delay_s")
_OUTPUTS = ("mqtt", "webhook", "jsonl")
_MQTT = ("host", "port", "topic", "qos", "client_id", "username", "password", "buffer")
_WEBHOOK = ("url", "secret", "timeout_s", "buffer")


def _reconnect(doc: _Doc, value: Any, path: str) -> ReconnectConfig:
    """``reconnect: auto | off | N`` or ``{attempts, first_delay_s, max_delay_s}``."""
    if value is None or value == "auto":
        return ReconnectConfig()
    if value is False or value == "off":
        return ReconnectConfig(enabled=False)
    if isinstance(value, int) and not isinstance(value, bool):
        _number(doc, value, path, low=0, integer=True)
        return ReconnectConfig(enabled=value > 0, max_attempts=value or None)
    if not isinstance(value, dict):
        raise doc.error(path, f"expected auto, off, a number of attempts or a mapping, got {_kind(value)}")
    spec = _mapping(doc, value, path, _RECONNECT)
    attempts = spec.get("attempts", "auto")
    kwargs: dict[str, Any] = {}
    if attempts not in ("auto", None):
        kwargs = {"enabled": True, "max_attempts": _number(doc, attempts, f"{path}.attempts", low=1, integer=True)}
    for key in ("first_delay_s", "max_delay_s"):
        if key in spec:
            kwargs[key] = float(_number(doc, spec[key], f"{path}.{key}", low=0))
    try:
        return ReconnectConfig(**kwargs)
    except ConfigError as exc:
        raise doc.error(path, str(exc)) from None


def _camera(doc: _Doc, name: str, value: Any, base: Path, outputs: tuple[str, ...]) -> CameraConfig:
    path = f"cameras.{name}"
    spec = _mapping(doc, value, path, _CAMERA)
    if "url" not in spec:
        raise doc.error(path, "missing url (rtsp://..., http(s)://..., a video file or a device index)")
    try:
        url = check_url(_str(doc, spec["url"], f"{path}.url"), base)
    except ValueError as exc:
        raise doc.error(f"{path}.url", str(exc)) from None
    kwargs: dict[str, Any] = {"name": name, "url": url}
    if "detect_every" in spec:
        kwargs["detect_every"] = _number(doc, spec["detect_every"], f"{path}.detect_every", low=1, integer=True)
    if "conf" in spec:
        kwargs["conf"] = float(_number(doc, spec["conf"], f"{path}.conf", low=0, high=1))
    if spec.get("classes") is not None:
        classes = spec["classes"]
        classes = classes if isinstance(classes, list) else [classes]
        if not classes:
            raise doc.error(f"{path}.classes", "an empty list; leave it out for every class")
        for i, c in enumerate(classes):
            if isinstance(c, bool) or not isinstance(c, (int, str)):
                raise doc.error(f"{path}.classes[{i}]", f"expected a class name or id, got {_kind(c)}")
        kwargs["classes"] = tuple(classes)
    zones = _mapping(doc, spec.get("zones"), f"{path}.zones", tuple(spec.get("zones") or ()),
                     "a mapping of zone names to polygons")
    kwargs["zones"] = {str(z): _polygon(doc, p, f"{path}.zones.{z}") for z, p in zones.items()}
    lines = _mapping(doc, spec.get("lines"), f"{path}.lines", tuple(spec.get("lines") or ()),
                     "a mapping of line names to two points")
    kwargs["lines"] = {str(n): _line(doc, p, f"{path}.lines.{n}") for n, p in lines.items()}
    if spec.get("outputs") is not None:
        wanted = spec["outputs"] if isinstance(spec["outputs"], list) else [spec["outputs"]]
        for i, o in enumerate(wanted):
            if o not in outputs:
                close = difflib.get_close_matches(str(o), outputs, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else (
                    f"the outputs configured are {', '.join(outputs)}" if outputs else "no outputs are configured")
                raise doc.error(f"{path}.outputs[{i}]", f"unknown output {o!r}; {hint}")
        kwargs["outputs"] = tuple(wanted)
    capture: dict[str, Any] = {"reconnect": _reconnect(doc, spec.get("reconnect"), f"{path}.reconnect")}
    for key in ("read_timeout_s", "open_timeout_s"):
        if key in spec:
            capture[key] = float(_number(doc, spec[key], f"{path}.{key}", low=0.1))
    if "rtsp_transport" in spec:
        if spec["rtsp_transport"] not in ("tcp", "udp"):
            raise doc.error(f"{path}.rtsp_transport", f"expected tcp or udp, got {_kind(spec['rtsp_transport'])}")
        capture["rtsp_transport"] = spec["rtsp_transport"]
    if "loop" in spec:
        if not isinstance(spec["loop"], bool):
            raise doc.error(f"{path}.loop", f"expected true or false, got {_kind(spec['loop'])}")
        capture["loop"] = spec["loop"]
    kwargs["capture"] = CaptureConfig(**capture)
    return CameraConfig(**kwargs)


def _outputs(doc: _Doc, value: Any, base: Path) -> dict[str, Any]:
    spec = _mapping(doc, value, "outputs", _OUTPUTS)
    out: dict[str, Any] = {}
    if spec.get("jsonl") is not None:
        out["jsonl"] = base / Path(_str(doc, spec["jsonl"], "outputs.jsonl")).expanduser()
    if "mqtt" in spec:
        m = _mapping(doc, spec["mqtt"], "outputs.mqtt", _MQTT)
        if "host" not in m:
            raise doc.error("outputs.mqtt", "missing host (the broker, e.g. 127.0.0.1)")
        kw: dict[str, Any] = {"host": _str(doc, m["host"], "outputs.mqtt.host")}
        if "port" in m:
            kw["port"] = _number(doc, m["port"], "outputs.mqtt.port", low=1, high=65535, integer=True)
        if "qos" in m:
            kw["qos"] = _number(doc, m["qos"], "outputs.mqtt.qos", low=0, high=1, integer=True)
        if "buffer" in m:
            kw["buffer"] = _number(doc, m["buffer"], "outputs.mqtt.buffer", low=1, integer=True)
        for key in ("topic", "client_id", "username", "password"):
            if m.get(key) is not None:
                kw[key] = _str(doc, m[key], f"outputs.mqtt.{key}")
        if "topic" in kw and (not kw["topic"].strip("/") or any(c in kw["topic"] for c in "#+")):
            raise doc.error("outputs.mqtt.topic", f"{kw['topic']!r}: expected a topic prefix without # or +")
        out["mqtt"] = MqttOutput(**kw)
    if "webhook" in spec:
        w = _mapping(doc, spec["webhook"], "outputs.webhook", _WEBHOOK)
        if "url" not in w:
            raise doc.error("outputs.webhook", "missing url (http:// or https://)")
        url = _str(doc, w["url"], "outputs.webhook.url")
        if not url.lower().startswith(("http://", "https://")):
            raise doc.error("outputs.webhook.url", f"{url}: expected an http:// or https:// URL")
        kw = {"url": url}
        if w.get("secret") is not None:
            kw["secret"] = _str(doc, w["secret"], "outputs.webhook.secret")
        if "timeout_s" in w:
            kw["timeout_s"] = float(_number(doc, w["timeout_s"], "outputs.webhook.timeout_s", low=0.1))
        if "buffer" in w:  # no retry count: a failed delivery is retried until it goes or the buffer drops it
            kw["buffer"] = _number(doc, w["buffer"], "outputs.webhook.buffer", low=1, integer=True)
        out["webhook"] = WebhookOutput(**kw)
    return out


def _choice(doc: _Doc, value: Any, path: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text not in choices:
        raise doc.error(path, f"expected one of {', '.join(choices)}, got {_kind(value)}")
    return text


def parse_watch_config(text: str, file: str | Path, *, base: Path | None = None) -> WatchConfig:
    """:class:`WatchConfig` from the file's ``text`` (``file`` names it in errors; paths resolve in ``base``)."""
    name = str(file)
    base = base if base is not None else Path(file).resolve().parent
    doc, value = _compose(text, name)
    top = _mapping(doc, value, "", _TOP, "a mapping with model: and cameras:")
    for key in ("model", "cameras"):
        if top.get(key) is None:
            raise ConfigError(f"{name}: missing {key}:" + (" (the OpenVINO model folder)" if key == "model"
                                                             else " (at least one camera with its url)"))
    model = Path(_str(doc, top["model"], "model")).expanduser()
    model = model if model.is_absolute() else base / model
    if not model.exists():
        raise doc.error("model", f"{top['model']}: no such model (looked for {model})")
    kwargs: dict[str, Any] = {"path": Path(file), "model": model}
    if top.get("device") is not None:
        kwargs["device"] = _str(doc, top["device"], "device")
    if top.get("precision") is not None:
        kwargs["precision"] = _choice(doc, str(top["precision"]).replace("fp", "f"), "precision",
                                      ("f32", "f16", "bf16"))
    if "mode" in top:
        kwargs["mode"] = _choice(doc, top["mode"], "mode", MODES)
    if "tracker" in top:
        kwargs["tracker"] = _choice(doc, top["tracker"], "tracker", ("bytetrack", "botsort"))
    if "snapshot" in top:
        kwargs["snapshot"] = _choice(doc, "none" if top["snapshot"] in (None, False) else top["snapshot"],
                                     "snapshot", SNAPSHOTS)
    outputs = _outputs(doc, top.get("outputs"), base)
    kwargs.update(outputs)
    cameras_spec = top["cameras"]
    if not isinstance(cameras_spec, dict) or not cameras_spec:
        raise doc.error("cameras", "expected a mapping of camera names to their settings (url: ...)")
    names = tuple(n for n in ("jsonl", "mqtt", "webhook") if n in outputs)
    cameras = []
    for cam, spec in cameras_spec.items():
        if not cam or any(c in cam for c in "/#+ "):
            raise doc.error(f"cameras.{cam}", "a camera name is one word without spaces, /, # or +")
        cameras.append(_camera(doc, cam, spec, base, names))
    origins = {path: f"{name}:{line}" for path, line in doc.lines.items()}
    return WatchConfig(cameras=tuple(cameras), origins=origins, **kwargs)


def load_watch_config(path: str | Path) -> WatchConfig:
    """Read and check a watch config file; every mistake is one :class:`ConfigError` line with file and line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    return parse_watch_config(text, path, base=file.expanduser().resolve().parent)
