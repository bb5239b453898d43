"""The contract between the watch service and whoever follows its cameras.

The service (:mod:`yolo_ov.watch.service`) runs the cameras; a cameras page, a
metrics exporter or a test follows them by implementing
:class:`CameraObserver` and being handed to the service. Keeping this a
small protocol means the page and the metrics never reach into the service's
threads, and the service never knows what is drawn or exported.

Every call comes from the service's result thread (``on_health`` from a
camera's reader thread): an observer must be quick and must not block (it
keeps the newest frame and counts; encoding a JPEG for a viewer happens on
the viewer's request, not here). An observer that raises is logged and kept.

Events (``on_event``) are JSON-ready dicts with the schema of the issue and
the docs' "cameras and events" page: ``id`` (unique), ``camera``, ``time``
(capture time, epoch seconds), ``type`` (``zone_enter``, ``zone_exit``,
``line_cross``, ``appear``, ``disappear`` or ``camera``); object events add
``track_id``, ``class_name``, ``box`` ([x1, y1, x2, y2] pixels) and ``zone`` /
``line`` / ``direction`` / ``dwell_s`` where they apply; ``camera`` events add
``state`` and ``reason``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..io.health import HealthChange
    from ..results import Detections

__all__ = ["CameraInfo", "CameraObserver"]

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """One camera as configured: what a page needs to label and draw it.

    Attributes:
        name: the camera's key in the config file (``road``).
        url: its source (RTSP/HTTP URL, file, device index as text).
        zones: named polygons in frame pixels.
        lines: named two-point lines in frame pixels.
    """

    name: str
    url: str
    zones: Mapping[str, Sequence[Point]] = field(default_factory=dict)
    lines: Mapping[str, Sequence[Point]] = field(default_factory=dict)


@runtime_checkable
class CameraObserver(Protocol):
    """Follows the cameras of a watch run. See the module docstring for threading rules."""

    def on_start(self, cameras: Sequence[CameraInfo]) -> None:
        """The run starts with these cameras (called once, before any frame)."""

    def on_frame(self, camera: str, record: Detections, image: np.ndarray | None, *, latency_s: float) -> None:
        """One inferred (and tracked) frame of ``camera``; ``image`` is its BGR frame when kept.

        ``latency_s`` is the newest-frame latency: from capture to result.
        """

    def on_dropped(self, camera: str, frames: int) -> None:
        """``frames`` frames of ``camera`` were read but not inferred (the newest-frame policy)."""

    def on_health(self, camera: str, change: HealthChange) -> None:
        """``camera`` changed state (``connecting``, ``live``, ``stalled``, ``reconnecting``, ``failed``)."""

    def on_event(self, event: Mapping[str, Any]) -> None:
        """One event, as published to the sinks."""

    def on_outputs(self, stats: Mapping[str, Mapping[str, int]]) -> None:
        """Each output's counters by output name (``queued``, ``sent``, ``dropped``, ``retries``, ``connected``)."""

    def on_stop(self) -> None:
        """The run ended (drained); no more calls follow."""
