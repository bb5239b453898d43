"""Events (and optionally per-frame records) published to an MQTT broker with paho-mqtt, surviving broker outages.

Topics (``topic`` is the prefix, ``yolo-ov`` by default; camera names are made
topic-safe: ``+``, ``#`` and ``/`` become ``_``):

* ``<topic>/<camera>/events``: one JSON object per event (the event schema of
  :mod:`yolo_ov.watch.observer`), at the configured QoS, not retained.
* ``<topic>/<camera>/detections`` (only with ``records=True``): each frame's
  record as the JSONL sink writes it.
* ``<topic>/status``: ``online`` (retained) once connected, again after
  every reconnect; ``offline`` (retained) on a clean close, and the same
  ``offline`` as the broker's last will when the process dies or the network
  goes away, so a consumer always knows whether the events it sees are live.

Why it survives: every message goes through an :class:`~yolo_ov.io.outbox.Outbox`
(``buffer`` messages, oldest dropped first when full, each drop counted) and
its one sender thread, which publishes one message at a time and, at QoS 1,
counts it as sent only when the broker acknowledged it (PUBACK). While the
broker is away the messages wait in the outbox; the one that was on the wire
when the connection dropped stays in paho's own queue, which publishes it
again (as a duplicate) after the reconnect: at-least-once, as QoS 1 means.
paho reconnects by itself (backoff from 1 s up to ``reconnect_max_s``); the
outbox is woken at once when it does. At QoS 0 nothing is acknowledged: a
message is sent once while connected, and waits in the outbox while not.

A broker that cannot be reached when the sink opens is a warning, not an
error (``required=False``, the default): a service whose cameras boot before
the broker must not stop, and events wait in the buffer until it answers.
With ``required=True`` (a one-off run that should fail fast) it is one
:class:`~yolo_ov.errors.OutputError` line:
``MQTT broker 127.0.0.1:1883: connection refused; is mosquitto running?``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingExtraError, OutputError
from .outbox import Backoff, Outbox, Retry, to_json
from .signals import deferred
from .sink import Record, SinkBase

__all__ = ["MqttSink", "topic_safe"]

log = logging.getLogger(__name__)

_UNSAFE = str.maketrans({"+": "_", "#": "_", "/": "_"})


def topic_safe(name: str) -> str:
    """``name`` as one MQTT topic level: wildcards and separators become ``_`` (``"gate/1"`` -> ``"gate_1"``)."""
    return str(name).translate(_UNSAFE) or "_"


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes


class MqttSink(SinkBase):
    """Publishes events (and optionally records) to an MQTT broker; see the module docstring for topics and rules.

    Args:
        host: the broker's host name or address.
        port: its port (1883 plain, usually 8883 with ``tls=True``).
        topic: the topic prefix.
        qos: 0 (at most once) or 1 (at least once: every event arrives, duplicates possible).
        client_id: the MQTT client id (a random one by default).
        username: the broker account (``None``: anonymous).
        password: its password.
        tls: connect with TLS, checking the broker's certificate against the system's CAs.
        keepalive: seconds between pings; the broker publishes the last will after 1.5x this of silence.
        buffer: messages kept while the broker is away (oldest dropped beyond it, counted).
        records: also publish each frame's record to ``<topic>/<camera>/detections``.
        required: fail at :meth:`open` when the broker cannot be reached (else warn and keep trying).
        connect_timeout_s: how long :meth:`open` waits for the first connection.
        reconnect_max_s: the longest wait between two reconnect attempts.
        close_timeout_s: how long :meth:`close` waits for the buffer to drain.

    Example:
        >>> sink = MqttSink("127.0.0.1", topic="shop")  # nothing happens until open()
        >>> sink.events_topic("door/1")
        'shop/door_1/events'
    """

    def __init__(self, host: str, port: int = 1883, topic: str = "yolo-ov", qos: int = 1, client_id: str | None = None,
                 username: str | None = None, password: str | None = None, tls: bool = False, keepalive: int = 30,
                 buffer: int = 10_000, records: bool = False, *, required: bool = False,
                 connect_timeout_s: float = 5.0, reconnect_max_s: float = 30.0, close_timeout_s: float = 5.0) -> None:
        if qos not in (0, 1):
            raise ConfigError(f"MQTT qos {qos!r}: use 0 (at most once) or 1 (at least once)")
        if not topic or any(c in topic for c in "+#") or topic.startswith("/") or topic.endswith("/"):
            raise ConfigError(f"MQTT topic {topic!r}: give a prefix such as 'yolo-ov' (no + or #, no leading "
                              "or trailing /)")
        if not 0 < int(port) < 65536:
            raise ConfigError(f"MQTT port {port!r}: must be 1-65535")
        if buffer < 1:
            raise ConfigError(f"MQTT buffer {buffer!r}: must be at least 1 message")
        self.host, self.port, self.topic, self.qos = host, int(port), topic, qos
        self.client_id, self.username, self.password, self.tls = client_id, username, password, tls
        self.keepalive, self.buffer, self.records, self.required = keepalive, buffer, records, required
        self.connect_timeout_s, self.reconnect_max_s = connect_timeout_s, reconnect_max_s
        self.close_timeout_s = close_timeout_s
        self.status_topic = f"{topic}/status"
        self._client: Any = None
        self._outbox: Outbox[_Message] | None = None
        self._closed = False
        self._connected = threading.Event()
        self._first_outcome = threading.Event()
        self._last_error = ""
        self._acked: set[int] = set()
        self._ack_cond = threading.Condition()
        self._pending: tuple[_Message, Any] | None = None
        self._stats_after_close: dict[str, int] | None = None

    # --- topics ----------------------------------------------------------------------------------------------

    def events_topic(self, camera: str) -> str:
        """Where ``camera``'s events go: ``<topic>/<camera>/events``."""
        return f"{self.topic}/{topic_safe(camera)}/events"

    def records_topic(self, camera: str) -> str:
        """Where ``camera``'s per-frame records go (``records=True``): ``<topic>/<camera>/detections``."""
        return f"{self.topic}/{topic_safe(camera)}/detections"

    @property
    def destination(self) -> str:
        return f"MQTT broker {self.host}:{self.port}"

    # --- the Sink contract -----------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect (in paho's network thread) and start the sender; see the module docstring for failures."""
        if self._client is not None or self._closed:
            return
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise MissingExtraError("MQTT output needs paho-mqtt: pip install 'paho-mqtt>=2'") from exc
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id or "",
                             protocol=mqtt.MQTTv311, clean_session=True)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(self.reconnect_max_s)))
        client.max_inflight_messages_set(20)
        client.max_queued_messages_set(0)  # unbounded in paho: the outbox is the bound (one message at a time)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        self._client = client
        self._outbox = Outbox(self._send, name=self.destination, capacity=self.buffer,
                              backoff=Backoff(first_s=0.5, max_s=max(0.5, self.reconnect_max_s)),
                              connected=self._connected.is_set)
        try:
            client.connect_async(self.host, self.port, keepalive=self.keepalive)
        except (OSError, ValueError) as exc:
            self._abort()
            raise OutputError(f"{self.destination}: {_reason(exc)}") from exc
        client.loop_start()
        self._first_outcome.wait(self.connect_timeout_s)
        if self._connected.is_set():
            return
        reason = self._last_error or f"no answer in {self.connect_timeout_s:g} s"
        if self.required:
            self._abort()
            raise OutputError(f"{self.destination}: {reason}")
        log.warning("%s: %s; events are kept (up to %d) and sent when it answers", self.destination, reason,
                    self.buffer)

    def write(self, record: Record, image: np.ndarray | None = None, *,
              extra: Mapping[str, Any] | None = None) -> None:
        """Queue the events in ``extra["events"]`` (and the record with ``records=True``); returns at once."""
        outbox = self._ready()
        with deferred():
            for event in (extra or {}).get("events", ()):
                outbox.put(self._event_message(event))
            if self.records:
                camera = (extra or {}).get("camera") or getattr(record, "source", None) or "_"
                fields = {k: v for k, v in (extra or {}).items() if k != "events"}
                outbox.put(_Message(self.records_topic(str(camera)), to_json({**record.to_dict(), **fields})))

    def publish_event(self, event: Mapping[str, Any]) -> None:
        """Queue one event for ``<topic>/<event["camera"]>/events``; returns at once."""
        self._ready().put(self._event_message(event))

    def stats(self) -> dict[str, int]:
        """``queued``, ``sent``, ``dropped``, ``failed``, ``retries``, ``connected`` (see :meth:`Outbox.stats`)."""
        if self._stats_after_close is not None:
            return dict(self._stats_after_close)
        if self._outbox is None:
            return {"queued": 0, "sent": 0, "dropped": 0, "failed": 0, "retries": 0, "connected": 0}
        return self._outbox.stats()

    def describe(self) -> str:
        s = self.stats()
        dropped = f", {s['dropped']} dropped" if s["dropped"] else ""
        return f"MQTT: {self.host}:{self.port} {self.topic}/# ({s['sent']} sent{dropped})"

    def close(self) -> None:
        """Deliver what waits (up to ``close_timeout_s``), publish ``offline`` (retained), disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._outbox is None:
            return
        self._outbox.close(self.close_timeout_s)
        client = self._client
        if self._connected.is_set():
            try:
                info = client.publish(self.status_topic, b"offline", qos=1, retain=True)
                info.wait_for_publish(timeout=min(2.0, self.close_timeout_s))
            except (RuntimeError, ValueError) as exc:  # the broker went away just now: the last will says it
                log.warning("%s: could not publish offline (%s); the broker's last will does", self.destination, exc)
            client.disconnect()
        client.loop_stop()
        self._stats_after_close = {**self._outbox.stats(), "connected": 0}

    # --- paho's callbacks (its network thread) ---------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._last_error = f"the broker refused the connection ({reason_code}); check the credentials"
            self._first_outcome.set()
            return
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        if self._last_error and self._first_outcome.is_set():
            log.warning("%s: connected again", self.destination)
        self._last_error = ""
        self._connected.set()
        self._first_outcome.set()
        if self._outbox is not None:
            self._outbox.wake()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._closed:
            self._last_error = f"disconnected ({reason_code})"
            log.warning("%s: %s; reconnecting, events wait in the buffer", self.destination, self._last_error)
        with self._ack_cond:
            self._ack_cond.notify_all()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._last_error = self._probe_reason()
        self._first_outcome.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._ack_cond:
            self._acked.add(mid)
            self._ack_cond.notify_all()

    # --- the sender (the outbox's thread) --------------------------------------------------------------------

    def _send(self, message: _Message) -> None:
        """Publish ``message`` and, at QoS 1, wait for its PUBACK; :class:`Retry` while the broker is away.

        A message handed to paho stays in paho's queue until acknowledged
        (paho publishes it again after a reconnect), so a retry waits for the
        same one instead of publishing it twice.
        """
        client, outbox = self._client, self._outbox
        if self._pending is None or self._pending[0] is not message:
            if not self._connected.is_set():
                raise Retry(self._last_error or "not connected")
            with self._ack_cond:
                self._acked.clear()  # acknowledgements of earlier messages (status) are of no interest now
            info = client.publish(message.topic, message.payload, qos=self.qos)
            if self.qos == 0:
                if info.rc:  # not written: the connection dropped just now
                    raise Retry(self._last_error or "not connected")
                return
            self._pending = (message, info)
        info = self._pending[1]
        deadline = time.monotonic() + max(5.0, 2.0 * self.keepalive)
        with self._ack_cond:
            while info.mid not in self._acked:  # (info.is_published() raises when publish() found no connection)
                if outbox is not None and outbox.stopped:
                    raise Retry("closing")
                if not self._connected.is_set() or time.monotonic() > deadline:
                    raise Retry(self._last_error or "no acknowledgement from the broker")
                self._ack_cond.wait(0.2)
            self._acked.discard(info.mid)
        self._pending = None

    # --- helpers ---------------------------------------------------------------------------------------------

    def _ready(self) -> Outbox[_Message]:
        if self._closed:
            raise ConfigError(f"{self.destination}: the MQTT output is closed")
        if self._outbox is None:  # opening here could wait connect_timeout_s: a write must not
            raise ConfigError(f"{self.destination}: the MQTT output is not open yet (call open(), or use it in a "
                              "with block or Sinks)")
        return self._outbox

    def _event_message(self, event: Mapping[str, Any]) -> _Message:
        return _Message(self.events_topic(str(event.get("camera") or "_")), to_json(event))

    def _probe_reason(self) -> str:
        """Why the broker cannot be reached, in words (paho only says that the connect failed)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=min(3.0, self.connect_timeout_s)):
                return "the broker did not complete the MQTT handshake"
        except OSError as exc:
            return _reason(exc)

    def _abort(self) -> None:
        self._closed = True
        if self._client is not None:
            self._client.loop_stop()
        if self._outbox is not None:
            self._outbox.close(0)
            self._stats_after_close = {**self._outbox.stats(), "connected": 0}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused; is mosquitto running?"
    if isinstance(exc, socket.gaierror):
        return "unknown host; check the host name"
    if isinstance(exc, TimeoutError):
        return "no answer (time-out); check the host, the port and the firewall"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__

