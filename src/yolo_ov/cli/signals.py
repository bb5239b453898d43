"""Signals for the commands: re-exported from :mod:`yolo_ov.io.signals`.

The handlers live in :mod:`yolo_ov.io` because the sinks' signal-safe writes
(:func:`~yolo_ov.io.signals.deferred`) share their state, and ``io`` must not
import ``cli``; commands keep importing them from here.
"""

from __future__ import annotations

from ..io.signals import Terminated, deferred, terminate_as_interrupt

__all__ = ["Terminated", "deferred", "terminate_as_interrupt"]
