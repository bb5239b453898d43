"""A real MQTT broker for the tests: Debian's mosquitto in a child process on a free loopback port.

``.ci/run`` installs it (``apt-get install mosquitto mosquitto-clients``);
:func:`mosquitto_or_skip` skips with the reason when the binary is missing
outside CI and fails in CI. :meth:`Broker.stop` and :meth:`Broker.start` on
the same port are the broker going away and coming back. :class:`Subscriber`
is a paho client in the test that records what arrives.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)
INSTALL = "apt-get install -y mosquitto mosquitto-clients"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_or_skip() -> str:
    """The mosquitto binary; skips (fails in CI, which installs it) when it is missing."""
    if MOSQUITTO:
        return MOSQUITTO
    reason = f"no mosquitto binary here; install it: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
    raise AssertionError  # unreachable


class Broker:
    """mosquitto on 127.0.0.1:``port`` (a free one by default); ``with`` stops it.

    ``anonymous=False`` (and no password file) makes a broker that refuses every client: bad credentials.

    With ``persistence=True`` it saves its state when stopped and reloads it when started again, so a
    persistent subscriber (``Subscriber(..., persistent=True)``) gets, after a restart, the QoS 1 messages
    published while it was reconnecting: a consumer set up as it should be for at-least-once delivery.
    """

    def __init__(self, port: int | None = None, *, persistence: bool = False, anonymous: bool = True) -> None:
        self.binary = mosquitto_or_skip()
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self.dir.chmod(0o777)  # started as root, mosquitto drops to its own user, which saves its database here
        self.conf = self.dir / "mosquitto.conf"
        conf = f"listener {self.port} 127.0.0.1\nallow_anonymous {'true' if anonymous else 'false'}\n"
        conf += f"persistence true\npersistence_location {self.dir}/\n" if persistence else "persistence false\n"
        self.conf.write_text(conf, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Broker:
        log = (self.dir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text(encoding='utf-8')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} in {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Subscriber:
    """A paho client subscribed to ``pattern`` (QoS 1) that keeps every message: ``(topic, payload, retain)``.

    It reconnects by itself (paho's loop) and subscribes again on every connect, so it follows a broker
    restart; ``persistent=True`` keeps its session on the broker (clean_session off), so what is published
    while it is away is queued for it.
    """

    def __init__(self, port: int, pattern: str = "#", *, persistent: bool = False) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{os.getpid()}-{port}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.connected = threading.Event()

        def on_connect(client, userdata, flags, reason_code, properties):
            client.subscribe(pattern, qos=1)

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            self.connected.set()

        def on_disconnect(client, userdata, flags, reason_code, properties):
            self.connected.clear()

        def on_message(client, userdata, msg):
            with self.cond:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
                self.cond.notify_all()

        self.client.on_connect, self.client.on_subscribe = on_connect, on_subscribe
        self.client.on_disconnect, self.client.on_message = on_disconnect, on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("the test subscriber could not subscribe in 10 s")

    def on(self, topic: str) -> list[bytes]:
        with self.cond:
            return [p for t, p, _ in self.messages if t == topic]

    def events(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.on(topic)]

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds (checked on every message), up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
            return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def retained(port: int, topic: str, timeout: float = 5.0) -> bytes | None:
    """The retained message on ``topic`` as a fresh subscriber sees it (None if there is none)."""
    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(topic, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        threading.Timer(0.5, done.set).start()  # a retained message comes right after SUBACK, or not at all

    def on_message(client, userdata, msg):
        if msg.retain:
            got.append(bytes(msg.payload))
            done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[-1] if got else None
