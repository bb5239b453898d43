from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.assets import MissingAssets, SharedAssets, shared_assets
from tests.browser_support import browser  # noqa: F401 - the page tests' module-scoped Chromium
from tests.ray_support import cluster  # noqa: F401 - the Ray tests' module-scoped cluster fixture


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C's default behaviour for the signal tests: a suite started as a background job of a script inherits
    SIGINT ignored (POSIX), and so would every process it starts (an ignored signal survives exec), so the tests
    that send SIGINT to a run would see nothing happen. A handler (unlike SIG_IGN) is reset in children."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tiers: every test that reaches the shared models or data (the ``shared`` fixture,
    directly or through another fixture) is marked ``model``, so ``pytest -m "not model"``
    runs the pure and fake-engine tests in seconds."""
    for item in items:
        if "shared" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.model)


def _has_export_extra() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ultralytics") is not None
    except ImportError:
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``export`` skips, saying which extra it needs, where Ultralytics is not installed (the light
    ``pip install -e '.[dev]'`` of docs/development.md) instead of failing on the import. CI installs the extra."""
    if item.get_closest_marker("export") is not None and not _has_export_extra():
        pytest.skip("needs the export extra: pip install 'yolo-ov[export]'")


@pytest.fixture(scope="session")
def shared() -> SharedAssets:
    """The shared models and coco96 data; a failure in CI when missing, a skip elsewhere."""
    try:
        return shared_assets()
    except MissingAssets as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's cache and $YOLO_OV_MODEL out of tests; one model cache per session."""
    cache = tmp_path_factory.getbasetemp() / "yolo-ov-cache"
    monkeypatch.setenv("YOLO_OV_CACHE_DIR", str(cache))
    monkeypatch.delenv("YOLO_OV_MODEL", raising=False)


@pytest.fixture(scope="session")
def fp32_detector(shared: SharedAssets):
    from yolo_ov import Detector

    with Detector(shared.fp32_model, mode="latency") as det:
        yield det


@pytest.fixture(scope="session")
def int8_detector(shared: SharedAssets):
    from yolo_ov import Detector

    with Detector(shared.int8_model, mode="latency") as det:
        yield det


@pytest.fixture
def image_path(shared: SharedAssets) -> Path:
    return shared.coco96_images[0]


@pytest.fixture(scope="session")
def onnx_model(shared: SharedAssets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """yolov8n exported to ONNX by Ultralytics itself (needs the export extra)."""
    pytest.importorskip("ultralytics", reason="needs the export extra: pip install 'yolo-ov[export]'")
    import shutil

    from ultralytics import YOLO

    work = tmp_path_factory.mktemp("onnx")
    pt = work / "yolov8n.pt"
    shutil.copy(shared.pt_model, pt)
    out = YOLO(str(pt)).export(format="onnx", imgsz=640, simplify=False, verbose=False)
    return Path(out)


@pytest.fixture(scope="session")
def video_16x9(shared: SharedAssets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short 640x360 (16:9) MJPG video written from coco96 images (not committed)."""
    import cv2

    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 360))
    for image in shared.coco96_images[:12]:
        writer.write(cv2.resize(cv2.imread(str(image)), (640, 360)))
    writer.release()
    return path


@pytest.fixture(scope="module")
def rtsp() -> None:
    """GStreamer's RTSP server can run here (tests/rtsp_support.py): a skip with the reason outside CI, a failure
    in CI."""
    from tests.rtsp_support import rtsp_available

    reason = rtsp_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
