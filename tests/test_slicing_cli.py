"""``predict --slice`` and ``val --slice`` on the fake engine: no model, fast tier.

The CLI's sliced records must be what the sequential reference gives on the
same detector (latency mode: one image's tiles in flight at once; throughput
mode: tiles of many images interleaved), with ``"slices"`` in each record.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.cli_fakes import invoke, use_fake_detector
from tests.fakes import NAMES, fake_detector
from tests.test_slicing_fanout import patchwork
from yolo_ov import SliceConfig
from yolo_ov.pipeline.slicing import plan_tiles, predict_sliced


def write_images(folder: Path, shapes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, hw in enumerate(shapes):
        path = folder / f"img{k}.png"  # lossless: the CLI decodes exactly these pixels
        cv2.imwrite(str(path), patchwork(hw, 10 + k))
        paths.append(path)
    return paths


def reference(paths: list[Path], cfg: SliceConfig) -> dict[str, dict]:
    with fake_detector() as det:
        return {p.name: predict_sliced(det, cv2.imread(str(p)), cfg, source=str(p)).to_dict() for p in paths}


def records(path: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {Path(r["source"]).name: r for r in lines}


@pytest.mark.parametrize("mode", ["latency", "throughput"])
def test_predict_slice_writes_the_reference_records(monkeypatch, tmp_path, caplog, mode) -> None:
    use_fake_detector(monkeypatch)
    # a mixed folder: large images, one smaller than the tile (one tile, no duplicate full pass)
    paths = write_images(tmp_path / "in", [(150, 200), (130, 260), (40, 50), (200, 150)])
    out = tmp_path / "out.jsonl"
    result = invoke("predict", tmp_path / "in", "--slice", "64", "--overlap", "0.2", "--mode", mode,
                    "--save-json", out, "-q")
    assert result.exit_code == 0, result.output
    got, want = records(out), reference(paths, SliceConfig(size=64, overlap=0.2))
    assert set(got) == set(want)
    for name, rec in want.items():
        assert got[name]["slices"] == rec["slices"] == len(plan_tiles((rec["height"], rec["width"]),
                                                                      SliceConfig(size=64))[0])
        assert got[name]["detections"] == rec["detections"], name
    assert got["img2.png"]["slices"] == 1
    warned = [r.getMessage() for r in caplog.records if "larger than" in r.getMessage()]
    assert len(warned) == 1 and "an image of 40x50" in warned[0]  # said once per run, not per image


def test_every_slicing_option_reaches_the_merge(monkeypatch, tmp_path) -> None:
    use_fake_detector(monkeypatch)
    paths = write_images(tmp_path / "in", [(150, 200)])
    cfg = SliceConfig(size=(64, 80), overlap=0.1, full_pass=False, merge="nms", metric="iou", threshold=0.2,
                      class_agnostic=True)
    out = tmp_path / "out.jsonl"
    result = invoke("predict", paths[0], "--slice", "64,80", "--overlap", "0.1", "--no-full-pass", "--slice-merge",
                    "nms", "--slice-metric", "iou", "--slice-threshold", "0.2", "--slice-agnostic", "--save-json", out)
    assert result.exit_code == 0, result.output
    assert records(out)["img0.png"]["detections"] == reference(paths, cfg)["img0.png"]["detections"]
    plain = tmp_path / "plain.jsonl"
    assert invoke("predict", paths[0], "--save-json", plain).exit_code == 0
    assert "slices" not in records(plain)["img0.png"]


@pytest.mark.parametrize(("args", "message"), [
    (["--slice", "0"], "--slice must be a positive tile size"),
    (["--slice", "big"], "--slice must be a tile size like 640"),
    (["--slice", "640", "--overlap", "1"], "--overlap must be within [0, 1)"),
    (["--slice", "640", "--overlap", "-0.1"], "--overlap must be within [0, 1)"),
    (["--slice", "640", "--slice-merge", "wbf"], "--slice-merge must be one of"),
    (["--slice", "640", "--slice-metric", "giou"], "--slice-metric must be one of"),
    (["--slice", "640", "--slice-threshold", "2"], "--slice-threshold must be within"),
    (["--overlap", "0.3"], "--overlap goes with --slice"),
])
def test_bad_slicing_options_are_one_line_each(monkeypatch, tmp_path, args, message) -> None:
    calls = use_fake_detector(monkeypatch)
    paths = write_images(tmp_path / "in", [(64, 64)])
    result = invoke("predict", paths[0], *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and calls == []  # refused before a model loads
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1, result.output


def test_val_slice_scores_a_sliced_run(tmp_path) -> None:
    from yolo_ov.eval.validate import validate

    cfg = SliceConfig(size=64, overlap=0.2)
    root = tmp_path / "ds"
    paths = write_images(root / "images", [(150, 200), (130, 260)])
    (root / "labels").mkdir()
    with fake_detector() as det:
        for p in paths:  # the labels are the sliced answer: a sliced run scores 1.0, the plain one does not
            r = predict_sliced(det, cv2.imread(str(p)), cfg)
            h, w = r.image_shape
            xywhn = np.c_[(r.xyxy[:, :2] + r.xyxy[:, 2:]) / 2, r.xyxy[:, 2:] - r.xyxy[:, :2]] / [w, h, w, h]
            lines = [" ".join([str(int(c)), *(f"{v:.6f}" for v in b)]) for c, b in zip(r.class_id, xywhn, strict=True)]
            (root / "labels" / f"{p.stem}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (root / "data.yaml").write_text("val: images\nnames: [" + ", ".join(NAMES.values()) + "]\n",
                                        encoding="utf-8")
        sliced = validate(det, root, slicing=cfg)
        plain = validate(det, root)
    assert sliced.box.map50 > 0.99 and plain.box.map50 < 0.5, (sliced.box, plain.box)
    assert sliced.settings["slicing"]["size"] == [64, 64]


def test_val_slice_options_reach_validate(monkeypatch, tmp_path) -> None:
    from yolo_ov.cli import val as val_cli

    seen = {}

    def fake_validate(model, dataset, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(val_cli, "validate", fake_validate)
    result = invoke("val", tmp_path, "--slice", "512", "--overlap", "0.25", "--slice-merge", "nms", "-q")
    assert result.exit_code == 0, result.output
    assert seen["slicing"] == SliceConfig(size=512, overlap=0.25, merge="nms")
    bad = invoke("val", tmp_path, "--slice", "512", "--protocol", "ultralytics")
    assert bad.exit_code == 2 and "--protocol coco only" in bad.output


def test_track_slice_tracks_the_sliced_detections(monkeypatch, tmp_path) -> None:
    """``track --slice`` and ``predict --slice --tracker``: the tracker sees each frame's merged tiles."""
    use_fake_detector(monkeypatch)
    frame = patchwork((150, 200), 3)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (200, 150))
    for _ in range(4):
        writer.write(frame)
    writer.release()
    for command in (["track", video], ["predict", video, "--tracker", "bytetrack"]):
        out = tmp_path / f"{command[0]}.jsonl"
        result = invoke(*command, "--slice", "64", "--save-json", out, "-q")
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(lines) == 4 and all(r["slices"] == 12 for r in lines), command
        ids = [[d["track_id"] for d in r["detections"]] for r in lines]
        assert len(ids[-1]) >= 10 and ids[-1] == ids[1], command  # the tiles' objects, the same ids frame to frame
