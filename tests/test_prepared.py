"""The prepared-model store: a cached start compiles the saved IR and skips reading the source."""

from __future__ import annotations

import os
import shutil

import numpy as np

import yolo_ov.runtime.core as runtime
from yolo_ov import Detector, RuntimeConfig


def test_second_load_uses_the_store_and_gives_the_same_detections(shared, tmp_path, monkeypatch, image_path):
    cfg = RuntimeConfig(cache_dir=tmp_path / "cache")
    with Detector(shared.int8_model, runtime=cfg) as det:
        first = det(image_path)
        info = det.model_info
    entries = list((tmp_path / "cache" / "prepared").iterdir())
    assert len(entries) == 1
    assert {p.name for p in entries[0].iterdir()} == {"model.xml", "model.bin", "info.json"}

    reads: list[object] = []
    real_read = runtime.read_model
    monkeypatch.setattr(runtime, "read_model", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    with Detector(shared.int8_model, runtime=cfg) as det:
        second = det(image_path)
        assert det.model_info == info
    assert reads == []  # the source IR was not read again
    np.testing.assert_array_equal(first.xyxy, second.xyxy)


def test_store_key_follows_the_source_and_the_shape(shared, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(shared.int8_model, model)
    cfg = RuntimeConfig(cache_dir=tmp_path / "cache")
    Detector(model, runtime=cfg, warmup=False).close()
    Detector(model, runtime=cfg.with_(imgsz=(384, 640)), warmup=False).close()
    assert len(list((tmp_path / "cache" / "prepared").iterdir())) == 2
    xml = model / "yolov8n.xml"
    os.utime(xml, ns=(xml.stat().st_atime_ns, xml.stat().st_mtime_ns + 10**9))  # the source changed
    Detector(model, runtime=cfg, warmup=False).close()
    assert len(list((tmp_path / "cache" / "prepared").iterdir())) == 3


def test_damaged_entry_is_rebuilt(shared, tmp_path, image_path):
    cfg = RuntimeConfig(cache_dir=tmp_path / "cache")
    Detector(shared.int8_model, runtime=cfg, warmup=False).close()
    (entry,) = (tmp_path / "cache" / "prepared").iterdir()
    (entry / "info.json").write_text("{broken", encoding="utf-8")
    with Detector(shared.int8_model, runtime=cfg) as det:
        assert len(det(image_path)) > 0


def test_cache_off_writes_nothing(shared, tmp_path, image_path, monkeypatch):
    # Point the default ("auto") cache at tmp_path/cache: with the cache on it is filled
    # (checked first, so the last assertion can fail), with cache_dir=None it stays absent.
    monkeypatch.setenv("YOLO_OV_CACHE_DIR", str(tmp_path / "cache"))
    with Detector(shared.int8_model, runtime=RuntimeConfig(), warmup=False) as det:
        assert det.compiled_info.cache_dir.startswith(str(tmp_path / "cache"))
    assert any((tmp_path / "cache").iterdir())
    shutil.rmtree(tmp_path / "cache")
    with Detector(shared.int8_model, runtime=RuntimeConfig(cache_dir=None)) as det:
        assert det.compiled_info.cache_dir is None
        assert len(det(image_path)) > 0
    assert not (tmp_path / "cache").exists()
