"""`ruff check` is part of the suite: the code base stays clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.assets import REPO


def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    proc = subprocess.run(
        [ruff, "check", "src", "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True,
                encoding="utf-8", errors="replace", check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_package_never_names_shared_assets():
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "src").rglob("*.py")
        if "../shared" in p.read_text(encoding="utf-8") or "/shared/models" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []
