"""The Typer application and the error boundary shared by every command.

The CLI is a thin layer: each command parses options, builds config objects
and calls library functions. :func:`guarded` turns every
:class:`~yolo_ov.errors.YoloOvError` into one line on stderr and an exit code:

====  =====================================================================
code  meaning
====  =====================================================================
0     success
1     the run finished but some inputs failed (each is reported)
2     invalid usage or configuration (bad option, missing file, bad dataset),
      or an output that cannot be written (permission, full disk, a folder)
3     the model could not be loaded or compiled for the device
4     inference failed or timed out
5     an optional extra is missing (the message says which to install)
130   interrupted by Ctrl-C (SIGINT)
143   terminated by SIGTERM (``docker stop``, systemd, Kubernetes)
====  =====================================================================

SIGINT and SIGTERM stop a command the same way (:mod:`yolo_ov.io.signals`):
reading stops, requests in flight are cancelled, every output file is
flushed and closed (each JSONL line is a complete record, a video gets its
index and plays), temporary folders are removed, then the process exits
with 130 or 143.
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
    OutputError,
    YoloOvError,
)
from ..io.signals import Terminated, terminate_as_interrupt

app = typer.Typer(
    name="yolo-ov",
    help="Run Ultralytics YOLO detectors on OpenVINO, tuned for latency or throughput.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help and usage errors: Typer's Rich panels show every flag as taking
    # a "<bool>" value (--agnostic-nms, even --help) and draw usage errors as a
    # multi-line box; the plain form lists flags bare and errors on one line.
    rich_markup_mode=None,
    add_completion=False,
)

#: Diagnostics and progress go to stderr so stdout stays clean for data.
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

def _print_version(value: bool) -> None:
    """``yolo-ov --version``: this package's version and the OpenVINO runtime's, then exit 0."""
    if not value:
        return
    import openvino as ov

    from .._version import __version__

    out.print(f"yolo-ov {__version__}, OpenVINO {ov.get_version()}", markup=False, soft_wrap=True)
    raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="print the yolo-ov and OpenVINO versions and exit"),
) -> None:
    """Run Ultralytics YOLO detectors on OpenVINO, tuned for latency or throughput."""


EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_MODEL, EXIT_INFERENCE, EXIT_EXTRA, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
EXIT_TERMINATED = 143

_CODES: list[tuple[type[BaseException], int]] = [
    (MissingExtraError, EXIT_EXTRA),
    (ModelLoadError, EXIT_MODEL),
    (DeviceError, EXIT_MODEL),
    (ExportError, EXIT_MODEL),
    (InferenceError, EXIT_INFERENCE),
    (ConfigError, EXIT_USAGE),
    (OutputError, EXIT_USAGE),
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
    """Run a command body, mapping yolo-ov errors to one line and an exit code.

    SIGTERM is turned into :class:`~yolo_ov.io.signals.Terminated` for the
    duration, so it unwinds and cleans up like Ctrl-C and exits 143.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with terminate_as_interrupt():
                return fn(*args, **kwargs)
        except YoloOvError as exc:
            text = as_typed(str(exc)) if isinstance(exc, ConfigError) else str(exc)
            raise fail(_escape(text), exit_code_for(exc)) from None
        except Terminated as exc:
            err.print(f"terminated ({signal_name(exc.signum)})", soft_wrap=True, markup=False)
            sys.stderr.flush()
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", soft_wrap=True)
            sys.stderr.flush()
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


#: The flag that sets each configuration field a :class:`~yolo_ov.errors.ConfigError` may name first.
#: The config classes are the library's and name their fields (``max_det``); on the command line the
#: user typed a flag (``--max-det``), and the one line must name what they typed. Values read from a
#: ``--config`` file are reported with the file's path first, so they keep their field names.
FLAGS: dict[str, str] = {
    "num_requests": "--requests",
    "num_streams": "--streams",
    "max_det": "--max-det",
    "max_queue": "--max-queue",
    "max_wait_ms": "--max-wait-ms",
    "workers": "--workers",
    "batch": "--batch",
    "conf": "--conf",
    "iou": "--iou",
    "imgsz": "--imgsz",
    "device": "--device",
    "mode": "--mode",
}


def as_typed(message: str) -> str:
    """``message`` with the config field it starts with named as the flag the user typed.

    >>> as_typed("num_requests must be a positive integer, got 0")
    '--requests must be a positive integer, got 0'
    >>> as_typed("cfg.json: num_requests must be a positive integer, got 0")
    'cfg.json: num_requests must be a positive integer, got 0'
    """
    field, sep, rest = message.partition(" ")
    flag = FLAGS.get(field)
    return f"{flag} {rest}" if flag and sep else message


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def esc(text: str) -> str:
    """``text`` safe to print with Rich markup on (a path or an error holding ``[...]``)."""
    return _escape(text)
