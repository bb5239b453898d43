"""Batch inference on a real local Ray cluster (2 CPUs, started and stopped by this module).

``predict --ray`` against local ``predict`` record by record; failure records
instead of retries; Parquet through Ray Data; a Ray Dataset of encoded images;
a video's frames; and the fault test: an actor killed (SIGKILL) in the middle
of ~1,000 inputs, every input still written exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.serve_support import assert_same_detections, record_arrays
from yolo_ov.cli import app

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'yolo-ov[ray]'")

from tests.ray_support import read_lines  # noqa: E402 - after the skip: the cluster fixture is in conftest

runner = CliRunner()
MODULE_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def local_records(shared, tmp_path_factory):
    """What local ``yolo-ov predict`` writes for coco96 (throughput pipeline, one process)."""
    out = tmp_path_factory.mktemp("local") / "local.jsonl"
    result = runner.invoke(app, ["predict", str(shared.coco96 / "images"), "--model", str(shared.fp32_model),
                                 "--save-json", str(out), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return read_lines(out)


def _assert_same_records(got: list[dict], want: list[dict]) -> None:
    assert [r["source"] for r in got] == [r["source"] for r in want]  # same inputs, same order
    for g, w in zip(got, want, strict=True):
        assert (g["width"], g["height"]) == (w["width"], w["height"]), g["source"]
        assert_same_detections(record_arrays(g), record_arrays(w), where=g["source"], min_conf=0.25,
                               min_iou=0.99, conf_tol=0.005)


@pytest.mark.timeout(MODULE_TIMEOUT_S)
def test_predict_ray_cli_gives_the_records_of_local_predict(cluster, shared, local_records, tmp_path):
    out, parquet = tmp_path / "ray.jsonl", tmp_path / "parquet"
    result = runner.invoke(app, ["predict", str(shared.coco96 / "images"), "--model", str(shared.fp32_model),
                                 "--save-json", str(out), "--save-parquet", str(parquet), "-q", "--ray="],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "96 records from 96 inputs" in result.output and "Ray: 1 actor(s) on 1 node(s)" in result.output
    _assert_same_records(read_lines(out), local_records)

    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    assert table.num_rows == 96
    assert sorted(table.column("source").to_pylist()) == sorted(r["source"] for r in local_records)
    by_source = {r["source"]: r for r in local_records}
    for row in table.to_pylist()[:10]:
        want = by_source[row["source"]]
        assert json.loads(row["record"]) == read_lines(out)[[r["source"] for r in local_records].index(row["source"])]
        assert row["num_detections"] == len(row["boxes"]) == len(row["class_id"])
        assert row["error"] is None and (row["width"], row["height"]) == (want["width"], want["height"])
        assert row["class_name"] == [d["class_name"] for d in json.loads(row["record"])["detections"]]


@pytest.mark.timeout(MODULE_TIMEOUT_S)
def test_unreadable_inputs_are_failure_records_not_retries(cluster, shared, tmp_path):
    from yolo_ov.ray import predict_dataset

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(shared.coco96_images[0].read_bytes()[:2000])  # a JPEG cut short
    text = tmp_path / "notes.png"
    text.write_text("not an image", encoding="utf-8")
    uri = f"file://{shared.coco96_images[1]}"  # read through pyarrow's filesystem, as s3:// would be
    inputs = [str(shared.coco96_images[0]), str(broken), str(tmp_path / "missing.jpg"), str(text), uri,
              f"file://{tmp_path / 'gone.jpg'}"]
    result = predict_dataset(inputs, shared.fp32_model, collect=True)
    assert (result.inputs, result.records, result.failed, result.passes) == (6, 6, 4, 1)
    records = result.records_list
    assert [r["source"] for r in records] == inputs
    for record in (records[0], records[4]):
        assert "detections" in record and "error" not in record
    for record in (*records[1:4], records[5]):
        assert set(record) == {"source", "error"} and record["source"] in record["error"]


@pytest.mark.timeout(MODULE_TIMEOUT_S)
def test_a_ray_dataset_of_images_is_keyed_by_path(cluster, shared, local_records):
    from yolo_ov.ray import predict_dataset

    paths = [str(p) for p in shared.coco96_images[:6]]
    dataset = ray.data.read_binary_files(paths, include_paths=True)
    result = predict_dataset(dataset, shared.fp32_model, collect=True)
    assert (result.inputs, result.records, result.failed) == (6, 6, 0)
    got = sorted(result.records_list, key=lambda r: r["source"])
    want = sorted((r for r in local_records if r["source"] in paths), key=lambda r: r["source"])
    # read_binary_files names each row by its path without a leading '/'; the records keep that name
    assert [Path("/", r["source"]) for r in got] == [Path(r["source"]) for r in want]
    for g, w in zip(got, want, strict=True):
        assert_same_detections(record_arrays(g), record_arrays(w), where=w["source"], min_iou=0.99, conf_tol=0.005)


@pytest.mark.timeout(MODULE_TIMEOUT_S)
def test_a_video_gives_one_record_per_frame(cluster, shared, video_16x9):
    from yolo_ov import Detector
    from yolo_ov.ray import predict_dataset

    result = predict_dataset([str(video_16x9)], shared.fp32_model, collect=True)
    records = result.records_list
    assert (result.inputs, result.records, result.failed) == (1, 12, 0)
    assert [(r["stream"], r["frame"]) for r in records] == [(0, k) for k in range(12)]
    with Detector(shared.fp32_model, mode="throughput") as det:
        local = [r.to_dict() for r in det.stream(str(video_16x9))]
    for g, w in zip(records, local, strict=True):
        assert_same_detections(record_arrays(g), record_arrays(w), where=f"frame {w['frame']}", min_iou=0.99,
                               conf_tol=0.005)


def _actor_pids() -> list[int]:
    """PIDs of this machine's Ray Data DetectorActor workers (Ray names the process after the actor)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"MapBatches(DetectorActor)" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killing_an_actor_mid_run_loses_and_duplicates_nothing(cluster, shared, tmp_path):
    """~1,000 inputs (coco96 x 11, the same files listed again), two actors; one is SIGKILLed mid-run."""
    from yolo_ov.ray import BatchConfig, predict_dataset

    inputs = [str(p) for p in shared.coco96_images] * 11
    out = tmp_path / "fault.jsonl"
    killed: list[int] = []
    alive_then: set[int] = set()
    seen = 0
    lock = threading.Lock()

    def on_record(record: dict) -> None:
        nonlocal seen
        with lock:
            seen += 1
            if seen >= 150 and not killed:  # well into the run, with blocks queued on both actors
                pids = _actor_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    alive_then.update(pids)

    t0 = time.monotonic()
    result = predict_dataset(inputs, shared.fp32_model, config=BatchConfig(concurrency=2, batch_size=16),
                             save_json=out, on_record=on_record)
    assert killed, "the run ended before an actor could be killed"
    lines = read_lines(out)
    assert len(lines) == len(inputs) == result.records == result.inputs == 1056
    assert all("detections" in r for r in lines) and result.failed == 0
    assert Counter(r["source"] for r in lines) == Counter(inputs)  # every input once, none twice
    assert [r["source"] for r in lines] == inputs  # and in input order
    assert killed[0] not in _actor_pids()
    # Ray replaced the dead actor: a process that was not alive at the kill did some of the work.
    pids = {int(w.split(":")[1]) for w in result.workers}
    assert pids - alive_then, (result.workers, alive_then)
    first = {r["source"]: r for r in lines[:96]}
    for r in lines[96:]:  # the same image answered the same way by every actor
        assert np.allclose(record_arrays(r)[0], record_arrays(first[r["source"]])[0], atol=0.5)
    print(f"fault run: {result.records} records in {time.monotonic() - t0:.1f} s, "
          f"{result.duplicates} duplicates dropped, workers {result.workers}")


@pytest.mark.timeout(MODULE_TIMEOUT_S)
def test_a_ray_dataset_of_decoded_rgb_images(cluster, shared, local_records):
    """``read_images`` gives RGB arrays (decoded by Pillow): turned to BGR, they give local predict's detections."""
    from yolo_ov.ray import predict_dataset

    paths = [str(p) for p in shared.coco96_images[10:14]]
    result = predict_dataset(ray.data.read_images(paths, include_paths=True, mode="RGB"), shared.fp32_model,
                             collect=True)
    assert (result.inputs, result.records, result.failed) == (4, 4, 0)
    want = {Path(r["source"]).name: r for r in local_records}
    for record in result.records_list:
        w = want[Path(record["source"]).name]
        assert (record["width"], record["height"]) == (w["width"], w["height"])
        assert_same_detections(record_arrays(record), record_arrays(w), where=w["source"], min_conf=0.4)


@pytest.mark.timeout(MODULE_TIMEOUT_S)
def test_an_input_lost_in_a_pass_is_run_again_or_reported(cluster, shared, monkeypatch):
    """The final count check: a record that never came back (simulated by dropping it from the first pass)
    is run again in a second pass; with no passes left, the run fails naming it."""
    import yolo_ov.ray.batch as batch
    from yolo_ov.errors import InferenceError
    from yolo_ov.ray import BatchConfig

    real = batch.map_detections
    passes: list[int] = []

    def lossy(dataset, *args, **kwargs):
        passes.append(1)
        out = real(dataset, *args, **kwargs)
        return out.filter(lambda row: row["index"] != 1) if len(passes) == 1 else out

    monkeypatch.setattr(batch, "map_detections", lossy)
    inputs = [str(p) for p in shared.coco96_images[:3]]
    result = batch.predict_dataset(inputs, shared.fp32_model, collect=True)
    assert (result.passes, result.records, result.duplicates) == (2, 3, 0)
    assert [r["source"] for r in result.records_list] == [inputs[0], inputs[2], inputs[1]]  # re-run comes last
    passes.clear()
    with pytest.raises(InferenceError, match=f"1 inputs were not answered after 1 passes \\(first: {inputs[1]}\\)"):
        batch.predict_dataset(inputs, shared.fp32_model, config=BatchConfig(max_passes=1))
