"""The documentation is true: the site builds strictly and every code example in its pages runs.

* ``mkdocs build --strict`` (broken links, missing pages, bad docstrings fail);
* every fenced ``python`` and ``bash`` block of ``README.md`` and ``docs/*.md``
  runs, against the shared models, in a sandbox folder where the names the
  examples use exist: ``yolov8n_openvino_model/``, ``yolov8n_int8_openvino_model/``,
  ``model.pt``, ``images/``, ``bus.jpg``, ``clip.mp4``, ``dataset/`` (coco96 with
  its ``data.yaml``), and ``../shared`` (so the README's repository-relative
  commands work as written).

Rules, so the examples can stay what a user types:

* In a bash block, setup steps of a ``&&`` chain (``python3 -m venv``,
  ``. .venv/bin/activate``, ``pip install``) are dropped: the suite runs in the
  environment they would make. The test command itself (``python -m pytest``)
  is never run from here.
* A block preceded by ``<!-- docs-test: skip REASON -->`` is not run (a camera,
  an RTSP URL, a cluster); the reason is required, and such blocks are counted
  so they stay few.
* Python blocks run each in a fresh interpreter, bash blocks with ``bash -e``;
  each must exit 0 within the time limit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.assets import REPO, SharedAssets

#: The site's pages (``docs/plots`` links to the benchmarks' reports: data, not pages).
DOCS = sorted(p for p in (REPO / "docs").glob("**/*.md") if "plots" not in p.relative_to(REPO / "docs").parts)
#: The pages whose examples run: the README (the front door) and every page of the site.
FILES = [REPO / "README.md", *DOCS]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s+(?P<reason>.+?)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
SETUP = ("python3 -m venv", "python -m venv", ". .venv/bin/activate", "source .venv/bin/activate", "pip install")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group("lang").lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        skip = SKIP.search(prev)
        blocks.append(Block(path, start + 1, lang, "\n".join(lines[start + 1:j]), skip and skip.group("reason")))
        i = j + 1
    return blocks


def runnable(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.lang in ("python", "bash", "sh", "shell")]


ALL = [b for f in FILES for b in runnable(code_blocks(f))]


def bash_script(code: str) -> str:
    """The block as the suite runs it: setup steps of ``&&`` chains dropped, line continuations kept."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = [p.strip() for p in stripped.split(" && ")]
        kept = [p for p in parts if not p.startswith(SETUP) and "python -m pytest" not in p]
        if kept:
            out.append(" && ".join(kept))
    return "\n".join(out)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, shared: SharedAssets) -> Path:
    """The examples' working folder; through the ``shared`` fixture, so the examples (they run the real models)
    are in the model tier and a missing ``../shared`` fails in CI as every model test does."""
    assets = shared
    root = tmp_path_factory.mktemp("docs")
    (root / "shared").symlink_to(assets.root)
    work = root / "work"
    work.mkdir()
    links = {
        "yolov8n_openvino_model": assets.fp32_model,
        "yolov8n_int8_openvino_model": assets.int8_model,
        "model.pt": assets.pt_model,
        "images": assets.coco96 / "images",
        "bus.jpg": assets.coco96_images[0],
        "dataset": assets.coco96,
        "clip.mp4": assets.root / "data" / "video" / "walking_720p.mp4",
    }
    for name, target in links.items():
        (work / name).symlink_to(target)
    return work


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="needs the docs extra: pip install 'yolo-ov[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    proc = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=REPO, env=env,
                          capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_skips_are_few():
    skipped = [b for b in ALL if b.skip]
    assert len(skipped) <= max(3, len(ALL) // 5), [b.id for b in skipped]


def test_the_block_finder_reads_fences_and_skip_markers(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n```python\nprint(1)\n```\n<!-- docs-test: skip needs a camera -->\n```bash\n"
                    "yolo-ov predict 0\n```\n```\nplain\n```\n", encoding="utf-8")
    blocks = runnable(code_blocks(page))
    assert [(b.lang, b.code, b.skip) for b in blocks] == [("python", "print(1)", None),
                                                          ("bash", "yolo-ov predict 0", "needs a camera")]
    assert bash_script("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && yolo-ov info -m x") == (
        "yolo-ov info -m x")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_example_runs(block: Block, sandbox: Path, tmp_path: Path):
    if block.skip:
        pytest.skip(block.skip)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": "", "YOLO_OV_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("YOLO_OV_MODEL", None)
    if block.lang == "python":
        cmd = [sys.executable, "-c", block.code]
    else:
        cmd = ["bash", "-e", "-c", bash_script(block.code)]
    proc = subprocess.run(cmd, cwd=sandbox, env=env, capture_output=True, text=True,
            encoding="utf-8", errors="replace", timeout=800, check=False)
    assert proc.returncode == 0, (
        f"{block.id} failed:\n{block.code}\n--- output ---\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    )
