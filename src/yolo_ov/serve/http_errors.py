"""The HTTP side of the server's errors and limits: statuses, KServe's error body, the body-size middleware.

:class:`~yolo_ov.serve.errors.ServeError` says what went wrong in
transport-neutral terms; here it becomes what an HTTP client has always seen:
``code.http_status``, the body ``{"error": "..."}`` (KServe's form, for both
``/v2`` and ``/predict``), ``Retry-After`` when a refusal passes and
``WWW-Authenticate: Bearer`` with a 401. :class:`BodyLimit` enforces the body
size as the bytes arrive, the one limit that belongs to the transport.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from .errors import ErrorCode, ServeError
from .limits import megabytes

__all__ = ["BodyLimit", "error_body", "error_headers"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_body(message: str) -> dict[str, str]:
    """KServe's error form: ``{"error": message}``."""
    return {"error": message}


def error_headers(exc: ServeError) -> dict[str, str]:
    """The HTTP headers a refusal carries: ``Retry-After``, ``WWW-Authenticate``."""
    headers: Mapping[str, str] = {}
    if exc.retry_after_s is not None:
        headers = {"Retry-After": str(exc.retry_after_s)}
    if exc.code is ErrorCode.UNAUTHENTICATED:
        headers = {**headers, "WWW-Authenticate": "Bearer"}
    return dict(headers)


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
                await _reject(send, 413, f"request body of {megabytes(int(length))} is over the limit of "
                                         f"{megabytes(self.max_bytes)} (--max-body-mb)")
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ServeError(ErrorCode.PAYLOAD_TOO_LARGE, "request body is over the limit of "
                                                                  f"{megabytes(self.max_bytes)} (--max-body-mb)")
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
    body = json.dumps(error_body(message)).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        # The body was not read: close the connection (serve/connections.py drains it first, so the client sees this).
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})
