"""The web page of ``yolo-ov serve`` in a real headless Chromium (Debian's, driven by Playwright).

Upload a coco96 image, wait for the drawing, check that the labels shown are
the detections of the JSON shown, and that the JSON is what ``/predict``
returns; the camera path with Chromium's fake camera; an error shown as one
line; live server figures. A screenshot is saved under the test's tmp folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from tests.serve_support import ServerProcess

pytest.importorskip("playwright.sync_api")
requests = pytest.importorskip("requests")


@pytest.fixture(scope="module")
def server(shared, tmp_path_factory):
    args = ["--model", str(shared.int8_model)]
    seg = shared.root / "models" / "yolo11n-seg_int8_openvino_model"
    if seg.exists():
        args += ["--model", f"seg={seg}"]
    proc = ServerProcess(args, cache_dir=tmp_path_factory.getbasetemp() / "yolo-ov-cache").start()
    yield proc
    assert proc.stop() == 0, proc.output()


@contextlib.contextmanager
def _opened(browser, url: str) -> Iterator:
    """The page at ``url`` in a fresh context (camera allowed), once its model list is filled; on leaving, no
    JavaScript error may have happened on it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["camera"], origin=url)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(url + "/")
    pg.wait_for_function("document.querySelectorAll('#model option').length > 0", timeout=30_000)
    yield pg
    context.close()
    assert not errors, errors  # no JavaScript error on the page


@pytest.fixture
def page(browser, server):
    with _opened(browser, server.url) as pg:
        yield pg


def _shown_labels(pg) -> list[tuple[str, float]]:
    out = []
    for text in pg.locator("#labels li").all_inner_texts():
        name, _, conf = text.rpartition(" ")
        out.append((name, float(conf)))
    return out


def test_upload_draws_the_detections_and_shows_their_json(shared, server, page, tmp_path):
    image = shared.coco96_images[0]  # bowls, broccoli, a hot dog
    assert page.locator("#model").input_value() == "yolov8n_int8"  # the first model is preselected
    page.set_input_files("#file", str(image))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)

    shown = json.loads(page.locator("#json").inner_text())
    direct = requests.post(f"{server.url}/predict", files={"file": (image.name, image.read_bytes())},
                           params={"conf": "0.25"}, timeout=60).json()
    assert shown == direct  # the page shows exactly what /predict returns

    labels = _shown_labels(page)
    assert len(labels) == len(shown["detections"]) > 0
    for (name, conf), det in zip(labels, shown["detections"], strict=True):
        assert name == det["class_name"]
        assert conf == pytest.approx(det["confidence"], abs=0.0051)

    size = page.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]")
    assert size == [shown["width"], shown["height"]]
    # The last detection is drawn last, so its label's background is its class colour
    # (Ultralytics' palette, as yolo-ov draws with), exactly where the page puts it.
    d = shown["detections"][-1]
    x1, y1 = d["box"][:2]
    lw = max(round((shown["width"] + shown["height"]) / 2 * 0.003), 2)
    th = max(lw * 6, 12) + 4
    top = y1 - th if y1 - th >= 0 else y1
    pixel = page.evaluate(
        "([x, y]) => Array.from(document.getElementById('canvas').getContext('2d').getImageData(x, y, 1, 1).data)",
        [int(x1) + 1, int(top) + 1],
    )
    palette = ["#ff3838", "#ff9d97", "#ff701f", "#ffb21d", "#cfd231", "#48f90a", "#92cc17", "#3ddb86", "#1a9334",
               "#00d4bb", "#2c99a8", "#00c2ff", "#344593", "#6473ff", "#0018ec", "#8438ff", "#520085", "#cb38ff",
               "#ff95c8", "#ff37c7"]
    expected = palette[d["class_id"] % len(palette)]
    rgb = [int(expected[i : i + 2], 16) for i in (1, 3, 5)]
    assert all(abs(a - b) <= 8 for a, b in zip(pixel[:3], rgb, strict=True)), (pixel, expected)

    assert "ms" in page.locator("#elapsed").inner_text()
    page.wait_for_function("document.querySelector('#stats tbody tr td:nth-child(6)')?.textContent >= '1'",
                           timeout=10_000)
    row = page.locator("#stats tbody tr").first.all_inner_texts()[0]
    assert row.startswith("yolov8n_int8")
    shot = tmp_path / "serve_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_conf_slider_and_error_line(shared, page, tmp_path):
    page.locator("#conf").fill("0.8")
    page.set_input_files("#file", str(shared.coco96_images[0]))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert all(conf >= 0.8 for _, conf in _shown_labels(page))
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture", encoding="utf-8")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("body[data-state=error]", timeout=60_000)
    status = page.locator("#status").inner_text()
    assert status.startswith("400:") and "not a supported image format" in status


def test_camera_frame_is_detected(page):
    page.click("#camera")
    page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=30_000)
    page.click("#snap")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    shown = json.loads(page.locator("#json").inner_text())
    width, height = page.evaluate("[document.getElementById('video').videoWidth, "
                                  "document.getElementById('video').videoHeight]")
    assert (shown["width"], shown["height"]) == (width, height)
    assert shown["source"] == "camera.jpg"
    page.click("#camera-off")


def test_segmentation_masks_are_drawn(shared, page, tmp_path):
    if not page.locator("#model option[value=seg]").count():
        pytest.skip("no segmentation model in the shared assets")
    page.select_option("#model", "seg")
    page.set_input_files("#file", str(shared.coco96_images[1]))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    shown = json.loads(page.locator("#json").inner_text())
    assert shown["detections"] and all("mask" in d for d in shown["detections"])
    assert [n for n, _ in _shown_labels(page)] == [d["class_name"] for d in shown["detections"]]
    # Inside the first mask, the canvas is tinted: it differs from the plain image at that pixel.
    rle = shown["detections"][0]["mask"]
    mask_api = pytest.importorskip("faster_coco_eval.core.mask")
    mask = mask_api.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    ys, xs = np.nonzero(mask)
    y, x = int(np.median(ys)), int(np.median(xs))
    if not mask[y, x]:
        y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    drawn = page.evaluate("([x, y]) => Array.from(document.getElementById('canvas').getContext('2d')"
                          ".getImageData(x, y, 1, 1).data)", [x, y])
    plain = cv2.imread(str(shared.coco96_images[1]))[y, x][::-1]  # BGR -> RGB
    assert np.abs(np.array(drawn[:3], int) - plain.astype(int)).max() > 20, (drawn, plain)
    page.locator("#canvas").screenshot(path=str(tmp_path / "seg.png"))


def test_versions_of_a_repository_are_entries_of_their_own(shared, browser, tmp_path):
    """Two versions of one name served at once: each is an entry named with its version, the request names the
    chosen one, and the status line says which version answered (the X-Model-Version header)."""
    repo = tmp_path / "models"
    (repo / "yolov8n").mkdir(parents=True)
    (repo / "yolov8n" / "1").symlink_to(shared.fp32_model, target_is_directory=True)
    (repo / "yolov8n" / "2").symlink_to(shared.int8_model, target_is_directory=True)
    (repo / "yolov8n" / "config.yaml").write_text("version_policy: {all: {}}", encoding="utf-8")
    proc = ServerProcess(["--model-repository", str(repo), "--repository-poll-s", "0"],
                         cache_dir=tmp_path / "yolo-ov-cache").start()
    try:
        with _opened(browser, proc.url) as pg:
            labels = pg.locator("#model option").all_inner_texts()
            assert sorted(labels) == ["yolov8n v1 (detect)", "yolov8n v2 (detect)"], labels
            for version in ("1", "2"):
                index = next(i for i, text in enumerate(labels) if f" v{version} " in text)
                pg.select_option("#model", index=index)
                pg.evaluate("document.body.dataset.state = 'idle'")
                pg.set_input_files("#file", str(shared.coco96_images[int(version)]))  # a new file: a change event
                pg.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=60_000)
                status = pg.locator("#status").inner_text()
                assert status.endswith(f"(yolov8n v{version})"), status
    finally:
        assert proc.stop() == 0, proc.output()
