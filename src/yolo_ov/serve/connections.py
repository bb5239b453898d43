"""The server's connections under uvicorn: what one client's sockets may hold, and how a refusal reaches it.

uvicorn alone lets a client hold the server with sockets that send nothing:
it has no timeout on reading a request head (a client dribbling one header
byte a second stays connected forever), and its ``limit_concurrency`` is
checked only when a request head is complete, so sockets that never finish
one are never refused (about 20,000 idle sockets exhausted the file
descriptors; the accept loop then logged ``Too many open files`` with a
traceback every second, or millions of times with uvloop). Here, on both of
uvicorn's HTTP/1.1 protocols (httptools, the C parser uvicorn picks when it is
installed, and h11, pure Python; ``--http``): one guard (:class:`_Guard`), told
by each parser only whether a request head is awaited and whether a request
body is still coming:

- **Connection cap** (``max_connections``): a connection accepted beyond it
  gets ``503`` with ``Retry-After`` and is closed; it is never handed to the
  application and holds its socket for at most :data:`REFUSED_LINGER_S`.
- **Header timeout** (``header_timeout_s``): a connection that has not sent a
  whole request head within it (from its start, or from the first byte of its
  next request on a kept-alive connection) is closed.
- **Keep-alive idle timeout** (``keep_alive_s``): uvicorn's ``timeout_keep_alive``.
- **Graceful close**: a response sent before the request body was read (413,
  401, ...) is followed by a half-close, and the rest of the body is read and
  discarded (at most :data:`DRAIN_BYTES`, :data:`DRAIN_S`) before the socket
  closes. Closing at once would reset the connection under a client that
  writes its whole body before reading (Python's ``http.client``, many SDKs),
  and the reset destroys the response it had not read yet.
- **File descriptors** (:func:`fit_open_files`): the soft open-file limit is
  raised so the cap is reached first (a warning when the hard limit is lower).
- **Accept errors** (:func:`limit_accept_error_logs`): logged once per
  :data:`ACCEPT_LOG_INTERVAL_S` with a count of those not shown (asyncio's
  accept loop fails, and schedules a retry, once per pending connection).

Only for ``yolo-ov serve``'s own uvicorn (:func:`uvicorn_options`); with
``--ray``, Ray Serve's proxy owns the connections.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import ConfigError
from .settings import ServeConfig

__all__ = ["ACCEPT_LOG_INTERVAL_S", "DRAIN_BYTES", "DRAIN_S", "OPEN_FILES_SPARE", "REFUSED_LINGER_S",
           "fit_open_files", "limit_accept_error_logs", "uvicorn_options"]

#: After an early response, at most this much of the unread request body is read and discarded.
DRAIN_BYTES = 64 * 1024 * 1024
#: ... and for at most this long before the socket is closed anyway.
DRAIN_S = 5.0
#: A connection refused over the cap is closed after its client closes, or after this long.
REFUSED_LINGER_S = 1.0
#: File descriptors kept free beside the connections (model files, pipes, the listening socket, clients' 503s).
OPEN_FILES_SPARE = 256
#: Accept errors (``Too many open files``) are logged at most once per this interval.
ACCEPT_LOG_INTERVAL_S = 10.0

#: Accept errors: out of file descriptors or memory (asyncio retries each second, uvloop's libuv sheds connections).
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_REFUSAL_BODY = b'{"error": "the server is at its connection limit (--max-connections); retry shortly"}'
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
            b"connection: close\r\ncontent-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY)


def uvicorn_options(config: ServeConfig) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments that enforce ``config``'s connection limits.

    Example:
        >>> uvicorn.Config(app, **uvicorn_options(settings))  # doctest: +SKIP
    """
    base = guarded_protocol(config.http_parser)
    protocol = type(base.__name__, (base,), {
        "header_timeout_s": float(config.header_timeout_s), "max_connections": int(config.max_connections)})
    return {"http": protocol, "timeout_keep_alive": config.keep_alive_s}


def guarded_protocol(parser: str = "auto") -> type[asyncio.Protocol]:
    """The guarded protocol class for ``parser`` (``auto``: httptools when installed, as uvicorn chooses).

    Raises:
        ConfigError: ``httptools`` asked for and not installed.
    """
    if parser in ("auto", "httptools"):
        try:
            return _guarded_httptools()
        except ImportError:
            if parser == "httptools":
                raise ConfigError("--http httptools needs the httptools package: pip install httptools "
                                  "(or use --http h11)") from None
    return GuardedH11Protocol


class _Guard:
    """The connection cap, header timeout and graceful close, for either of uvicorn's HTTP/1.1 protocols.

    A subclass says, from its parser's state, whether the connection waits for
    a request head (:meth:`_awaiting_head`) and whether the client is still
    sending a request body (:meth:`_body_pending`); everything else is here.
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1000
    connections: set[Any]
    loop: asyncio.AbstractEventLoop

    def _awaiting_head(self) -> bool:
        raise NotImplementedError

    def _body_pending(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._draining = False
        self._drained = 0
        self._refused = len(self.connections) >= self.max_connections
        if self._refused:  # never reaches the application; the 503 goes out before the request is read
            self._raw = transport
            transport.write(_REFUSAL)
            self._half_close(transport, REFUSED_LINGER_S)
            return
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[misc]
        self._raw = transport
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused or self._draining:
            self._drained += len(data)
            if self._drained > DRAIN_BYTES:
                self._raw.close()
            return
        if self._header_timer is None and self._awaiting_head():
            self._arm_header_timer()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)  # type: ignore[misc]
        if not self._awaiting_head():
            self._cancel_header_timer()

    def eof_received(self) -> bool | None:
        if self._refused or self._draining:
            self._raw.close()
            return None
        return super().eof_received()  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if not self._refused:
            super().connection_lost(exc)  # type: ignore[misc]

    # -- header timeout ----------------------------------------------------
    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._awaiting_head() and not self._raw.is_closing():
            self._raw.close()

    # -- graceful close ----------------------------------------------------
    def _close(self) -> None:
        """What ``transport.close()`` means here: drain the unread body first when the client is still sending it."""
        if self._draining:
            return
        if self._body_pending() and not self._raw.is_closing() and self._raw.can_write_eof():
            self._draining = True
            self._half_close(self._raw, DRAIN_S)
        else:
            self._raw.close()

    def _half_close(self, transport: asyncio.Transport, linger_s: float) -> None:
        transport.write_eof()  # the response is complete for the client: FIN after it, no reset
        transport.resume_reading()
        self._close_timer = self.loop.call_later(linger_s, transport.close)


class GuardedH11Protocol(_Guard, H11Protocol):
    """uvicorn's h11 protocol, guarded (see the module): h11's own state says where the request is."""

    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _body_pending(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY


def _guarded_httptools() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, guarded; made on first use so that h11-only installs never import httptools.

    httptools reports a request by callbacks (message begin, headers
    complete, message complete); two flags follow them.
    """
    global _GUARDED_HTTPTOOLS
    if _GUARDED_HTTPTOOLS is None:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        class GuardedHttpToolsProtocol(_Guard, HttpToolsProtocol):
            _head_done = False  # the current request's head is complete...
            _body_done = True  # ...and so is its body

            def on_message_begin(self) -> None:
                self._head_done, self._body_done = False, False
                super().on_message_begin()

            def on_headers_complete(self) -> None:
                self._head_done = True
                super().on_headers_complete()

            def on_message_complete(self) -> None:
                self._body_done = True
                super().on_message_complete()

            def _awaiting_head(self) -> bool:
                # As h11's IDLE: no request head in progress or complete, and no response still owed.
                between = not self._head_done or self._body_done
                return between and (self.cycle is None or self.cycle.response_complete)

            def _body_pending(self) -> bool:
                return self._head_done and not self._body_done

        _GUARDED_HTTPTOOLS = GuardedHttpToolsProtocol
    return _GUARDED_HTTPTOOLS


_GUARDED_HTTPTOOLS: type[asyncio.Protocol] | None = None


class _LingeringTransport:
    """The transport uvicorn's protocol and request cycles write to; ``close()`` closes gracefully."""

    def __init__(self, transport: asyncio.Transport, protocol: _Guard) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol._close()

    def is_closing(self) -> bool:
        # Draining counts as closing: uvicorn then arms no keep-alive timer on a connection that is going away.
        return self._protocol._draining or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _EveryInterval(logging.Filter):
    """Let one accept-error record through per interval; the next one says how many were not shown."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last = float("-inf")
        self._hidden = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        out_of_resources = isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS
        # asyncio's accept loop schedules a retry per failed accept (up to the backlog per tick); retries still
        # pending when the server closes its socket fail too ("Exception in callback ..._start_serving"): the
        # same incident, limited the same way.
        if not (out_of_resources or "socket.accept()" in str(record.msg) or "_start_serving" in str(record.msg)):
            return True
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._hidden += 1
            return False
        # One line: the cause (Too many open files) in the message instead of a traceback per record.
        line = str(record.msg).splitlines()[0] + (f": {exc}" if exc else "")
        if self._hidden:
            line += f" ({self._hidden} more in the last {now - self._last:.0f} s not shown)"
        record.msg, record.args, record.exc_info, record.exc_text = line, (), None, None
        self._last, self._hidden = now, 0
        return True


def fit_open_files(max_connections: int, spare: int = OPEN_FILES_SPARE) -> str | None:
    """Raise the soft open-file limit so ``max_connections`` sockets fit, with ``spare`` for everything else.

    The cap only protects the server if it is reached before the file
    descriptors run out. Returns a warning when the hard limit is too low
    (the cap cannot be honoured), else ``None``.
    """
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return (f"warning: the open-file limit is {soft} (ulimit -n), too low for --max-connections "
                f"{max_connections}; lower --max-connections to {max(1, soft - spare)} or raise the limit")
    return None


def limit_accept_error_logs(interval_s: float = ACCEPT_LOG_INTERVAL_S) -> None:
    """Log asyncio's accept errors (``socket.accept() out of system resource``) once per ``interval_s``.

    Idempotent: installs one filter on the ``asyncio`` logger.
    """
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _EveryInterval) for f in logger.filters):
        logger.addFilter(_EveryInterval(interval_s))
