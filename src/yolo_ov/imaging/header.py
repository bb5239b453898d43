"""Read an encoded image's width and height from its header, without decoding it.

Two users: the pipeline decodes a large JPEG at a half, quarter or eighth of
its size when the letterbox needs no more (:mod:`yolo_ov.imaging.decode`), which it
can only choose before decoding; and the server must refuse a decompression bomb (a few kilobytes of PNG or JPEG
that declare 50,000 x 50,000 pixels) *before* OpenCV allocates the pixels.
``cv2.imdecode`` has no header-only mode, and its own cap
(``OPENCV_IO_MAX_IMAGE_PIXELS``) is a process-wide setting read once when the
library loads. Pillow's lazy ``Image.open`` reads headers, but its bomb check
is a module global (``Image.MAX_IMAGE_PIXELS``) that warns or raises on its own
terms, which a library mounted in someone else's process must not change.

So this module parses the headers itself, for a closed list of formats: JPEG,
PNG, WebP, BMP and TIFF (what cameras, browsers and clients send). Each parser
reads only fixed fields the format defines (PNG's ``IHDR``, JPEG's first
``SOFn`` segment, walked marker by marker; WebP's ``VP8``/``VP8L``/``VP8X``
chunk; BMP's info header; TIFF's first IFD), checks every offset against the
data, and raises :class:`HeaderError` for anything else. A format outside the
list is refused rather than decoded blind: the server then never runs a decoder
whose size it could not check. The decoded image is compared with the header
afterwards, so a parser and decoder that disagreed could not pass unnoticed.
Pure Python, no dependencies; nothing here allocates more than the header.
"""

from __future__ import annotations

import struct

__all__ = ["FORMATS", "HeaderError", "image_size", "jpeg_min_data_bytes", "jpeg_orientation"]

#: The formats whose size this module can read (and so the server accepts).
FORMATS = ("JPEG", "PNG", "WebP", "BMP", "TIFF")


class HeaderError(ValueError):
    """The data is not an image of a supported format, or its header is cut short or invalid."""


def image_size(data: bytes | bytearray | memoryview) -> tuple[str, int, int]:
    """``(format, width, height)`` declared by the header of encoded image ``data``.

    Raises:
        HeaderError: unknown format, or a header that is truncated or invalid;
            the message says which.

    Example:
        >>> png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000280000001e008020000000000")
        >>> image_size(png)
        ('PNG', 640, 480)
    """
    head = bytes(data[:16])
    if head.startswith(b"\xff\xd8"):
        fmt, (w, h) = "JPEG", _jpeg(data)
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        fmt, (w, h) = "PNG", _png(data)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt, (w, h) = "WebP", _webp(data)
    elif head.startswith(b"BM"):
        fmt, (w, h) = "BMP", _bmp(data)
    elif head[:4] in (b"II*\x00", b"MM\x00*"):
        fmt, (w, h) = "TIFF", _tiff(data)
    else:
        raise HeaderError(f"not a supported image format (send {', '.join(FORMATS)})")
    if w < 1 or h < 1:
        raise HeaderError(f"{fmt} header declares an empty image ({w}x{h})")
    return fmt, w, h


def _unpack(fmt: str, data: bytes | bytearray | memoryview, offset: int, what: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise HeaderError(f"{what} header is cut short")
    return struct.unpack_from(fmt, data, offset)


#: JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers without a length field.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def _jpeg(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    pos, n = 2, len(data)
    while True:
        # Every segment starts with 0xFF; extra 0xFF bytes are fill.
        if pos >= n or data[pos] != 0xFF:
            raise HeaderError("JPEG header is cut short or corrupt (no frame header before the image data)")
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise HeaderError("JPEG header is cut short")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            raise HeaderError("JPEG has no frame header before its image data")
        (length,) = _unpack(">H", data, pos, "JPEG")
        if length < 2:
            raise HeaderError("JPEG header is corrupt (segment length < 2)")
        if marker in _SOF:
            _precision, height, width = _unpack(">BHH", data, pos + 2, "JPEG")
            if height == 0:
                raise HeaderError("JPEG declares its height later in the data (DNL); not supported")
            return width, height
        pos += length


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def jpeg_min_data_bytes(data: bytes | bytearray | memoryview) -> int | None:
    """The fewest bytes a sequential (baseline or extended) Huffman JPEG of its declared size can occupy.

    Each 8x8 block of each component costs at least two Huffman codes of at least one bit each: its DC
    difference and either an end-of-block or an AC coefficient. A file shorter than that bound cannot hold
    the image its frame header declares (a header claiming 9000x9000 on a 640x480 stream): libjpeg would only
    warn ("premature end of data segment") and return a mostly grey picture, so the caller rejects it instead.
    The bound is strict, so no valid file is refused. Progressive and arithmetic-coded JPEGs (end-of-band runs
    code many blocks in a few bits) and anything unparsable give ``None``: no bound.
    """
    pos, n = 2, len(data)
    while pos < n and data[pos] == 0xFF:
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            return None
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA) or pos + 2 > n:
            return None
        (length,) = struct.unpack_from(">H", data, pos)
        if marker in _SOF:
            if marker not in (0xC0, 0xC1) or pos + 8 > n:
                return None
            _precision, height, width, count = struct.unpack_from(">BHHB", data, pos + 2)
            if pos + 8 + 3 * count > n or count == 0 or height == 0:
                return None
            sampling = [data[pos + 8 + 3 * i + 1] for i in range(count)]
            hs, vs = [max(s >> 4, 1) for s in sampling], [max(s & 15, 1) for s in sampling]
            hmax, vmax = max(hs), max(vs)
            blocks = sum(_ceil(_ceil(width * h, hmax), 8) * _ceil(_ceil(height * v, vmax), 8)
                         for h, v in zip(hs, vs, strict=True))
            return _ceil(2 * blocks, 8)
        pos += length
    return None


def _png(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    length, kind, width, height = _unpack(">I4sII", data, 8, "PNG")
    if kind != b"IHDR" or length != 13:
        raise HeaderError("PNG is corrupt (its first chunk is not IHDR)")
    return width, height


def _webp(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    (chunk,) = _unpack("4s", data, 12, "WebP")
    if chunk == b"VP8 ":  # lossy: frame tag (3), start code 9d 01 2a, 14-bit width and height
        start, w, h = _unpack("<3sHH", data, 23, "WebP")
        if start != b"\x9d\x01\x2a":
            raise HeaderError("WebP (lossy) is corrupt (no VP8 start code)")
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14-bit width-1 and height-1
        sig, bits = _unpack("<BI", data, 20, "WebP")
        if sig != 0x2F:
            raise HeaderError("WebP (lossless) is corrupt (no VP8L signature)")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        w0, w1, w2, h0, h1, h2 = _unpack("6B", data, 24, "WebP")
        return (w0 | w1 << 8 | w2 << 16) + 1, (h0 | h1 << 8 | h2 << 16) + 1
    raise HeaderError(f"WebP has an unknown first chunk {bytes(chunk)!r}")


def _bmp(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    (header,) = _unpack("<I", data, 14, "BMP")
    if header == 12:  # BITMAPCOREHEADER: 16-bit unsigned sizes
        return _unpack("<HH", data, 18, "BMP")  # type: ignore[return-value]
    if header < 40:
        raise HeaderError(f"BMP is corrupt (info header of {header} bytes)")
    width, height = _unpack("<ii", data, 18, "BMP")
    return width, abs(height)  # negative height: rows stored top-down


def _tiff(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = _unpack(order + "I", data, 4, "TIFF")
    (count,) = _unpack(order + "H", data, ifd, "TIFF")
    found: dict[int, int] = {}
    for i in range(count):
        tag, kind, n = _unpack(order + "HHI", data, ifd + 2 + 12 * i, "TIFF")
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG, one value
            if n != 1 or kind not in (3, 4):
                raise HeaderError("TIFF is corrupt (image size tag of an unexpected type)")
            (value,) = _unpack(order + ("H" if kind == 3 else "I"), data, ifd + 2 + 12 * i + 8, "TIFF")
            found[tag] = value
    if 256 not in found or 257 not in found:
        raise HeaderError("TIFF has no image width/length in its first directory")
    return found[256], found[257]


def jpeg_orientation(data: bytes | bytearray | memoryview) -> int:
    """The EXIF orientation (1-8) a JPEG declares; 1 (as stored) when it declares none.

    OpenCV's ``IMREAD_COLOR`` applies it, so orientations 5-8 swap the decoded
    width and height. Only the ``APP1`` segments before the first frame header
    are read (where EXIF lives); anything malformed counts as 1, never an error:
    the caller compares the decoded size with what it expected anyway.

    Example:
        >>> jpeg_orientation(b"\\xff\\xd8\\xff\\xd9")
        1
    """
    pos, n = 2, len(data)
    if bytes(data[:2]) != b"\xff\xd8":
        return 1
    while pos + 4 <= n and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in _SOF or marker in (0xD9, 0xDA):
            return 1
        if marker in _STANDALONE or marker == 0xFF:
            pos += 1 if marker == 0xFF else 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2:
            return 1
        if marker == 0xE1 and bytes(data[pos + 4:pos + 10]) == b"Exif\x00\x00":
            value = _exif_orientation(data, pos + 10, min(pos + 2 + length, n))
            if value is not None:
                return value
        pos += 2 + length
    return 1


def _exif_orientation(data: bytes | bytearray | memoryview, start: int, end: int) -> int | None:
    """Tag 0x0112 of IFD0 in the TIFF structure at ``data[start:end]``."""
    tiff = bytes(data[start:end])
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for i in range(count):
            tag, kind, _n = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * i)
            if tag == 0x0112 and kind == 3:
                (value,) = struct.unpack_from(order + "H", tiff, ifd + 2 + 12 * i + 8)
                return value if 1 <= value <= 8 else None
    except struct.error:
        return None
    return None
