"""The throughput engine: an async, ordered, bounded pipeline (see :class:`Pipeline`).

Modules: ``config`` (settings), ``steps`` (the one request cycle: prepare,
pack, start, finish, and the fan-out of one input into several frames),
``slots`` (the request slots, the hang check, the broken state), ``lanes``
(compiled shapes, extra ones compiled in the background), ``run`` (one pass
of a source: threads, ordering, shutdown), ``submit`` (many independent
callers, futures, batching, the bounded queue), ``core`` (the ``Pipeline``
that owns them; its children get the slots, lanes and head, never it).
"""

from __future__ import annotations

from .config import DEFAULT_WORKERS, PipelineConfig, Specialize
from .core import Pipeline
from .run import RunStats, StreamRun
from .slots import SlotKeeper
from .steps import FanOut, Part
from .submit import SubmitStats

__all__ = ["DEFAULT_WORKERS", "FanOut", "Part", "Pipeline", "PipelineConfig", "RunStats", "SlotKeeper", "Specialize",
           "StreamRun", "SubmitStats"]
