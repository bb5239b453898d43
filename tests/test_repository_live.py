"""A model repository served by a real ``yolo-ov serve`` process on the shared YOLOv8n IRs, updated under load.

The repository is made in ``tmp_path`` from copies of ``../shared`` (never written there): version 1 is the
FP32 IR, version 2 the INT8 IR, so each answer is recognisably from one version, and checked against an
in-process :class:`~yolo_ov.Detector` of that version's files. The server polls every 0.5 s
(``--repository-poll-s``) and serves REST and gRPC; sixteen ``tritonclient`` clients (eight of each) send
coco96 images without naming a version for the whole update. The fast tier (``test_repository.py``,
``test_repository_api.py``) checks the same decisions on the fake engine.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.serve_support import ServerProcess, assert_same_detections

grpcclient = pytest.importorskip("tritonclient.grpc")
http = pytest.importorskip("tritonclient.http")
httpx = pytest.importorskip("httpx")

CLIENTS = 16
IMAGES = 4
#: The issue's bar: the server's RSS once the old version is closed, against before the new one was added.
RSS_BAR_MB = 50.0
UPDATE_TIMEOUT_S = 60.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def start_server(root: Path, cache: Path) -> ServerProcess:
    proc = ServerProcess(["--model-repository", str(root), "--repository-poll-s", "0.5", "--grpc-port", "0",
                          "--timeout-s", "60", "--max-queue", "64"], cache_dir=cache).start()
    found = re.search(r"gRPC on (127\.0\.0\.1:\d+) ", proc.output())
    assert found, proc.output()
    proc.grpc = found.group(1)
    return proc


def index(proc: ServerProcess) -> dict[str, tuple[str, str]]:
    entries = httpx.post(f"{proc.url}/v2/repository/index", timeout=30).json()
    return {e["version"]: (e["state"], e["reason"]) for e in entries if e["name"] == "yolov8n"}


def wait_for(check, what: str, proc: ServerProcess, timeout_s: float = UPDATE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {index(proc)}\n{proc.output()}"
        time.sleep(0.1)


def arrays(result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(result.as_numpy("num_detections")[0])
    return (result.as_numpy("boxes")[0, :n].astype(np.float64), result.as_numpy("scores")[0, :n].astype(np.float64),
            result.as_numpy("classes")[0, :n].astype(np.int64))


def bytes_input(module, data: bytes):
    inp = module.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([data], dtype=np.object_))
    return inp


@pytest.fixture
def repository(shared, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(shared.fp32_model, root / "yolov8n" / "1")
    return root


def references(shared, images: list[Path]) -> dict[str, list[tuple[np.ndarray, ...]]]:
    """What each version's files give in-process, per image."""
    from yolo_ov import Detector

    out = {}
    for version, path in (("1", shared.fp32_model), ("2", shared.int8_model)):
        with Detector(path, mode="latency") as det:
            out[version] = [(r.xyxy.astype(np.float64), r.confidence.astype(np.float64), r.class_id.astype(np.int64))
                            for r in (det(image) for image in images)]
    return out


def test_zero_downtime_update_under_16_clients(shared, repository, tmp_path):
    images = shared.coco96_images[:IMAGES]
    data = [p.read_bytes() for p in images]
    want = references(shared, images)
    proc = start_server(repository, tmp_path / "cache")
    answers: list[tuple[float, str, int, tuple[np.ndarray, ...]]] = []
    errors: list[str] = []
    stop = threading.Event()

    def client(k: int) -> None:
        grpc_side = k % 2 == 1
        c = grpcclient.InferenceServerClient(proc.grpc) if grpc_side else \
            http.InferenceServerClient(proc.host_port, network_timeout=120, connection_timeout=120)
        module = grpcclient if grpc_side else http
        i = k
        try:
            while not stop.is_set():
                j = i % IMAGES
                try:
                    result = c.infer("yolov8n", [bytes_input(module, data[j])], client_timeout=120) if grpc_side \
                        else c.infer("yolov8n", [bytes_input(module, data[j])])
                except Exception as exc:
                    errors.append(f"client {k} ({'gRPC' if grpc_side else 'REST'}): {exc}")
                    continue
                response = result.get_response(as_json=True) if grpc_side else result.get_response()
                answers.append((time.monotonic(), response["model_version"], j, arrays(result)))
                i += 1
        finally:
            c.close()

    peak = [0.0]

    def sample() -> None:  # the server's RSS while both versions are open, to show what closing gives back
        while not stop.wait(0.1):
            try:
                peak[0] = max(peak[0], rss_mb(proc.pid))
            except (OSError, AssertionError):
                return

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENTS)]
    threads.append(threading.Thread(target=sample, daemon=True))
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(answers) >= 2 * CLIENTS, "first answers", proc)
        time.sleep(2.0)
        before = rss_mb(proc.pid)
        t_copy = time.monotonic()
        shutil.copytree(shared.int8_model, repository / "yolov8n" / "2")  # caught mid-copy: the stable check waits
        wait_for(lambda: index(proc) == {"1": ("UNAVAILABLE", "not served: version policy {'latest': "
                                               "{'num_versions': 1}}"), "2": ("READY", "")},
                 "version 2 serving and version 1 closed", proc)
        t_swapped = time.monotonic()
        shutil.rmtree(repository / "yolov8n" / "1")
        wait_for(lambda: index(proc) == {"2": ("READY", "")}, "version 1 gone from the index", proc)
        count_at_swap = len(answers)
        wait_for(lambda: len(answers) >= count_at_swap + 2 * CLIENTS, "answers after the update", proc)
        time.sleep(2.0)
        after = rss_mb(proc.pid)
    finally:
        stop.set()
        for t in threads:
            t.join(150)
        metrics = httpx.get(f"{proc.url}/metrics", timeout=30).text if proc.proc.poll() is None else ""
        code = proc.stop()
    versions = [a[1] for a in answers]
    print(f"\nzero-downtime update: {len(answers)} answers ({versions.count('1')} from version 1, "
          f"{versions.count('2')} from version 2), {len(errors)} errors, {CLIENTS} clients (8 REST, 8 gRPC); "
          f"swap {t_swapped - t_copy:.1f} s after the copy began; server RSS {before:.1f} MB before version 2, "
          f"peak {peak[0]:.1f} MB, {after:.1f} MB after version 1 was closed ({after - before:+.1f} MB)")
    assert code == 0, proc.output()
    assert not errors, errors[:5]
    assert versions.count("1") and versions.count("2") and set(versions) == {"1", "2"}
    assert all(v == "2" for t, v, *_ in answers if t > t_swapped + 0.5), "version 1 answered after the swap"
    for _, version, j, got in answers:
        assert_same_detections(got, want[version][j], where=f"version {version} {images[j].name}")
    assert 'yolo_ov_model_unloads_total{name="yolov8n",version="1"} 1.0' in metrics
    assert 'yolo_ov_model_loads_total{name="yolov8n",version="2"} 1.0' in metrics
    assert abs(after - before) <= RSS_BAR_MB, f"RSS {before:.1f} MB -> {after:.1f} MB"


def test_corrupt_version_leaves_the_old_one_serving(shared, repository, tmp_path):
    proc = start_server(repository, tmp_path / "cache")
    image = shared.coco96_images[0].read_bytes()
    try:
        rest = http.InferenceServerClient(proc.host_port, network_timeout=120)
        staged = tmp_path / "staged"
        shutil.copytree(shared.int8_model, staged)
        weights = staged / "yolov8n.bin"
        good = weights.read_bytes()
        weights.write_bytes(good[: len(good) // 2])  # a truncated .bin
        os.rename(staged, repository / "yolov8n" / "2")
        wait_for(lambda: index(proc).get("2", ("", ""))[0] == "UNAVAILABLE", "version 2 reported", proc)
        _state, reason = index(proc)["2"]
        assert "Incorrect weights in bin file" in reason and "yolov8n.xml" in reason, reason
        assert index(proc)["1"] == ("READY", "")
        result = rest.infer("yolov8n", [bytes_input(http, image)])
        assert result.get_response()["model_version"] == "1"
        metrics = httpx.get(f"{proc.url}/metrics", timeout=30).text
        assert 'yolo_ov_model_load_failures_total{name="yolov8n",version="2"} 1.0' in metrics
        assert "failed to load (the versions serving stay)" in proc.output()
        (repository / "yolov8n" / "2" / "yolov8n.bin").write_bytes(good)  # fixed
        wait_for(lambda: index(proc).get("2") == ("READY", ""), "version 2 loaded once fixed", proc)
        assert rest.infer("yolov8n", [bytes_input(http, image)]).get_response()["model_version"] == "2"
    finally:
        assert proc.stop() == 0, proc.output()
