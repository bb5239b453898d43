"""A real ``yolo-ov serve`` process for the server tests, the same server on the fake engine, and helpers.

The server runs as a subprocess on a free loopback port (``--port 0``; the
port is read from the line it prints), bounded in time at start and at stop,
and is always stopped with SIGTERM (then SIGKILL if it ever hangs).

Without a model (the fast tier): :func:`fake_models` makes stand-in model
folders and :func:`fake_detectors` opens each as ``tests.fakes.fake_detector``
in throughput mode with the server's pipeline settings; :class:`LiveServer`
runs an app under a real uvicorn on a free 127.0.0.1 port in a thread;
``python -m tests.serve_support ARGS`` is ``yolo-ov serve`` on the fake engine
(the command's own ``_run``: signals, drain, totals), for :class:`ServerProcess`.
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

    def __init__(self, args: Sequence[str], *, cache_dir: Path, env: dict[str, str] | None = None,
                 command: Sequence[str] = ("-m", "yolo_ov", "serve")) -> None:
        self.args = [sys.executable, *command, "--host", "127.0.0.1", "--port", "0", *args]
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


def metric_value(text: str, metric: str, /, **labels: str) -> float:
    """The sum of the samples of ``metric`` with these labels in a Prometheus text exposition (0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()))


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


# -- the server on the fake engine ---------------------------------------------------------------

#: Run ``ServerProcess(args, command=FAKE_SERVE)`` for ``yolo-ov serve`` on the fake engine.
FAKE_SERVE = ("-m", "tests.serve_support")


def fake_models(root: Path, *names: str) -> tuple[Any, ...]:
    """A :class:`~yolo_ov.serve.ModelSpec` per name, on an empty stand-in folder (the fake needs no file)."""
    from yolo_ov.serve import ModelSpec

    specs = []
    for name in names or ("yolov8n",):
        folder = root / f"{name}_openvino_model"
        folder.mkdir(parents=True, exist_ok=True)
        specs.append(ModelSpec(name=name, path=folder))
    return tuple(specs)


def fake_detectors(*, delay_s: float = 0.0, batch: int = 1, opened: list | None = None):
    """A ``DetectorFactory`` opening every model as the fake end-to-end detector, with the server's settings."""
    from tests.fakes import fake_detector
    from yolo_ov.serve.state import pipeline_config

    def open_detector(spec: Any, config: Any) -> Any:
        det = fake_detector(mode="throughput", delay_s=delay_s, batch=batch, detect=config.detect,
                            pipeline=pipeline_config(config))
        if opened is not None:
            opened.append(det)
        return det

    return open_detector


class LiveServer:
    """An ASGI app under a real uvicorn on a free 127.0.0.1 port, in a thread (``with LiveServer(app) as s``)."""

    def __init__(self, app: Any, **config: Any) -> None:
        import socket

        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        host, port = self.sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **config))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def _main(argv: Sequence[str]) -> None:
    """``yolo-ov serve`` on the fake engine: the command's own start, signal handling, drain and totals."""
    import argparse

    from yolo_ov.cli.serve import _listen, _run
    from yolo_ov.serve import ServeConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--max-body-mb", type=float, default=20.0)
    parser.add_argument("--header-timeout-s", type=float, default=10.0)
    parser.add_argument("--keep-alive-s", type=float, default=5.0)
    parser.add_argument("--max-connections", type=int, default=1000)
    parser.add_argument("--nofile", type=int, default=0, help="lower the open-file limit to this (accept errors)")
    parser.add_argument("--no-uvloop", action="store_true", help="asyncio's own loop, as without uvloop installed")
    parser.add_argument("--grpc-port", type=int, default=None)
    parser.add_argument("--http", default="auto", help="the HTTP parser (serve's --http)")
    args = parser.parse_args(argv)
    if args.no_uvloop:
        sys.modules["uvloop"] = None  # type: ignore[assignment]  # uvicorn's "auto" loop then picks asyncio's
    if args.nofile:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))  # hard too: serve cannot raise it
    settings = ServeConfig(models=fake_models(args.root), host=args.host, port=args.port, max_queue=args.max_queue,
                           timeout_s=args.timeout_s, max_body_mb=args.max_body_mb,
                           header_timeout_s=args.header_timeout_s, keep_alive_s=args.keep_alive_s,
                           max_connections=args.max_connections, http_parser=args.http)
    sock = _listen(settings.host, settings.port)
    try:
        _run(settings, sock, access_log=False, detectors=fake_detectors(delay_s=args.delay_s),
             grpc_port=args.grpc_port)
    finally:
        sock.close()


if __name__ == "__main__":
    _main(sys.argv[1:])
