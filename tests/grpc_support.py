"""The gRPC transport beside REST for the tests: one app, served by uvicorn and by ``GrpcServer`` on free ports.

:class:`Served` opens an app (on the fake engine unless told otherwise), runs
it under a real uvicorn on a free 127.0.0.1 port (:class:`LiveServer`) and
the gRPC transport on the same state on another free port, and stops both
(gRPC first, bounded) on exit.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from tests.fakes import expected_for, uniform_image
from tests.serve_support import LiveServer


class Served:
    """``with Served(app) as s``: ``s.url`` (REST), ``s.grpc`` (``host:port``), ``s.state``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state.yolo
        self.rest = LiveServer(app)
        self.url = self.rest.url
        self.grpc = ""
        self.server: Any = None

    def __enter__(self) -> Served:
        from yolo_ov.serve.grpc_server import GrpcServer

        self.rest.__enter__()
        try:
            self.server = GrpcServer(self.state, "127.0.0.1", 0).start()
        except BaseException:
            self.rest.__exit__(None, None, None)
            raise
        self.grpc = self.server.address
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.server.stop(5.0)
        finally:
            self.rest.__exit__(*exc)


def png(value: int, hw: tuple[int, int] = (64, 64)) -> bytes:
    return cv2.imencode(".png", uniform_image(value, hw))[1].tobytes()


def bytes_input(module: Any, images: list[bytes]) -> Any:
    """A ``BYTES`` input of encoded images, for ``tritonclient.grpc`` or ``tritonclient.http`` (``module``)."""
    inp = module.InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    return inp


def frames_input(module: Any, frames: list[np.ndarray]) -> Any:
    """A ``UINT8 [N, H, W, 3]`` input of BGR frames."""
    batch = np.stack(frames)
    inp = module.InferInput("image", list(batch.shape), "UINT8")
    inp.set_data_from_numpy(batch)
    return inp


def assert_fake_outputs(result: Any, values: list[int]) -> None:
    """Outputs of uniform images ``values`` on the fake engine: one detection each, as the fake reports it."""
    assert result.as_numpy("num_detections").tolist() == [1] * len(values)
    for i, v in enumerate(values):
        cls, score = expected_for(v)
        side = 8.0 + v / 8.0
        assert result.as_numpy("classes")[i].tolist() == [cls]
        np.testing.assert_allclose(result.as_numpy("scores")[i], [score], atol=1e-5)
        np.testing.assert_allclose(result.as_numpy("boxes")[i, 0], [4.0, 4.0, 4.0 + side, 4.0 + side], atol=0.01)
