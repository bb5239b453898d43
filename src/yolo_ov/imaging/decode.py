"""Turn whatever the user hands us into a BGR ``uint8`` ``HxWx3`` image.

Accepted: a path (``str``/``Path``), the bytes of an encoded image, or a numpy
array. Unusual but valid images are converted rather than rejected: grayscale,
BGRA, 16-bit and float images all become 8-bit BGR. What cannot be used raises
:class:`~yolo_ov.errors.InputError` with a one-line message that names the
input. Pure OpenCV/numpy: nothing here imports OpenVINO.

Reduced decoding (:func:`load_image_for`): a JPEG much larger than the network
input is decoded at a half, quarter or eighth of its size by libjpeg's DCT
scaling (``cv2.IMREAD_REDUCED_COLOR_2/4/8``) when the letterbox needs no more
pixels than that, which skips most of the decoding work on 12 MP photos and 4K
frames. The size is read from the header first (:mod:`yolo_ov.imaging.header`), and
the letterbox geometry stays that of the full image, so boxes still come back
in original pixels; only the pixels fed to the network differ slightly (DCT
scaling averages where a full decode + ``INTER_LINEAR`` samples), which is
why it is a setting (``DetectConfig.fast_decode``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from .header import HeaderError, image_size, jpeg_min_data_bytes, jpeg_orientation
from .letterbox import letterbox_geometry

__all__ = [
    "IMAGE_SUFFIXES", "REDUCTIONS", "ImageInput", "describe_source", "load_image", "load_image_for",
    "reduction_factor", "to_bgr8",
]

#: File suffixes treated as images when a folder or glob is expanded.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm", ".jp2"}
)

ImageInput = str | Path | bytes | bytearray | memoryview | np.ndarray

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND"

#: Reduced JPEG decoding: factor -> OpenCV flag (libjpeg's DCT scaling by 1/2, 1/4, 1/8).
REDUCTIONS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


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


def reduction_factor(original_hw: tuple[int, int], target_hw: tuple[int, int]) -> int:
    """The largest of 8, 4 and 2 by which an ``original_hw`` image can be decoded and still
    hold its letterbox into ``target_hw`` without upscaling; 1 when none can.

    The reduced decode is ``ceil(side / f)``; the floor is used here, so the
    decoded image is never smaller than the letterbox's resized image.

    Example:
        >>> reduction_factor((2160, 3840), (640, 640)), reduction_factor((480, 640), (640, 640))
        (4, 1)
    """
    nh, nw = letterbox_geometry(original_hw, target_hw).resized
    h, w = original_hw
    for f in sorted(REDUCTIONS, reverse=True):
        if h // f >= nh and w // f >= nw:
            return f
    return 1


def load_image_for(image: ImageInput, target_hw: tuple[int, int] | None, source: str | None = None, *,
                   reduce: bool = True,
                   reduction: Callable[[tuple[int, int], tuple[int, int]], int] = reduction_factor,
                   ) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``image`` for letterboxing into ``target_hw``: ``(pixels, original (h, w))``.

    With ``reduce`` (and a ``target_hw``), a JPEG whose letterbox needs at most
    a half, quarter or eighth of its pixels is decoded at that size
    (``reduction``: :func:`reduction_factor`, or a head's own rule);
    ``pixels`` is then smaller than ``original``, and the letterbox must use
    ``original`` for its geometry (:func:`~yolo_ov.imaging.letterbox.letterbox`'s
    ``original_hw``). Anything else is decoded as :func:`load_image` does and
    ``original`` is its shape. Shape specialisation does not change the
    factor: every compiled shape holds the minimal letterbox of the model's
    own size, which has the same scale, so pass the model's own input size.

    Raises:
        InputError: as :func:`load_image`.
    """
    name = source or describe_source(image)
    if not reduce or target_hw is None or isinstance(image, np.ndarray):
        img = load_image(image, name)
        return img, (int(img.shape[0]), int(img.shape[1]))
    data = _read_file(Path(image), name) if isinstance(image, (str, Path)) else image
    if not isinstance(data, (bytes, bytearray, memoryview)):
        img = load_image(data, name)  # the unsupported type gets load_image's message
        return img, (int(img.shape[0]), int(img.shape[1]))
    data = bytes(data)
    original = _jpeg_hw(data)
    factor = reduction(original, target_hw) if original else 1
    if factor == 1:
        img = _decode(data, name)
        return img, (int(img.shape[0]), int(img.shape[1]))
    _check_not_truncated(data, name)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCTIONS[factor])
    h, w = original  # type: ignore[misc]
    if img is None or img.shape[:2] != (-(-h // factor), -(-w // factor)):
        # The header and the decoder disagree (an EXIF layout this parser does
        # not read, a damaged file): decode in full, which names any error.
        img = _decode(data, name)
        return img, (int(img.shape[0]), int(img.shape[1]))
    return img, original  # type: ignore[return-value]


def _jpeg_hw(data: bytes) -> tuple[int, int] | None:
    """A JPEG's ``(h, w)`` as OpenCV will return it (EXIF orientation applied), from its header."""
    if not data.startswith(_JPEG_SOI):
        return None
    try:
        _fmt, w, h = image_size(data)
    except HeaderError:
        return None
    return (w, h) if jpeg_orientation(data) >= 5 else (h, w)


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
        least = jpeg_min_data_bytes(data)
        if least is not None and len(data) < least:
            raise InputError(f"{name}: corrupt JPEG (its header declares a larger image than its data holds); "
                             "re-save or re-download it", name)
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
