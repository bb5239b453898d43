"""The server's limits on what a request holds, each enforced as early as it can be, on any transport.

- **Body size** is the transport's to enforce as the bytes arrive (HTTP:
  :class:`~yolo_ov.serve.http_errors.BodyLimit`); the limit is ``max_body_bytes``.
- **Compressed bodies** (:func:`decode_body`): ``gzip``/``deflate`` request
  bodies are inflated only up to the same limit (a zip bomb gets 413).
- **Pixels** (:func:`check_encoded`, :func:`check_frame`): an image whose
  header declares more than ``max_pixels`` gets 413 before it is decoded; one
  whose header cannot be read gets 400 naming the problem.

Every refusal is a transport-neutral :class:`~yolo_ov.serve.errors.ServeError`
(``PAYLOAD_TOO_LARGE``, ``INVALID_ARGUMENT``, ``UNSUPPORTED_ENCODING``), which
the HTTP layer turns into 413/400/415 and KServe's ``{"error": "..."}`` body.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..imaging.header import HeaderError, image_size
from .errors import ErrorCode, ServeError

__all__ = ["ServeError", "check_encoded", "check_frame", "decode_body", "megabytes"]


def megabytes(n: int) -> str:
    """``n`` bytes as the limits' messages say it (``4 MB``)."""
    return f"{n / 1024 / 1024:g} MB"


def decode_body(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Inflate a ``gzip``/``deflate`` request body, never past ``max_bytes``.

    Raises:
        ServeError: ``PAYLOAD_TOO_LARGE`` when it inflates past the limit,
            ``INVALID_ARGUMENT`` when it is corrupt, ``UNSUPPORTED_ENCODING``
            for another encoding.
    """
    kind = (encoding or "identity").strip().lower()
    if kind == "identity":
        return body
    if kind not in ("gzip", "deflate"):
        raise ServeError(ErrorCode.UNSUPPORTED_ENCODING,
                         f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)")
    inflater = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ServeError(ErrorCode.INVALID_ARGUMENT, f"the {kind} request body is corrupt ({exc})") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise ServeError(ErrorCode.PAYLOAD_TOO_LARGE,
                         f"the {kind} request body inflates past the limit of {megabytes(max_bytes)} (--max-body-mb)")
    if not inflater.eof:
        raise ServeError(ErrorCode.INVALID_ARGUMENT, f"the {kind} request body is cut short")
    return out


def check_encoded(data: bytes, max_pixels: int, name: str) -> tuple[int, int]:
    """Check an encoded image's header before it is decoded; ``(width, height)``.

    Raises:
        ServeError: ``PAYLOAD_TOO_LARGE`` when it declares more than
            ``max_pixels``; ``INVALID_ARGUMENT`` when it is empty, not a
            supported format, or its header is cut short.
    """
    if not data:
        raise ServeError(ErrorCode.INVALID_ARGUMENT, f"{name}: empty (0 bytes), not an image")
    try:
        fmt, width, height = image_size(data)
    except HeaderError as exc:
        raise ServeError(ErrorCode.INVALID_ARGUMENT, f"{name}: {exc}") from None
    _check_pixels(width, height, max_pixels, name, fmt)
    return width, height


def check_frame(frame: np.ndarray, max_pixels: int, name: str) -> None:
    """Check a raw frame's size against ``max_pixels`` (``PAYLOAD_TOO_LARGE``)."""
    _check_pixels(frame.shape[1], frame.shape[0], max_pixels, name, "frame")


def _check_pixels(width: int, height: int, max_pixels: int, name: str, what: str) -> None:
    pixels = width * height
    if pixels > max_pixels:
        raise ServeError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{name}: {what} of {width}x{height} ({pixels / 1e6:.1f} MP) is over the limit of "
            f"{max_pixels / 1e6:g} MP (--max-pixels)",
        )
