"""The server's limits, each enforced as early as it can be.

- **Body size** (:class:`BodyLimit`, an ASGI middleware): a declared
  ``Content-Length`` over the limit gets 413 before a byte of the body is
  read; a chunked body is counted as it arrives and cut off at the limit.
- **Compressed bodies** (:func:`decode_body`): ``gzip``/``deflate`` request
  bodies are inflated only up to the same limit (a zip bomb gets 413).
- **Pixels** (:func:`check_encoded`, :func:`check_frame`): an image whose
  header declares more than ``max_pixels`` gets 413 before it is decoded; one
  whose header cannot be read gets 400 naming the problem.

Every refusal is a :class:`ServeError`, which the app turns into the status
and KServe's ``{"error": "..."}`` body.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np

from ..imaging.header import HeaderError, image_size

__all__ = ["BodyLimit", "ServeError", "check_encoded", "check_frame", "decode_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServeError(Exception):
    """A request the server refuses or cannot answer: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB"


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413.

    A declared ``Content-Length`` is checked before anything is read; a body
    without one (chunked) is counted chunk by chunk, and the request fails
    with 413 as soon as it passes the limit, so at most ``max_bytes`` are ever
    held for one request.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                await _reject(send, 400, f"Content-Length {length!r} is not a number")
                return
            if int(length) > self.max_bytes:
                await _reject(send, 413, f"request body of {_mb(int(length))} is over the limit of "
                                         f"{_mb(self.max_bytes)} (--max-body-mb)")
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ServeError(413, f"request body is over the limit of {_mb(self.max_bytes)} (--max-body-mb)")
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except ServeError as exc:
            if started:
                raise
            await _reject(send, exc.status, exc.message)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


async def _reject(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        # The body was not read: close the connection rather than leave it unread on the wire.
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


def decode_body(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Inflate a ``gzip``/``deflate`` request body, never past ``max_bytes``.

    Raises:
        ServeError: 413 when it inflates past the limit, 400 when it is
            corrupt, 415 for another encoding.
    """
    kind = (encoding or "identity").strip().lower()
    if kind == "identity":
        return body
    if kind not in ("gzip", "deflate"):
        raise ServeError(415, f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)")
    inflater = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ServeError(400, f"the {kind} request body is corrupt ({exc})") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise ServeError(413, f"the {kind} request body inflates past the limit of {_mb(max_bytes)} (--max-body-mb)")
    if not inflater.eof:
        raise ServeError(400, f"the {kind} request body is cut short")
    return out


def check_encoded(data: bytes, max_pixels: int, name: str) -> tuple[int, int]:
    """Check an encoded image's header before it is decoded; ``(width, height)``.

    Raises:
        ServeError: 413 when it declares more than ``max_pixels``; 400 when
            it is empty, not a supported format, or its header is cut short.
    """
    if not data:
        raise ServeError(400, f"{name}: empty (0 bytes), not an image")
    try:
        fmt, width, height = image_size(data)
    except HeaderError as exc:
        raise ServeError(400, f"{name}: {exc}") from None
    _check_pixels(width, height, max_pixels, name, fmt)
    return width, height


def check_frame(frame: np.ndarray, max_pixels: int, name: str) -> None:
    """Check a raw frame's size against ``max_pixels`` (413)."""
    _check_pixels(frame.shape[1], frame.shape[0], max_pixels, name, "frame")


def _check_pixels(width: int, height: int, max_pixels: int, name: str, what: str) -> None:
    pixels = width * height
    if pixels > max_pixels:
        raise ServeError(
            413, f"{name}: {what} of {width}x{height} ({pixels / 1e6:.1f} MP) is over the limit of "
                 f"{max_pixels / 1e6:g} MP (--max-pixels)"
        )
