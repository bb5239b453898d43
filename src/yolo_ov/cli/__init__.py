"""``yolo-ov`` command line: one module per command, all thin."""

from __future__ import annotations

from . import (  # noqa: F401 - importing registers the commands
    bench,
    bench_serve,
    compare,
    export,
    info,
    predict,
    serve,
    track,
    tune,
    val,
    watch,
)
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point (``--ray`` may be given without a value: see ``_ray.optional_value_args``)."""
    import sys

    from .._console import printable_output
    from ._ray import optional_value_args

    printable_output()  # for the whole command: progress bars must not fail in an ASCII locale
    app(args=optional_value_args(sys.argv[1:]))
