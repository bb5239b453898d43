"""The watch service's outputs, built from the config's ``outputs:``; and the events-JSONL file.

Every output is a :class:`~yolo_ov.io.sink.Sink`: the service writes each
frame that has events as ``write(record, image, extra={"events": [...]})``
and a sink publishes every event dict of ``extra["events"]`` (the MQTT and
webhook sinks of :mod:`yolo_ov.io.mqtt` and :mod:`yolo_ov.io.webhook`, or
:class:`EventsJsonlSink` here: one JSON object per line, the same object an
MQTT payload carries). The network sinks are imported only when configured.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, OutputError
from ..io.signals import deferred
from ..io.sink import Record, SinkBase
from ..io.sinks import check_output_file
from .config import WatchConfig

__all__ = ["EventsJsonlSink", "build_outputs"]


class EventsJsonlSink(SinkBase):
    """Appends every event of ``extra["events"]`` to a JSONL file, one object per line, flushed per write.

    The file is opened for appending (a restarted service adds to the same
    log). Each write ends with a flush, so a consumer tailing the file sees
    an event as soon as it is published and a killed process leaves whole
    lines. Records without events are skipped.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
        >>> with EventsJsonlSink(path) as sink:
        ...     sink.write(None, extra={"events": [{"id": "1", "type": "appear"}]})
        >>> path.read_text(encoding="utf-8")
        '{"id": "1", "type": "appear"}\\n'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = check_output_file(path, "events file")
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot open the events file ({exc.strerror or exc})") from None
        self._lock = threading.Lock()
        self._stats = {"queued": 0, "sent": 0, "dropped": 0, "retries": 0, "connected": 1}

    def write(self, record: Record | None, image: np.ndarray | None = None, *,
              extra: Mapping[str, Any] | None = None) -> None:
        events = (extra or {}).get("events") or ()
        if not events:
            return
        text = "".join(json.dumps(e, separators=(", ", ": ")) + "\n" for e in events)
        with deferred(), self._lock:
            if self._file.closed:
                return
            try:
                self._file.write(text)
                self._file.flush()
            except OSError as exc:
                self._stats["dropped"] += len(events)
                raise OutputError(f"{self.path}: cannot write events ({exc.strerror or exc})") from None
            self._stats["sent"] += len(events)

    def stats(self) -> dict[str, int]:
        """``sent`` (lines written), ``dropped`` (lost to a write error); ``queued``/``retries`` stay 0."""
        return dict(self._stats)

    def describe(self) -> str:
        return f"events to {self.path}"

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def build_outputs(config: WatchConfig) -> dict[str, Any]:
    """The sinks of ``config.outputs`` by name (``jsonl``, ``mqtt``, ``webhook``), not opened yet.

    Raises:
        ConfigError: an output whose module is not in this build (one line naming the key).
        OutputError: the events file cannot be created.
    """
    sinks: dict[str, Any] = {}
    try:
        if config.jsonl is not None:
            sinks["jsonl"] = EventsJsonlSink(config.jsonl)
        if config.mqtt is not None:
            try:
                from ..io.mqtt import MqttSink
            except ImportError as exc:
                raise ConfigError(f"{config.where('outputs.mqtt')}: the MQTT output is not available here "
                                  f"({exc}); install the mqtt extra: pip install 'yolo-ov[mqtt]'") from None
            m = config.mqtt
            sinks["mqtt"] = MqttSink(host=m.host, port=m.port, topic=m.topic, qos=m.qos, client_id=m.client_id,
                                     username=m.username, password=m.password, buffer=m.buffer)
        if config.webhook is not None:
            try:
                from ..io.webhook import WebhookSink
            except ImportError as exc:
                raise ConfigError(f"{config.where('outputs.webhook')}: the webhook output is not available "
                                  f"here ({exc})") from None
            w = config.webhook
            sinks["webhook"] = WebhookSink(url=w.url, secret=w.secret, timeout_s=w.timeout_s, buffer=w.buffer)
    except BaseException:
        for sink in sinks.values():
            sink.close()
        raise
    return sinks
