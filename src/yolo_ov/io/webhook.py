"""Events POSTed to a web hook, signed with HMAC-SHA256, retried while the receiver is away.

Each event is one ``POST`` of its JSON (the event schema of
:mod:`yolo_ov.watch.observer`) with these headers:

* ``Content-Type: application/json``
* ``X-Yolo-Ov-Event-Id``: the event's ``id`` (a receiver de-duplicates on it:
  a retry after a lost answer delivers the same event twice).
* ``X-Yolo-Ov-Timestamp``: when this attempt was sent, integer epoch seconds.
* ``X-Yolo-Ov-Signature``: ``sha256=`` + the hex HMAC-SHA256, keyed with the
  shared secret, of the bytes ``<timestamp>.<body>`` (the timestamp header's
  value, a dot, then the request body exactly as received). Signing the
  timestamp too lets a receiver refuse a replayed request (older than, say,
  5 minutes); each retry is signed again with its own time. Without a secret
  the signature header is left out.

What is retried (exponential backoff with jitter, the same message again,
order kept): a receiver that cannot be reached or does not answer in
``timeout_s``, 5xx answers, ``408`` and ``429``. Any other answer outside
2xx (a 4xx: the receiver does not want this request, and sending it again
would not change that) is **not** retried: the event is counted as
``failed`` and logged. Events wait in an :class:`~yolo_ov.io.outbox.Outbox`
of ``buffer`` messages (the oldest dropped beyond it, each drop counted);
:meth:`WebhookSink.close` waits up to ``close_timeout_s`` for them.

The HTTP client is the standard library's (``urllib``): the package does not
depend on an HTTP client library, and one POST at a time needs nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import ConfigError
from .outbox import Backoff, Outbox, Reject, Retry, to_json
from .signals import deferred
from .sink import Record, SinkBase

__all__ = ["WebhookSink", "sign"]

_RETRIED = frozenset({408, 429})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer outside 2xx (urllib would turn the POST into a GET without its body)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Yolo-Ov-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed by ``secret``.

    Example:
        >>> sign("s3cret", "1700000000", b'{"id":"a"}')[:15]
        'sha256=5728bde1'
    """
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class _Post:
    event_id: str
    body: bytes


class WebhookSink(SinkBase):
    """POSTs each event to ``url``, signed with ``secret``; see the module docstring for headers and retries.

    Args:
        url: the receiver (``http://`` or ``https://``).
        secret: the shared HMAC key (``None``: requests are not signed).
        timeout_s: how long one request may take (connect and answer).
        buffer: events kept while the receiver is away (oldest dropped beyond it, counted).
        backoff: the retry schedule (0.5 s doubling up to 30 s, with jitter).
        close_timeout_s: how long :meth:`close` waits for the buffer to drain.

    Example:
        >>> sink = WebhookSink("http://127.0.0.1:9/hook", secret="s3cret")  # nothing is sent until an event
        >>> sink.stats()["queued"]
        0
        >>> sink.close()
    """

    def __init__(self, url: str, secret: str | bytes | None = None, *, timeout_s: float = 10.0, buffer: int = 10_000,
                 backoff: Backoff | None = None, close_timeout_s: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"webhook URL {url!r}: give an http:// or https:// URL such as http://host:8080/events")
        if buffer < 1:
            raise ConfigError(f"webhook buffer {buffer!r}: must be at least 1 event")
        if timeout_s <= 0:
            raise ConfigError(f"webhook timeout {timeout_s!r}: must be more than 0 seconds")
        self.url, self.timeout_s, self.close_timeout_s = url, timeout_s, close_timeout_s
        self._secret = secret
        self._closed = False
        self._outbox: Outbox[_Post] = Outbox(self._send, name=f"webhook {url}", capacity=buffer, backoff=backoff)

    def write(self, record: Record, image: np.ndarray | None = None, *,
              extra: Mapping[str, Any] | None = None) -> None:
        """Queue each event in ``extra["events"]``; returns at once (the record itself is not posted)."""
        with deferred():
            for event in (extra or {}).get("events", ()):
                self.publish_event(event)

    def publish_event(self, event: Mapping[str, Any]) -> None:
        """Queue one event for posting; returns at once."""
        if self._closed:
            raise ConfigError(f"webhook {self.url}: the output is closed")
        self._outbox.put(_Post(str(event.get("id", "")), to_json(event)))

    def stats(self) -> dict[str, int]:
        """``queued``, ``sent``, ``dropped``, ``failed`` (4xx), ``retries``, ``connected`` (the last attempt got an
        answer)."""
        return self._outbox.stats()

    def describe(self) -> str:
        s = self.stats()
        more = "".join(f", {s[k]} {k}" for k in ("failed", "dropped") if s[k])
        return f"webhook: {self.url} ({s['sent']} sent{more})"

    def close(self) -> None:
        """Deliver what waits (up to ``close_timeout_s``; the rest is counted as dropped). Idempotent."""
        if not self._closed:
            self._closed = True
            self._outbox.close(self.close_timeout_s)

    def _send(self, post: _Post) -> None:
        """One POST; :class:`Retry` when the receiver is away or says so, :class:`Reject` on other refusals."""
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": f"yolo-ov/{__version__}",
                   "X-Yolo-Ov-Event-Id": post.event_id, "X-Yolo-Ov-Timestamp": timestamp}
        if self._secret is not None:
            headers["X-Yolo-Ov-Signature"] = sign(self._secret, timestamp, post.body)
        request = urllib.request.Request(self.url, data=post.body, headers=headers, method="POST")  # noqa: S310 - scheme checked
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:  # an answer outside 2xx (redirects are not followed for a POST)
            if exc.code >= 500 or exc.code in _RETRIED:
                raise Retry(f"HTTP {exc.code} {exc.reason}") from exc
            raise Reject(f"event {post.event_id or '?'}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, unreachable, timed out, reset
            reason = getattr(exc, "reason", exc)
            raise Retry(f"cannot reach it ({reason})") from exc

