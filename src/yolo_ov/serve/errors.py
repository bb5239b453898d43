"""Transport-neutral errors of the server: what went wrong, not how a protocol says it.

The models, the KServe v2 core and the limits raise :class:`ServeError` with
an :class:`ErrorCode`; each transport maps the code to its own form. The HTTP
layer (FastAPI) sends ``code.http_status`` and KServe's ``{"error": "..."}``
body; a gRPC transport sets ``code.grpc_status`` (the name of a
``grpc.StatusCode``) and the message as details. Nothing here imports a web
framework, so both transports share one set of refusals, word for word.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ErrorCode", "ServeError"]


class ErrorCode(Enum):
    """Why a request was refused; each carries its HTTP status and gRPC status name as data."""

    INVALID_ARGUMENT = (400, "INVALID_ARGUMENT", "a malformed request, parameter or image")
    UNAUTHENTICATED = (401, "UNAUTHENTICATED", "no API key, or a wrong one")
    NOT_FOUND = (404, "NOT_FOUND", "no such model or version")
    PAYLOAD_TOO_LARGE = (413, "RESOURCE_EXHAUSTED", "a body, image or request over a limit")
    UNSUPPORTED_ENCODING = (415, "UNIMPLEMENTED", "a content encoding the server does not read")
    INTERNAL = (500, "INTERNAL", "inference failed")
    OVERLOADED = (503, "UNAVAILABLE", "the model's queue is full: retry after retry_after_s")
    UNAVAILABLE = (503, "UNAVAILABLE", "not accepting work: shutting down or closed")
    DEADLINE_EXCEEDED = (504, "DEADLINE_EXCEEDED", "no answer within the request's deadline")

    def __init__(self, http_status: int, grpc_status: str, meaning: str) -> None:
        self.http_status = http_status
        self.grpc_status = grpc_status
        self.meaning = meaning


class ServeError(Exception):
    """A request the server refuses or cannot answer: a code and one line saying why.

    Args:
        code: the transport-neutral reason.
        message: what the client reads (the same on every transport).
        retry_after_s: for a refusal that passes (overload, shutdown), when to
            try again; HTTP sends it as ``Retry-After``.
    """

    def __init__(self, code: ErrorCode, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> int:
        """The HTTP status of :attr:`code` (what HTTP clients and the metrics' ``code`` label see)."""
        return self.code.http_status

    def __repr__(self) -> str:
        return f"ServeError({self.code.name}, {self.message!r})"
