"""``yolo-ov serve`` as a real process on a loopback port, on the real models, driven by real clients.

KServe v2 through Triton's own ``tritonclient.http`` (metadata; BYTES JPEGs
and UINT8 frames, several images per request) checked image by image against
the in-process Detector; ``/predict`` against the JSONL record ``yolo-ov
predict`` writes; segment and pose outputs; a batch-4 model grouping requests.

The server's behaviour that does not depend on the network (every refusal
with its status and body, the limits, the API key, CORS, the 503 queue bound
with its metrics, the SIGTERM drain) is tested on the fake engine in the fast
tier: ``test_serve_app.py`` and ``test_serve_live.py``. The command-line
refusals here load no model and run in the fast tier too.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.serve_support import ServerProcess, assert_same_detections, metric_value, record_arrays

http = pytest.importorskip("tritonclient.http")
requests = pytest.importorskip("requests")
from tritonclient.utils import InferenceServerException  # noqa: E402


def _arrays(det):
    return det.xyxy.astype(np.float64), det.confidence.astype(np.float64), det.class_id.astype(np.int64)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "yolo-ov-cache"


@pytest.fixture(scope="module")
def server(shared, cache_dir):
    """The FP32 and INT8 models in one server; a small body limit to test against."""
    proc = ServerProcess(["--model", str(shared.fp32_model), "--model", f"int8={shared.int8_model}",
                          "--max-body-mb", "4", "--timeout-s", "30"], cache_dir=cache_dir).start()
    yield proc
    code = proc.stop()
    assert code == 0, proc.output()


@pytest.fixture(scope="module")
def client(server):
    c = http.InferenceServerClient(server.host_port, concurrency=4, connection_timeout=60, network_timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference(shared, fp32_detector):
    """What the in-process Detector (latency path) finds in each coco96 image."""
    return {p.name: fp32_detector(p) for p in shared.coco96_images}


# -- KServe v2 through tritonclient ----------------------------------------------------------------

def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("yolov8n") and client.is_model_ready("int8")
    meta = client.get_model_metadata("yolov8n")
    assert meta["name"] == "yolov8n" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]} == {
        "num_detections": ("INT32", [-1]), "boxes": ("FP32", [-1, -1, 4]), "scores": ("FP32", [-1, -1]),
        "classes": ("INT32", [-1, -1]),
    }
    assert client.get_model_metadata("int8", model_version="1")["name"] == "int8"
    assert client.get_model_config("yolov8n")["parameters"]["names"]["0"] == "person"
    assert client.get_server_metadata()["name"] == "yolo-ov"
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_model_metadata("nope")
    assert not client.is_model_ready("nope")


def _bytes_input(paths):
    inp = http.InferInput("image", [len(paths)], "BYTES")
    inp.set_data_from_numpy(np.array([p.read_bytes() for p in paths], dtype=np.object_))
    return inp


def _detections_of(result, i):
    n = int(result.as_numpy("num_detections")[i])
    return (result.as_numpy("boxes")[i, :n].astype(np.float64), result.as_numpy("scores")[i, :n].astype(np.float64),
            result.as_numpy("classes")[i, :n].astype(np.int64))


def test_kserve_jpegs_match_the_in_process_detector(shared, client, reference):
    """All 96 coco96 JPEGs, 4 per request, 4 requests in flight: each image as the Detector sees it."""
    images = shared.coco96_images
    groups = [images[i : i + 4] for i in range(0, len(images), 4)]
    pending = [(g, client.async_infer("yolov8n", [_bytes_input(g)], request_id=f"r{k}")) for k, g in enumerate(groups)]
    for k, (group, job) in enumerate(pending):
        result = job.get_result(timeout=120)
        assert result.get_response()["id"] == f"r{k}"
        n = result.as_numpy("num_detections")
        assert result.as_numpy("boxes").shape == (len(group), max(n.max(), 0), 4)
        for i, path in enumerate(group):
            assert_same_detections(_detections_of(result, i), _arrays(reference[path.name]), where=path.name)
            # padding after the image's own detections
            assert (result.as_numpy("classes")[i, n[i]:] == -1).all()


def test_kserve_uint8_frames_match(shared, client, fp32_detector):
    """Raw BGR frames ([N, H, W, 3] UINT8), grouped by size, binary and JSON."""
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for path in shared.coco96_images[:40]:
        img = cv2.imread(str(path))
        by_shape.setdefault(img.shape, []).append(img)
    batches = [np.stack(v[:3]) for v in by_shape.values() if len(v) >= 2][:3]
    assert batches
    for frames in batches:
        inp = http.InferInput("image", list(frames.shape), "UINT8")
        inp.set_data_from_numpy(frames)
        result = client.infer("yolov8n", [inp])
        for i, frame in enumerate(frames):
            assert_same_detections(_detections_of(result, i), _arrays(fp32_detector(frame)), where=f"frame {i}")
    small = cv2.resize(cv2.imread(str(shared.coco96_images[0])), (160, 120))[None]
    inp = http.InferInput("image", list(small.shape), "UINT8")
    inp.set_data_from_numpy(small, binary_data=False)
    names = ("num_detections", "boxes", "scores", "classes")
    outputs = [http.InferRequestedOutput(n, binary_data=False) for n in names]
    result = client.infer("yolov8n", [inp], outputs=outputs)
    assert all("data" in o for o in result.get_response()["outputs"])
    assert_same_detections(_detections_of(result, 0), _arrays(fp32_detector(small[0])), where="small JSON frame")


def test_kserve_parameters_outputs_and_second_model(shared, client, int8_detector):
    paths = shared.coco96_images[:6]
    result = client.infer("yolov8n", [_bytes_input(paths)], parameters={"conf": 0.5, "classes": [0]},
                          outputs=[http.InferRequestedOutput("scores", binary_data=False),
                                   http.InferRequestedOutput("classes"), http.InferRequestedOutput("num_detections")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["scores", "classes", "num_detections"]
    assert result.as_numpy("boxes") is None
    n = result.as_numpy("num_detections")
    assert n.sum() > 0
    for i in range(len(paths)):
        assert (result.as_numpy("classes")[i, : n[i]] == 0).all()
        assert (result.as_numpy("scores")[i, : n[i]] >= 0.5).all()
    result = client.infer("int8", [_bytes_input(paths)], model_version="1")
    for i, path in enumerate(paths):
        assert_same_detections(_detections_of(result, i), _arrays(int8_detector(path)), where=f"int8 {path.name}")


def test_kserve_request_timeout_gets_504_and_server_goes_on(shared, client, reference):
    inp = _bytes_input(shared.coco96_images[:4])
    with pytest.raises(InferenceServerException) as info:
        # 1 ms (Triton's timeout parameter is in microseconds): less than decoding alone takes
        client.infer("yolov8n", [inp], timeout=1000)
    assert info.value.status() == "504" and "deadline" in info.value.message()
    path = shared.coco96_images[1]
    assert_same_detections(_detections_of(client.infer("yolov8n", [_bytes_input([path])]), 0),
                           _arrays(reference[path.name]), where="after 504")


@pytest.fixture(scope="module")
def task_models(shared):
    seg = shared.root / "models" / "yolo11n-seg_int8_openvino_model"
    pose = shared.root / "models" / "yolov8n-pose_int8_openvino_model"
    if not (seg.exists() and pose.exists()):
        pytest.skip("the segment and pose models are not in the shared assets")
    return {"seg": seg, "pose": pose}


def test_task_outputs_come_from_detections_data(shared, task_models, cache_dir):
    """Segmentation masks (COCO RLE) and pose keypoints travel with no server change for the task."""
    from yolo_ov import Detector

    args = [a for name, path in task_models.items() for a in ("--model", f"{name}={path}")]
    proc = ServerProcess(args, cache_dir=cache_dir).start()
    try:
        c = http.InferenceServerClient(proc.host_port)
        outputs = {m: {o["name"]: o for o in c.get_model_metadata(m)["outputs"]} for m in task_models}
        assert outputs["seg"]["masks"]["datatype"] == "BYTES"
        assert outputs["pose"]["keypoints"]["shape"] == [-1, -1, 17, 3]
        paths = shared.coco96_images[:6]
        for name, model in task_models.items():
            with Detector(model, mode="latency") as det:
                expected = [det(p) for p in paths]
            result = c.infer(name, [_bytes_input(paths)])
            for i, (path, want) in enumerate(zip(paths, expected, strict=True)):
                n = int(result.as_numpy("num_detections")[i])
                assert_same_detections(_detections_of(result, i), _arrays(want), where=f"{name} {path.name}")
                if n != len(want) or not n:
                    continue  # a detection at the threshold came or went: boxes checked, extras not paired
                if name == "seg":
                    got = [json.loads(v) for v in result.as_numpy("masks")[i, :n]]
                    assert got == want.data["masks"].to_rle() or _masks_agree(got, want.data["masks"])
                else:
                    np.testing.assert_allclose(result.as_numpy("keypoints")[i, :n], want.data["keypoints"],
                                               atol=2.0, rtol=0.02)
            record = requests.post(f"{proc.url}/predict?model={name}", data=paths[0].read_bytes(), timeout=60).json()
            extra = "mask" if name == "seg" else "keypoints"
            assert all(extra in d for d in record["detections"])
    finally:
        assert proc.stop() == 0, proc.output()


def _masks_agree(got: list[dict], masks) -> bool:
    """Masks equal up to a few border pixels (a bf16 kernel may differ between CPUs)."""
    mask_api = pytest.importorskip("faster_coco_eval.core.mask")
    for i, rle in enumerate(got):
        a = mask_api.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
        b = masks.mask(i)
        if (a & b).sum() < 0.9 * max((a | b).sum(), 1):
            return False
    return True


# -- /predict ------------------------------------------------------------------------------------------

def test_predict_returns_the_jsonl_record_of_yolo_ov_predict(shared, server, tmp_path, cache_dir):
    path = shared.coco96_images[2]
    out = tmp_path / "p.jsonl"
    env = {**os.environ, "YOLO_OV_CACHE_DIR": str(cache_dir)}
    subprocess.run([sys.executable, "-m", "yolo_ov", "predict", str(path), "--model", str(shared.fp32_model),
                    "--save-json", str(out), "-q"], check=True, env=env, timeout=300, capture_output=True)
    (expected,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    got = requests.post(f"{server.url}/predict", params={"source": str(path)},
                        files={"file": (path.name, path.read_bytes(), "image/jpeg")}, timeout=60).json()
    assert got.keys() == expected.keys()
    assert (got["source"], got["width"], got["height"]) == (expected["source"], expected["width"], expected["height"])
    assert [d.keys() for d in got["detections"]] == [d.keys() for d in expected["detections"]][: len(got["detections"])]
    assert_same_detections(record_arrays(got), record_arrays(expected), where=path.name)


def test_predict_multipart_and_raw_body_equal_the_record(shared, server, reference):
    with requests.Session() as s:
        for path in shared.coco96_images[:12]:
            expected = reference[path.name].to_dict()
            form = s.post(f"{server.url}/predict", files={"file": (path.name, path.read_bytes())}, timeout=60)
            raw = s.post(f"{server.url}/predict?model=yolov8n", data=path.read_bytes(), timeout=60,
                         headers={"Content-Type": "image/jpeg"})
            assert form.status_code == raw.status_code == 200
            assert "inference;dur=" in form.headers["Server-Timing"]
            for response, source in ((form, path.name), (raw, f"<{path.stat().st_size} bytes>")):
                record = response.json()
                assert record["source"] == source
                assert (record["width"], record["height"]) == (expected["width"], expected["height"])
                assert_same_detections(record_arrays(record), record_arrays(expected), where=path.name)


def test_predict_query_settings(shared, server):
    path = shared.coco96_images[0]
    record = requests.post(f"{server.url}/predict", params={"conf": "0.6", "classes": "45"},
                           data=path.read_bytes(), timeout=60).json()
    assert record["detections"] and all(d["class_id"] == 45 and d["confidence"] >= 0.6 for d in record["detections"])
    gz = requests.post(f"{server.url}/predict", data=gzip.compress(path.read_bytes()), timeout=60,
                       headers={"Content-Encoding": "gzip"})
    assert gz.status_code == 200 and gz.json()["width"] == record["width"]


def test_models_lists_what_openvino_chose(server):
    models = {m["name"]: m for m in requests.get(f"{server.url}/models", timeout=10).json()["models"]}
    assert set(models) == {"yolov8n", "int8"}
    m = models["yolov8n"]
    assert m["mode"] == "throughput" and m["device"] == "CPU" and m["task"] == "detect"
    assert m["streams"] >= 1 and m["requests_in_flight"] >= m["streams"]
    assert m["inference_precision"] and m["execution_devices"]
    assert m["limits"]["max_body_mb"] == 4


# -- batching ------------------------------------------------------------------------------------------


def test_batch_model_groups_images_of_concurrent_requests(shared, cache_dir, reference):
    """--batch 4: single-image requests from concurrent clients share inference requests, answers unchanged."""
    proc = ServerProcess(["--model", str(shared.fp32_model), "--batch", "4", "--max-wait-ms", "50"],
                         cache_dir=cache_dir).start()
    try:
        (model,) = requests.get(f"{proc.url}/models", timeout=10).json()["models"]
        assert model["batch"] == 4
        before = requests.get(f"{proc.url}/metrics", timeout=10).text
        paths = shared.coco96_images[:16]

        def call(path: Path):
            return path, requests.post(f"{proc.url}/predict", data=path.read_bytes(), timeout=60).json()

        with ThreadPoolExecutor(8) as pool:
            for path, record in pool.map(call, paths):
                assert_same_detections(record_arrays(record), _arrays(reference[path.name]), where=path.name)
        after = requests.get(f"{proc.url}/metrics", timeout=10).text
        images = metric_value(after, "yolo_ov_images_total") - metric_value(before, "yolo_ov_images_total")
        infer = (metric_value(after, "yolo_ov_infer_requests_total")
                 - metric_value(before, "yolo_ov_infer_requests_total"))
        assert images == len(paths)
        assert 4 <= infer < images, (infer, images)  # grouped across requests, never more than 4 per request
    finally:
        assert proc.stop() == 0, proc.output()


# -- command-line refusals (no model is loaded for these: a stand-in folder will do; fast tier) -----------------

@pytest.fixture
def stand_in(tmp_path):
    """A model folder and a checkpoint the command refuses before reading either (the fast tier)."""
    folder = tmp_path / "yolov8n_openvino_model"
    folder.mkdir()
    pt = tmp_path / "yolov8n.pt"
    pt.write_bytes(b"not read")
    return folder, pt


def test_cli_refusals_are_one_line(stand_in, tmp_path):
    model, pt = stand_in
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    env = {**os.environ, "YOLO_OV_CACHE_DIR": str(tmp_path)}
    env.pop("YOLO_OV_UNSET_KEY", None)
    cases = [
        # a model the server cannot load exits 3, as predict does for the same file; usage errors exit 2
        (["--model", str(pt)], "never loads .pt checkpoints", 3),
        (["--model", str(tmp_path / "missing_openvino_model")], "no such model", 3),
        (["--model", str(model), "--port", str(port)], f"cannot listen on 127.0.0.1:{port}", 2),
        (["--model", str(model), "--api-key-env", "YOLO_OV_UNSET_KEY"], "YOLO_OV_UNSET_KEY", 2),
        (["--model", str(model), "--max-queue", "0", "--port", "0"], "--max-queue must be a positive integer", 2),
    ]
    def run_serve(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "yolo_ov", "serve", *args], capture_output=True, text=True,
                              encoding="utf-8", errors="replace", env=env, timeout=120)

    try:
        with ThreadPoolExecutor(len(cases)) as pool:  # each is a process start: side by side
            runs = list(pool.map(run_serve, [args for args, _, _ in cases]))
        for (args, message, code), run in zip(cases, runs, strict=True):
            assert run.returncode == code, (args, run.stderr)
            lines = run.stderr.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], run.stderr
            assert "Traceback" not in run.stderr
    finally:
        taken.close()


def test_server_packages_load_only_for_serve(stand_in):
    """``import yolo_ov`` / the CLI never import FastAPI; without the extra, serve says which to install (exit 5)."""
    probe = ("import sys, yolo_ov, yolo_ov.cli, yolo_ov.serve; "
             "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'prometheus_client') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
            encoding="utf-8", errors="replace", timeout=120, check=True)
    assert run.stdout.strip() == "[]"
    missing = ("import sys; sys.modules['fastapi'] = None; "
               f"sys.argv = ['yolo-ov', 'serve', '--model', {str(stand_in[0])!r}]; "
               "from yolo_ov.cli import main; main()")
    run = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True,
            encoding="utf-8", errors="replace", timeout=120)
    assert run.returncode == 5, run.stderr
    assert "pip install 'yolo-ov[serve]'" in run.stderr and "Traceback" not in run.stderr
