"""Turn whatever the user hands us into a BGR ``uint8`` ``HxWx3`` image.

Accepted: a path (``str``/``Path``), the bytes of an encoded image, or a numpy
array. Unusual but valid images are converted rather than rejected: grayscale,
BGRA, 16-bit and float images all become 8-bit BGR. What cannot be used raises
:class:`~yolo_ov.errors.InputError` with a one-line message that names the
input. Pure OpenCV/numpy: nothing here imports OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

__all__ = ["IMAGE_SUFFIXES", "ImageInput", "describe_source", "load_image", "to_bgr8"]

#: File suffixes treated as images when a folder or glob is expanded.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm", ".jp2"}
)

ImageInput = str | Path | bytes | bytearray | memoryview | np.ndarray

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND"


def describe_source(image: ImageInput) -> str:
    """A short, human-readable name for an input, used in results and errors."""
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"<array {'x'.join(map(str, image.shape))} {image.dtype}>"
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes>"
    return f"<{type(image).__name__}>"


def load_image(image: ImageInput, source: str | None = None) -> np.ndarray:
    """Decode/convert ``image`` to a contiguous BGR ``uint8`` array.

    Arrays are assumed to be OpenCV-style (BGR/BGRA/gray); an 8-bit 3-channel
    contiguous array is returned as is, without a copy.

    Raises:
        InputError: the input is missing, empty, truncated, corrupt or not an image.
    """
    name = source or describe_source(image)
    if isinstance(image, np.ndarray):
        return to_bgr8(image, name)
    if isinstance(image, (str, Path)):
        data = _read_file(Path(image), name)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        raise InputError(
            f"{name}: unsupported input type {type(image).__name__}; "
            "pass a file path, encoded image bytes or a numpy array",
            name,
        )
    return _decode(data, name)


def _read_file(path: Path, name: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file", name) from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a folder, not an image file", name) from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read file ({exc.strerror or exc})", name) from exc
    return data


def _decode(data: bytes, name: str) -> np.ndarray:
    if not data:
        raise InputError(f"{name}: empty file (0 bytes), not an image", name)
    _check_not_truncated(data, name)
    buf = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR converts gray/BGRA/16-bit to 8-bit BGR and applies EXIF
    # orientation: the same decode Ultralytics uses, so boxes agree.
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise InputError(f"{name}: not a decodable image (corrupt or unsupported format)", name)
    return img


def _check_not_truncated(data: bytes, name: str) -> None:
    """Reject JPEG/PNG files cut short; OpenCV would decode them half grey.

    libjpeg only warns on a missing end-of-image marker and returns a partly
    filled picture, so the check must be ours.
    """
    if data.startswith(_JPEG_SOI):
        tail = data.rstrip(b"\x00")[-2:]
        if tail != _JPEG_EOI:
            raise InputError(f"{name}: truncated JPEG (no end-of-image marker); re-save or re-download it", name)
    elif data.startswith(_PNG_SIG) and _PNG_IEND not in data[-32:]:
        raise InputError(f"{name}: truncated PNG (no IEND chunk); re-save or re-download it", name)


def to_bgr8(array: np.ndarray, name: str = "<array>") -> np.ndarray:
    """Convert an OpenCV-style array to contiguous 8-bit BGR.

    Handles ``HxW`` / ``HxWx1`` grayscale, ``HxWx4`` BGRA, ``uint16`` (scaled
    by 1/257), float in ``[0, 1]`` (scaled by 255) and non-contiguous views.
    """
    if not isinstance(array, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(array).__name__}", name)
    img = array
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise InputError(
            f"{name}: array of shape {array.shape} is not an image; expected HxW, HxWx1, HxWx3 or HxWx4",
            name,
        )
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise InputError(f"{name}: empty image of shape {array.shape}", name)
    if img.dtype != np.uint8:
        img = _to_uint8(img, name)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)


def _to_uint8(img: np.ndarray, name: str) -> np.ndarray:
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise InputError(f"{name}: float image contains NaN or infinity", name)
        scale = 255.0 if img.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(img * scale + 0.5, 0, 255).astype(np.uint8)
    if img.dtype == np.bool_:
        raise InputError(f"{name}: boolean arrays are masks, not images", name)
    if np.issubdtype(img.dtype, np.integer):
        return np.clip(img, 0, 255).astype(np.uint8)
    raise InputError(f"{name}: unsupported array dtype {img.dtype}", name)
