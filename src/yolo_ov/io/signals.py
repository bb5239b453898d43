"""SIGTERM handled like Ctrl-C: unwind, flush, clean up, then exit 143.

``docker stop``, systemd and Kubernetes stop a process with SIGTERM. Python's
default action for it kills the process on the spot: no ``finally`` block
runs, so buffered output is lost, an mp4 never gets its index, and a
temporary export folder stays on disk. Inside :func:`terminate_as_interrupt`
SIGTERM instead raises :class:`Terminated` in the main thread. It subclasses
:class:`KeyboardInterrupt`, so every path that already survives Ctrl-C (the
pipeline's cancel-and-close, the sinks' ``close``, the export's atomic
folder) does the same for SIGTERM, and only the exit code differs:
``128 + 15 = 143``, the shell convention for "ended by SIGTERM".

A repeated SIGTERM while that clean-up runs is ignored, so it cannot cut the
clean-up short; SIGKILL (what ``docker stop`` sends after its grace period)
still ends the process at once. SIGINT keeps Python's behaviour (each
Ctrl-C raises :class:`KeyboardInterrupt`).

:func:`deferred` marks a short critical section, such as writing one record
to every output: a SIGINT or SIGTERM arriving inside it takes effect when it
ends, so a record is in all outputs or in none. Every sink's ``write`` and
:class:`~yolo_ov.io.sinks.Sinks` run inside it (the :class:`~yolo_ov.io.sinks.Sink`
contract), which is why this module lives in :mod:`yolo_ov.io` (the commands
import it from here too).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Terminated", "deferred", "terminate_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM.

    A :class:`KeyboardInterrupt` so that code which cleans up after Ctrl-C
    cleans up after SIGTERM too; ``exit_code`` is ``128 + signum``.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_depth = 0  # nesting of deferred() blocks (main thread only: that is where handlers run)
_pending: list[int] = []


def _interrupt(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    signal.signal(signum, signal.SIG_IGN)  # a repeat must not interrupt the clean-up this starts
    raise Terminated(signum)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _depth:
        _pending.append(signum)  # raised when the critical section ends
        return
    _interrupt(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A critical section: SIGINT/SIGTERM (as handled by :func:`terminate_as_interrupt`) wait for its end.

    Keep it short (one record's writes); outside :func:`terminate_as_interrupt`
    it changes nothing, and in any thread but the main one (where the
    handlers run, and the only one that counts the nesting) it is a no-op.
    """
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            signum = _pending[0]
            _pending.clear()
            _interrupt(signum)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within this block, SIGTERM raises :class:`Terminated` (see the module docstring).

    SIGINT still raises :class:`KeyboardInterrupt` (unless it was ignored, as
    for a background job); both wait for the end of a :func:`deferred`
    block. The previous handlers are restored on exit. Outside the main
    thread (where Python cannot install signal handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_signal)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _pending.clear()
