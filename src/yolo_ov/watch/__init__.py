"""The multi-camera service: ``yolo-ov watch cameras.yaml`` (issue 22).

Cameras from one hand-written config file share one compiled model and the
throughput engine; each camera's tracks become events (zone enter/exit, line
crossings, appear/disappear, camera health) that go out through sinks (JSONL,
MQTT, webhooks); a cameras page and Prometheus metrics follow the cameras
through :class:`~yolo_ov.watch.observer.CameraObserver`.
"""

from .board import BoardConfig, CameraBoard
from .config import CameraConfig, WatchConfig, load_watch_config
from .observer import CameraInfo, CameraObserver
from .service import CameraStats, WatchService

# The cameras page (serve_board, BoardServer) needs the serve extra: import it from yolo_ov.watch.web.
__all__ = ["BoardConfig", "CameraBoard", "CameraConfig", "CameraInfo", "CameraObserver", "CameraStats", "WatchConfig",
           "WatchService", "load_watch_config"]
