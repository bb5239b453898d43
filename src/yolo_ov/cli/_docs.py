"""The Typer app as a Click command, for the generated CLI reference (``docs/cli.md``, mkdocs-click).

Typer builds a Click command underneath; the documentation reads that one, so
the reference always shows the options the code defines, never a hand-copied list.
"""

from __future__ import annotations

import typer

from . import app

#: ``yolo-ov`` as a Click group (what ``mkdocs-click`` documents).
cli = typer.main.get_command(app)
