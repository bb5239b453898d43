"""The cameras page of ``yolo-ov watch --port`` in a real headless Chromium (Debian's, driven by Playwright).

No model: a :class:`CameraBoard` is fed synthetic frames, records, health
changes and events from a thread (as the watch service feeds it) and served
by ``serve_board`` on a free 127.0.0.1 port. The page must show every camera
with its state, load its live MJPEG image (or snapshots), and follow a health
change (``reconnecting`` -> ``live``) without a reload.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from yolo_ov.io.health import HealthChange
from yolo_ov.results import Detections
from yolo_ov.watch.board import CameraBoard
from yolo_ov.watch.observer import CameraInfo

pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi")
from yolo_ov.watch.web import serve_board

pytestmark = pytest.mark.timeout(120)

CAMERAS = [
    CameraInfo("road", "rtsp://127.0.0.1:8554/road", lines={"northbound": [(0, 150), (320, 150)]}),
    CameraInfo("hall", "rtsp://127.0.0.1:8555/hall", zones={"entrance": [(10, 10), (150, 10), (150, 200), (10, 200)]}),
    CameraInfo("yard", "http://127.0.0.1:8080/yard.mjpg"),
]


class Feeder:
    """Feeds the board ~15 frames per second per live camera from a thread, as the service's result thread does."""

    def __init__(self, board: CameraBoard, live: tuple[str, ...]) -> None:
        self.board = board
        self.live = live
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            for k, name in enumerate(self.live):  # a tuple, replaced whole by the test
                x = 20 + (i * 3) % 200
                record = Detections([[x, 60, x + 60, 200]], [0.88], [2], names={2: "car"}, image_shape=(240, 320),
                                    data={"track_id": np.array([k + 1])})
                image = np.full((240, 320, 3), 60 + 40 * k, np.uint8)
                self.board.on_frame(name, record, image, latency_s=0.05)
            self.stop.wait(1 / 15)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def health(board: CameraBoard, camera: str, state: str, previous: str | None, reason: str, reconnects: int = 0) -> None:
    board.on_health(camera, HealthChange(camera, None, state, previous, time.time(), reason, reconnects))


@pytest.fixture
def running():
    board = CameraBoard()
    board.on_start(CAMERAS)
    health(board, "road", "live", "connecting", "frames arriving")
    health(board, "hall", "live", "connecting", "frames arriving")
    health(board, "yard", "reconnecting", "stalled", "reconnect attempt 1 failed: connection refused")
    board.on_event({"id": "e1", "camera": "hall", "time": time.time(), "type": "zone_enter", "zone": "entrance",
                    "track_id": 2, "class_name": "car", "box": [10, 60, 70, 200]})
    board.on_outputs({"jsonl": {"queued": 0, "sent": 1, "dropped": 0, "retries": 0}})
    feeder = Feeder(board, ("road", "hall"))
    with serve_board(board) as page, feeder:
        yield board, page, feeder


@pytest.fixture
def open_page(browser):
    contexts, errors = [], []

    def opener(url: str):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        pg = context.new_page()
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(url)
        pg.wait_for_function("document.querySelectorAll('#grid .camera').length === 3", timeout=15_000)
        return pg

    yield opener
    for context in contexts:
        context.close()
    assert not errors, errors  # no JavaScript error on the page


def card(name: str) -> str:
    return f"#grid .camera[data-camera={name}]"


def test_the_page_shows_every_camera_its_state_and_live_image(running, open_page, tmp_path):
    board, page, feeder = running
    pg = open_page(page.url + "/")
    names = pg.locator("#grid .camera .name").all_inner_texts()
    assert names == ["road", "hall", "yard"]
    assert pg.locator(card("road") + " .state").inner_text() == "live"
    assert pg.locator(card("yard") + " .state").inner_text() == "reconnecting"
    assert "connection refused" in pg.locator(card("yard") + " .reason").inner_text()
    # The state colours differ (live is green, reconnecting amber).
    colours = pg.evaluate("['road', 'yard'].map(n => getComputedStyle(document.querySelector("
                          "`.camera[data-camera=${n}] .state`)).backgroundColor)")
    assert colours == ["rgb(18, 128, 92)", "rgb(181, 71, 8)"]
    # The MJPEG images actually load, at the frames' size; they are streams, not snapshots.
    for name in ("road", "hall"):
        pg.wait_for_function(f"document.querySelector('{card(name)} img').naturalWidth > 0", timeout=15_000)
        size = pg.evaluate(f"(() => {{ const i = document.querySelector('{card(name)} img'); "
                           "return [i.naturalWidth, i.naturalHeight, i.getAttribute('src')]; })()")
        assert size == [320, 240, f"cameras/{name}/stream.mjpg"]
    assert pg.evaluate(f"document.querySelector('{card('yard')} img').naturalWidth") == 0  # no frame yet
    pg.wait_for_function(f"parseFloat(document.querySelector('{card('road')} .fps').textContent) > 1",
                         timeout=15_000)
    assert pg.locator(card("road") + " .latency").inner_text() == "latency 50 ms"
    assert pg.locator(card("hall") + " .counts li").all_inner_texts() == ["entrance: 1 inside, 1 entered"]
    assert "zone_enter car #2 entrance" in pg.locator(card("hall") + " .events li").first.inner_text()
    assert pg.locator("#outputs tbody tr td").first.inner_text() == "jsonl"

    # A health change fed to the board reaches the page without a reload; the new camera's stream starts.
    health(board, "yard", "live", "reconnecting", "reconnected (1)", reconnects=1)
    feeder.live = (*feeder.live, "yard")
    pg.wait_for_selector(card("yard") + "[data-state=live]", timeout=10_000)
    assert pg.locator(card("yard") + " .state").inner_text() == "live"
    assert "1 reconnect" in pg.locator(card("yard") + " .reason").inner_text()
    pg.wait_for_function(f"document.querySelector('{card('yard')} img').naturalWidth > 0", timeout=15_000)
    pg.wait_for_function("document.getElementById('summary').textContent.startsWith('3 cameras, 3 live')",
                         timeout=10_000)
    shot = tmp_path / "watch_page.png"
    pg.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_snapshot_mode_reloads_the_newest_frame(running, open_page):
    _, page, _ = running
    pg = open_page(page.url + "/cameras?mode=snapshot")
    pg.wait_for_function(f"document.querySelector('{card('road')} img').naturalWidth === 320", timeout=15_000)
    first = pg.evaluate(f"document.querySelector('{card('road')} img').getAttribute('src')")
    assert first.startswith("cameras/road/snapshot.jpg?seq=")
    pg.wait_for_function(f"document.querySelector('{card('road')} img').getAttribute('src') !== '{first}'",
                         timeout=15_000)  # the next poll shows a newer frame
    assert pg.locator(card("road")).get_attribute("data-mode") == "snapshot"


def test_a_camera_whose_frames_stop_still_shows_its_last_frame(browser):
    """A part is shown once its closing boundary arrives: the board sends it with the frame, not with the next one."""
    board = CameraBoard()
    board.on_start([CameraInfo("still", "rtsp://127.0.0.1:8554/still")])
    board.on_frame("still", Detections.empty(), np.full((240, 320, 3), 90, np.uint8), latency_s=0.05)
    health(board, "still", "stalled", "live", "no frame for 5.0 s")
    context = browser.new_context()
    try:
        with serve_board(board) as page:
            pg = context.new_page()
            pg.goto(page.url + "/")
            pg.wait_for_selector(card("still") + "[data-state=stalled]", timeout=15_000)
            pg.wait_for_function(f"document.querySelector('{card('still')} img').naturalWidth === 320",
                                 timeout=15_000)  # no second frame ever comes
    finally:
        context.close()
