"""Expand what the user names (files, folders, globs) into a stream of inputs.

A folder is searched recursively for common image types; a glob is expanded
(``**`` recursive); a plain file is taken as is, whatever its suffix, so a
non-image file gets a clear decode error rather than being skipped. A name
that matches nothing yields an :class:`~yolo_ov.errors.InputError` item in
place, so multi-item runs report it and go on.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError
from .images import IMAGE_SUFFIXES

__all__ = ["iter_image_files"]

_GLOB_CHARS = frozenset("*?[")


def iter_image_files(specs: Iterable[str | Path]) -> Iterator[Path | InputError]:
    """Yield image paths for each spec, in a stable (sorted) order, or an error item."""
    for spec in specs:
        text = str(spec)
        if _GLOB_CHARS & set(text) and not Path(text).exists():
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            images = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                yield InputError(f"{text}: the pattern matched no image files", text)
            yield from images
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                yield InputError(f"{text}: the folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})", text)
            yield from images
        elif path.exists():
            yield path
        else:
            yield InputError(f"{text}: no such file or folder", text)
