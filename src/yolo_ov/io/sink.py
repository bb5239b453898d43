"""The contract of an output (:class:`Sink`) and several outputs as one (:class:`Sinks`).

The built-in sinks (JSONL, COCO JSON, annotated images, video) are in
:mod:`yolo_ov.io.sinks`; a new one (MQTT, a webhook) is a class implementing
:class:`Sink`, nothing more. Writes are signal-safe: they run inside
:func:`~yolo_ov.io.signals.deferred`.

Who writes through :class:`Sinks`: ``yolo-ov predict``, ``yolo-ov track`` and
the Ray driver (:func:`yolo_ov.ray.predict_dataset`). The server answers over
HTTP and writes no output today; one that should also publish its answers
(issue 22) would hold a :class:`Sinks` beside its models and write each
result after the response, from one thread (writes are not made for
concurrent callers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from ..results import Classification, Detections, Failure
from .signals import deferred

__all__ = ["Record", "Sink", "SinkBase", "Sinks"]

_S = TypeVar("_S", bound="SinkBase")

#: What a run yields per input: its result, or the failure that stands for it.
Record = Detections | Classification | Failure


@runtime_checkable
class Sink(Protocol):
    """Where records go: a file, a folder, a broker, a web hook. The contract every output implements.

    A new output (an MQTT publisher, a webhook, a database) is a plain class
    with these members; nothing else in the package changes. Hand it to
    :class:`Sinks` beside the others and ``predict``, ``track`` and the Ray
    driver write to it.

    Lifetime: ``open()`` -> any number of ``write(...)`` -> ``close()``; as a
    context manager ``__enter__`` opens and ``__exit__`` closes.

    * ``open()`` acquires what the sink writes to (creates the file,
      connects to the broker) and raises :class:`~yolo_ov.errors.OutputError`
      naming the destination and the reason when it cannot, *before* any
      inference starts. It is idempotent: the built-in file sinks open in
      their constructor already, so a bad path fails as early as possible,
      and their ``open()`` does nothing more.
    * ``write(record, image=None, *, extra=None)`` takes one record:
      :class:`~yolo_ov.results.Detections`, :class:`~yolo_ov.results.Classification`
      or :class:`~yolo_ov.results.Failure` (a failed input, which most sinks
      record or skip). ``image`` is the decoded BGR frame the record belongs
      to, given only when some sink asked for images (:attr:`needs_images`);
      a sink that draws skips a record without one. ``extra`` holds fields
      that belong beside the record in a serialised form (the tracker's line
      and zone counts: ``{"counts": {...}}``); a sink that serialises records
      adds them, others ignore them. Skipping is the sink's choice; raising is
      for a destination that fails (:class:`~yolo_ov.errors.OutputError`: the
      run stops, exit code 2).
    * A write is never torn by a signal: run its body inside
      :func:`~yolo_ov.io.signals.deferred` (cheap, and nestable), so a
      SIGINT/SIGTERM arriving during it takes effect once the record is
      written. :class:`Sinks` also holds one record's writes to *every* sink
      in one such section: a record is in all outputs or in none.
    * ``undo()`` (optional) takes back the last ``write`` (truncates the
      file to the previous record, removes the image just saved). When a
      sink fails on a record (a full disk), :class:`Sinks` undoes that record
      in the sinks that already took it, so a JSONL line never stands for an
      annotated image that could not be written. A sink that cannot take a
      write back (a sent message, a video frame) has no ``undo``; ``Sinks``
      writes to such sinks *first*, so when one of them fails, no other
      output has the record yet.
      A sink that sends over a network should bound the time a write can
      block (a queue with a sender thread, a time-out): a signal waits for it.
    * ``close()`` flushes and releases; it is idempotent and runs on errors,
      Ctrl-C and SIGTERM too (``Sinks`` closes every sink even when one fails).
      A write after ``close()`` raises :class:`~yolo_ov.errors.ConfigError`.
    * ``describe()`` is what was written, for the command's summary line
      (``"JSONL: out.jsonl (12 lines)"``), or ``""``.
    * ``needs_images``: whether :meth:`write` wants the decoded frame (a
      sink that draws); when no sink does, runs never keep frames for it.

    Writes come from one thread, in the order the run yields records (per
    stream: frame order). A sink that must not slow inference down (a slow
    network) keeps its own queue and thread.
    """

    needs_images: bool

    def open(self) -> None: ...

    def write(self, record: Record, image: np.ndarray | None = None, *,
              extra: Mapping[str, Any] | None = None) -> Any: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class SinkBase:
    """``open``, ``describe``, ``needs_images`` and the context manager, shared by the built-in sinks.

    A new sink may subclass it (then it writes ``write`` and ``close``) or
    implement :class:`Sink` on its own.
    """

    needs_images: ClassVar[bool] = False

    def open(self) -> None:
        """The file is opened by the constructor (a bad path fails there); nothing more to do."""

    def describe(self) -> str:
        return ""

    def close(self) -> None:  # pragma: no cover - every sink overrides it
        """Nothing to release."""

    def __enter__(self: _S) -> _S:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sinks:
    """Several outputs as one: each record goes to every sink or to none, in one signal-safe section.

    ``None`` entries are dropped, so optional outputs can be listed as they
    are (``Sinks([JsonlSink(p) if p else None, ...])``). Opening opens every
    sink (closing the ones already open if one cannot be opened); closing
    closes every sink even when one fails, then raises the first failure.

    Example:
        >>> from yolo_ov.results import Failure
        >>> import tempfile, pathlib
        >>> from yolo_ov.io.sinks import JsonlSink
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
        >>> with Sinks([JsonlSink(out), None]) as sinks:
        ...     sinks.write(Failure("a.jpg", "broken"))
        >>> out.read_text(encoding="utf-8").splitlines()
        ['{"source":"a.jpg","error":"broken"}']
    """

    def __init__(self, sinks: Iterable[Sink | None] = ()) -> None:
        self.sinks: list[Sink] = [s for s in sinks if s is not None]

    @classmethod
    def opening(cls, *factories: Any) -> Sinks:
        """Sinks built by ``factories`` (callables returning a sink or ``None``), in order.

        Built-in sinks open their files as they are constructed: when one
        fails, the ones already built are closed before the error goes on.
        """
        built = cls()
        try:
            for make in factories:
                sink = make()
                if sink is not None:
                    built.sinks.append(sink)
        except BaseException:
            built.close()
            raise
        return built

    @property
    def needs_images(self) -> bool:
        """Whether any sink draws: only then must a run keep (and fully decode) each frame."""
        return any(getattr(s, "needs_images", False) for s in self.sinks)

    def open(self) -> None:
        opened: list[Sink] = []
        try:
            for sink in self.sinks:
                sink.open()
                opened.append(sink)
        except BaseException:
            _close_all(opened)
            raise

    def write(self, record: Record, image: np.ndarray | None = None, *,
              extra: Mapping[str, Any] | None = None) -> None:
        """One record to every sink, or to none; Ctrl-C/SIGTERM wait until it is in all of them.

        Sinks that cannot take a write back go first; when a sink fails, the
        sinks that already took the record undo it (``undo()``), then the
        failure goes on (an :class:`~yolo_ov.errors.OutputError` stops the run
        with one line, exit code 2). Why: "every output or none" must hold on
        a full disk too, where the annotated copy fails after the JSONL line
        was written.
        """
        done: list[Sink] = []
        with deferred():
            try:
                for sink in self._write_order():
                    sink.write(record, image, extra=extra)
                    done.append(sink)
            except BaseException:
                _undo_all(reversed(done))
                raise

    def _write_order(self) -> list[Sink]:
        """The sinks without ``undo`` first (their failure leaves nothing to take back), then the others."""
        return sorted(self.sinks, key=lambda s: callable(getattr(s, "undo", None)))  # stable: given order kept

    def describe(self) -> str:
        """What was written, as ``"; JSONL: ... ; video: ..."`` (empty without sinks)."""
        return "".join(f"; {d}" for d in (s.describe() for s in self.sinks) if d)

    def close(self) -> None:
        """Close every sink, even when one fails; the first failure is raised."""
        _close_all(self.sinks)

    def __iter__(self) -> Iterator[Sink]:
        return iter(self.sinks)

    def __len__(self) -> int:
        return len(self.sinks)

    def __enter__(self) -> Sinks:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _undo_all(sinks: Iterable[Sink]) -> None:
    """Take the record back from ``sinks``; an undo that fails too cannot hide the failure that caused it."""
    for sink in sinks:
        undo = getattr(sink, "undo", None)
        if callable(undo):
            with contextlib.suppress(Exception):  # the write's own error is the one to report
                undo()


def _close_all(sinks: Iterable[Sink]) -> None:
    first: BaseException | None = None
    for sink in sinks:
        try:
            sink.close()
        except BaseException as exc:  # noqa: BLE001 - raised once the other sinks are closed
            first = first or exc
    if first is not None:
        raise first
