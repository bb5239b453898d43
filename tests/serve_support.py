"""A real ``yolo-ov serve`` process for the server tests, and record comparison helpers.

The server runs as a subprocess on a free loopback port (``--port 0``; the
port is read from the line it prints), bounded in time at start and at stop,
and is always stopped with SIGTERM (then SIGKILL if it ever hangs).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.matching import box_iou

START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
_URL = re.compile(r"serving on (http://\S+?) ")


class ServerProcess:
    """``yolo-ov serve ARGS...`` on 127.0.0.1, port chosen by the OS."""

    def __init__(self, args: Sequence[str], *, cache_dir: Path, env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, "-m", "yolo_ov", "serve", "--host", "127.0.0.1", "--port", "0", *args]
        self.env = {**os.environ, "YOLO_OV_CACHE_DIR": str(cache_dir), **(env or {})}
        self.env.pop("YOLO_OV_MODEL", None)
        self.lines: list[str] = []
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True,
                                             encoding="utf-8", errors="replace", env=self.env)
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(START_TIMEOUT_S) or not self.url:
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = _URL.search(line)
            if found:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()  # exited

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int:
        """SIGTERM, wait for the drain, return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        time.sleep(0.05)
        return "".join(self.lines)


def record_arrays(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xyxy, confidence, class_id)`` of a JSONL record."""
    dets = record["detections"]
    return (np.array([d["box"] for d in dets], np.float64).reshape(-1, 4),
            np.array([d["confidence"] for d in dets], np.float64),
            np.array([d["class_id"] for d in dets], np.int64))


def assert_same_detections(
    got: tuple[np.ndarray, np.ndarray, np.ndarray],
    want: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    where: str,
    min_conf: float = 0.3,
    min_iou: float = 0.95,
    conf_tol: float = 0.02,
) -> None:
    """Every confident detection of each side has a same-class partner on the other.

    Matched by class and IoU (never by count or order), so a bf16 kernel that
    differs between CPUs cannot fail it; detections under ``min_conf`` near
    the threshold may come and go. The tolerances were measured: on an AMX
    Xeon the server and the in-process Detector agree exactly.
    """
    for a, b, direction in ((got, want, "server -> in-process"), (want, got, "in-process -> server")):
        keep = a[1] >= min_conf
        ab, ac, ak = a[0][keep], a[1][keep], a[2][keep]
        if not len(ab):
            continue
        assert len(b[0]), f"{where}: {len(ab)} detections have no counterpart at all ({direction})"
        iou = box_iou(ab, b[0])
        ok = (iou >= min_iou) & (ak[:, None] == b[2][None, :]) & (np.abs(ac[:, None] - b[1][None, :]) <= conf_tol)
        missing = np.flatnonzero(~ok.any(axis=1))
        unmatched = [(int(ak[i]), round(float(ac[i]), 3), ab[i].round(1).tolist()) for i in missing]
        assert not len(missing), f"{where} ({direction}): unmatched (class, conf, box) {unmatched}"
