"""Terminal output that cannot fail on the characters it prints.

Progress bars (Rich in NNCF and in our CLI, tqdm elsewhere) draw with
characters such as ``━`` and ``•``. Under an ASCII locale with Python's UTF-8
mode off (``LC_ALL=C PYTHONUTF8=0``, seen on CI machines) writing them raises
``UnicodeEncodeError`` and an INT8 export failed on its progress bar. Such
characters are replaced instead (``errors="replace"``): the text is still
readable, nothing stops.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["printable_output"]

_PROBE = "\u2501\u2022"  # ━•: what progress bars draw with


def printable_output() -> Callable[[], None]:
    """Make ``sys.stdout``/``sys.stderr`` replace what their encoding cannot print; returns the undo.

    Streams that can print the probe characters (any UTF-8 terminal or pipe),
    or that cannot be reconfigured (a test's capture object), are left alone.
    """
    undo: list[Callable[[], None]] = []
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        reconfigure = getattr(stream, "reconfigure", None)
        errors = getattr(stream, "errors", None) or "strict"
        if reconfigure is None or errors in ("replace", "backslashreplace", "xmlcharrefreplace", "ignore"):
            continue
        try:
            _PROBE.encode(encoding)
        except (UnicodeEncodeError, LookupError):
            reconfigure(errors="replace")  # an ASCII locale's streams use "surrogateescape", which fails too
            undo.append(lambda s=stream, e=errors: s.reconfigure(errors=e))

    def restore() -> None:
        for step in undo:
            step()

    return restore
