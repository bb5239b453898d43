"""The throughput engine: an async, ordered, bounded pipeline (see :class:`Pipeline`).

Modules: ``config`` (settings), ``lanes`` (compiled shapes, extra ones
compiled in the background), ``run`` (one pass of a source: threads,
ordering, shutdown), ``submit`` (many independent callers, futures,
batching, the bounded queue), ``core`` (the ``Pipeline`` that owns them).
"""

from __future__ import annotations

from .config import DEFAULT_WORKERS, PipelineConfig, Specialize
from .core import Pipeline
from .run import RunStats, StreamRun
from .submit import SubmitStats

__all__ = ["DEFAULT_WORKERS", "Pipeline", "PipelineConfig", "RunStats", "Specialize", "StreamRun", "SubmitStats"]
