"""Task heads: one per Ultralytics task and output layout (see :class:`Head`).

Importing this package registers every head; :func:`select_head` picks the
one for a model. A new task is one module here that defines a
:class:`Head` subclass decorated with :func:`register_head`, imported below.
"""

from __future__ import annotations

from . import classify, detect, obb, pose, segment  # noqa: F401 - importing registers each task's heads
from .base import HEADS, Head, register_head, select_head, supported_tasks

__all__ = ["HEADS", "Head", "register_head", "select_head", "supported_tasks"]
