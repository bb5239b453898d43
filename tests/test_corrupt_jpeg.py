"""A JPEG whose frame header claims more pixels than its data holds is a corrupt input, not an empty image.

libjpeg only warns ("Corrupt JPEG data: premature end of data segment") and returns a mostly grey picture of
the declared size, which used to be answered as a valid image with no detections (issue 24, item 4). The check
is a strict lower bound on a sequential JPEG's data (two bits per block), so it never refuses a valid file; a
header inflated by less than that bound (or a progressive file) is still decoded as libjpeg decodes it.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from yolo_ov.errors import InputError
from yolo_ov.imaging.decode import load_image, load_image_for
from yolo_ov.imaging.header import jpeg_min_data_bytes


def _jpeg(h: int, w: int, *, quality: int = 90, flat: bool = False, progressive: bool = False,
          sampling: int | None = None) -> bytes:
    rng = np.random.default_rng(h * 7919 + w)
    img = np.full((h, w, 3), 128, np.uint8) if flat else rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    if sampling is not None:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    ok, buf = cv2.imencode(".jpg", img, params)
    assert ok
    return buf.tobytes()


def _patch_size(data: bytes, h: int, w: int) -> bytes:
    """Rewrite the SOF0 segment's height and width (what a damaged or hostile file does)."""
    pos = data.index(b"\xff\xc0")
    return data[: pos + 5] + struct.pack(">HH", h, w) + data[pos + 9:]


@pytest.mark.parametrize(("h", "w"), [(9000, 9000), (6000, 8000), (20000, 4000)])
def test_a_header_claiming_more_than_the_data_holds_is_one_clear_error(h, w):
    data = _patch_size(_jpeg(480, 640, quality=75), h, w)
    with pytest.raises(InputError) as info:
        load_image(data, "big.jpg")
    text = str(info.value)
    assert text.startswith("big.jpg: corrupt JPEG") and "\n" not in text
    with pytest.raises(InputError):
        load_image_for(data, (640, 640), "big.jpg")  # the reduced-decode path checks it too


def test_the_file_on_disk_is_named(tmp_path):
    path = tmp_path / "patched.jpg"
    path.write_bytes(_patch_size(_jpeg(240, 320), 8000, 6000))
    with pytest.raises(InputError, match=r"patched\.jpg: corrupt JPEG"):
        load_image(path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quality": 1, "flat": True},  # the smallest a baseline file gets: the bound must still hold
        {"quality": 1, "flat": True, "sampling": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444},
        {"quality": 1, "flat": True, "sampling": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422},
        {"quality": 95},
        {"quality": 50, "sampling": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411},
    ],
)
@pytest.mark.parametrize(("h", "w"), [(1, 1), (7, 9), (480, 640), (1080, 1920), (17, 3001)])
def test_valid_baseline_jpegs_are_within_the_bound(kwargs, h, w):
    data = _jpeg(h, w, **kwargs)
    least = jpeg_min_data_bytes(data)
    assert least is not None and len(data) >= least
    assert load_image(data, "ok.jpg").shape == (h, w, 3)


def test_progressive_jpegs_have_no_bound_and_still_decode():
    data = _jpeg(480, 640, quality=1, flat=True, progressive=True)
    assert jpeg_min_data_bytes(data) is None
    assert load_image(data, "p.jpg").shape == (480, 640, 3)


@pytest.mark.parametrize("data", [b"\xff\xd8", b"\xff\xd8\xff", b"\xff\xd8\xff\xc0\x00", b"not a jpeg"])
def test_unparsable_headers_give_no_bound(data):
    assert jpeg_min_data_bytes(data) is None
