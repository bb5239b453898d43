"""The Typer application and the error boundary shared by every command.

The CLI is a thin layer: each command parses options, builds config objects
and calls library functions. :func:`guarded` turns every
:class:`~yolo_ov.errors.YoloOvError` into one line on stderr and an exit code:

====  =====================================================================
code  meaning
====  =====================================================================
0     success
1     the run finished but some inputs failed (each is reported)
2     invalid usage or configuration (bad option, missing file, bad dataset)
3     the model could not be loaded or compiled for the device
4     inference failed or timed out
5     an optional extra is missing (the message says which to install)
130   interrupted (Ctrl-C)
====  =====================================================================
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from ..errors import (
    ConfigError,
    DatasetError,
    DeviceError,
    ExportError,
    InferenceError,
    InputError,
    MissingExtraError,
    ModelLoadError,
    YoloOvError,
)

app = typer.Typer(
    name="yolo-ov",
    help="Run Ultralytics YOLO detectors on OpenVINO, tuned for latency or throughput.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Diagnostics and progress go to stderr so stdout stays clean for data.
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_MODEL, EXIT_INFERENCE, EXIT_EXTRA, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

_CODES: list[tuple[type[BaseException], int]] = [
    (MissingExtraError, EXIT_EXTRA),
    (ModelLoadError, EXIT_MODEL),
    (DeviceError, EXIT_MODEL),
    (ExportError, EXIT_MODEL),
    (InferenceError, EXIT_INFERENCE),
    (ConfigError, EXIT_USAGE),
    (DatasetError, EXIT_USAGE),
    (InputError, EXIT_USAGE),
    (YoloOvError, EXIT_USAGE),
]

F = TypeVar("F", bound=Callable[..., Any])


def exit_code_for(exc: BaseException) -> int:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return 1


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def guarded(fn: F) -> F:
    """Run a command body, mapping yolo-ov errors to one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except YoloOvError as exc:
            raise fail(_escape(str(exc)), exit_code_for(exc)) from None
        except KeyboardInterrupt:
            err.print("interrupted", soft_wrap=True)
            sys.stderr.flush()
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
