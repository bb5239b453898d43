"""Multi-object tracking: persistent ids on video and live streams (ByteTrack, BoT-SORT)."""

from __future__ import annotations

from .config import TrackerConfig, load_tracker_config
from .tracker import TrackedObjects, Tracker, id_counter

__all__ = ["TrackedObjects", "Tracker", "TrackerConfig", "id_counter", "load_tracker_config"]
