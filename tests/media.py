"""Small media for the fast tier: MJPG clips written with ``cv2.VideoWriter`` and an HTTP Motion-JPEG
camera on loopback, so sources, captures and the commands are tested without the shared assets."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def write_clip(path: Path, frames: Sequence[np.ndarray], fps: float = 25.0, fourcc: str = "MJPG") -> Path:
    """``frames`` as a video file (MJPG ``.avi`` by default); the frames must share one size."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, frames[0].shape[1::-1])
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc} to {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def grey_frames(values: Sequence[int], hw: tuple[int, int] = (64, 64)) -> list[np.ndarray]:
    """One uniform BGR frame per value (what ``tests.fakes.expected_for`` predicts after a JPEG round trip)."""
    return [np.full((*hw, 3), v, np.uint8) for v in values]


class MjpegCamera:
    """An HTTP camera on loopback serving ``frames`` as multipart Motion-JPEG at ``fps`` (then it hangs up).

    ``with MjpegCamera(frames) as cam: open_capture(cam.url)``. With ``freeze_s`` the first client's
    connection stays open and silent for that long after its frames (a frozen camera, for the stall
    watchdog) before it hangs up; later clients are served as usual.
    """

    def __init__(self, frames: Sequence[np.ndarray], fps: float = 50.0, freeze_s: float = 0.0) -> None:
        jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames]
        self.requests = 0
        self.frozen = threading.Event()  # set: a frozen connection hangs up at once
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                start = time.perf_counter()
                try:
                    for k, data in enumerate(jpegs):
                        delay = start + k / fps - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                        self.wfile.write(head.encode() + data + b"\r\n")
                    if freeze_s and camera.requests == 1:
                        self.wfile.flush()
                        camera.frozen.wait(freeze_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cam.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MjpegCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.frozen.set()
        self.server.shutdown()
        self.server.server_close()
