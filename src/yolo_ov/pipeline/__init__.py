"""The throughput engine: an async, ordered, bounded pipeline (see :class:`Pipeline`).

Modules: ``config`` (settings), ``lanes`` (compiled shapes and their
``AsyncInferQueue``), ``run`` (one pass of a source: threads, ordering,
shutdown), ``core`` (the ``Pipeline`` that owns the lanes).
"""

from __future__ import annotations

from .config import DEFAULT_WORKERS, PipelineConfig, Specialize
from .core import Pipeline
from .run import RunStats, StreamRun

__all__ = ["DEFAULT_WORKERS", "Pipeline", "PipelineConfig", "RunStats", "Specialize", "StreamRun"]
