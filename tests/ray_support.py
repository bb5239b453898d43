"""The local Ray cluster the Ray tests share, one per test module, and the JSONL reader they check records with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local 2-CPU Ray cluster for this module; its workers use the tests' model cache."""
    ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'yolo-ov[ray]'")
    from yolo_ov.ray import connect

    cache = tmp_path_factory.getbasetemp() / "yolo-ov-cache"
    if ray.is_initialized():
        ray.shutdown()
    assert connect("local", num_cpus=2, runtime_env={"env_vars": {"YOLO_OV_CACHE_DIR": str(cache)}})
    yield ray
    ray.shutdown()


def read_lines(path: Path) -> list[dict]:
    """The records of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
