"""``yolo_ov.ray`` without a cluster: lazy import, the missing extra, settings, model shipping, inputs, ``--ray``."""

from __future__ import annotations

import glob
import importlib.util
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from yolo_ov.cli import app
from yolo_ov.cli._ray import optional_value_args, ray_address
from yolo_ov.errors import ConfigError, MissingExtraError
from yolo_ov.ray import BatchConfig, Scaling
from yolo_ov.ray.shipping import ModelSource, pack, unpack

runner = CliRunner()


def test_importing_yolo_ov_ray_imports_no_ray():
    code = ("import sys, yolo_ov.ray, yolo_ov.cli; "
            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.fixture
def no_ray(monkeypatch):
    """Make Ray look uninstalled (find_spec is what the extra check asks)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_extra_names_it(no_ray):
    import yolo_ov.ray

    with pytest.raises(MissingExtraError, match=r"pip install 'yolo-ov\[ray\]'") as info:
        yolo_ov.ray.predict_dataset  # noqa: B018 - attribute access loads the module
    assert info.value.extra == "ray"
    with pytest.raises(MissingExtraError, match="ray"):
        yolo_ov.ray.deployment  # noqa: B018


@pytest.mark.parametrize("command", [["predict", "x.jpg", "--ray="], ["serve", "--model", "m.xml", "--ray="]])
def test_cli_without_the_extra_exits_5_with_one_line(no_ray, tmp_path, command):
    model = tmp_path / "m.xml"
    model.write_text("<net/>", encoding="utf-8")
    args = [a.replace("m.xml", str(model)) for a in command]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 5, result.output
    assert "pip install 'yolo-ov[ray]'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("argv", "expected"), [
    (["predict", "imgs", "--ray"], ["predict", "imgs", "--ray="]),
    (["predict", "imgs", "--ray", "-q"], ["predict", "imgs", "--ray=", "-q"]),
    (["predict", "imgs", "--ray", "10.0.0.1:6379"], ["predict", "imgs", "--ray", "10.0.0.1:6379"]),
    (["serve", "-m", "m", "--ray", "--replicas", "2"], ["serve", "-m", "m", "--ray=", "--replicas", "2"]),
    (["predict", "imgs", "--ray=auto"], ["predict", "imgs", "--ray=auto"]),
    (["predict", "imgs"], ["predict", "imgs"]),
])
def test_ray_takes_an_optional_address(argv, expected):
    assert optional_value_args(argv) == expected


def test_ray_address_refuses_a_path_it_swallowed(tmp_path):
    assert ray_address("") is None
    assert ray_address("auto") == "auto"
    assert ray_address("ray://head:10001") == "ray://head:10001"
    with pytest.raises(ConfigError, match="not a cluster address; put --ray after the inputs"):
        ray_address(str(tmp_path))


def test_ray_only_options_need_ray(shared, tmp_path):
    result = runner.invoke(app, ["predict", str(shared.coco96_images[0]), "--save-parquet", str(tmp_path / "pq")],
                           catch_exceptions=False)
    assert result.exit_code == 2 and "go with --ray" in result.output


def test_unsupported_outputs_with_ray_are_refused_before_anything_starts(shared, tmp_path):
    result = runner.invoke(app, ["predict", str(shared.coco96 / "images"), "--ray=", "--save-dir", str(tmp_path)],
                           catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "--save-dir: not available with --ray" in result.output


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"concurrency": 0}, "concurrency must be"),
    ({"concurrency": (3, 2)}, "concurrency must be"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"batch_size": 65}, "larger than max_queue"),
    ({"ship": "nfs"}, "ship='nfs'"),
    ({"num_cpus": -1}, "num_cpus must be"),
])
def test_batch_config_refuses_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BatchConfig(**kwargs)


def test_batch_config_accepts_a_range():
    assert BatchConfig(concurrency=[1, 4]).concurrency == (1, 4)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"replicas": 0}, "replicas must be"),
    ({"min_replicas": 1}, "min_replicas needs max_replicas"),
    ({"min_replicas": 3, "max_replicas": 2}, "more than max_replicas"),
    ({"max_replicas": 2, "target_ongoing_requests": 0}, "target_ongoing_requests must be positive"),
])
def test_scaling_refuses_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Scaling(**kwargs)


def test_scaling_becomes_ray_serve_options():
    fixed = Scaling(replicas=3).deployment_options(default_max_ongoing=64)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["max_ongoing_requests"] == 64 and fixed["ray_actor_options"] == {"num_cpus": 1.0}
    auto = Scaling(min_replicas=0, max_replicas=4, target_ongoing_requests=6).deployment_options(default_max_ongoing=8)
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"] == {"min_replicas": 0, "max_replicas": 4, "initial_replicas": 1,
                                          "target_ongoing_requests": 6}


def test_pack_and_unpack_a_model_folder(shared, tmp_path):
    package = pack(shared.fp32_model)
    assert set(package.files) == {"yolov8n.xml", "yolov8n.bin", "metadata.yaml"}
    assert package.folder == "yolov8n_openvino_model" and package.entry == "yolov8n.xml"
    assert pack(shared.fp32_model / "yolov8n.xml").digest == package.digest  # same files, same name
    assert pack(shared.int8_model).digest != package.digest
    entry = unpack(package, tmp_path)
    assert entry == tmp_path / package.digest / "yolov8n_openvino_model" / "yolov8n.xml"
    for name, data in package.files.items():
        assert (entry.parent / name).read_bytes() == data
    entry.with_name("yolov8n.bin").write_bytes(b"changed")  # a second unpack reuses the folder, does not rewrite
    assert unpack(package, tmp_path) == entry and entry.with_name("yolov8n.bin").read_bytes() == b"changed"
    assert [p.name for p in (tmp_path / package.digest).iterdir()] == ["yolov8n_openvino_model"]  # no temp left
    assert ModelSource(package=package).resolve(tmp_path) == entry
    assert ModelSource(path=shared.fp32_model).resolve() == shared.fp32_model
    with pytest.raises(ConfigError, match="exactly one"):
        ModelSource()


def test_expand_inputs_lists_what_predict_lists(shared, tmp_path):
    from yolo_ov.io.sources import open_source
    from yolo_ov.ray.inputs import expand_inputs

    images = shared.coco96 / "images"
    listed = expand_inputs([str(images), str(tmp_path / "missing.jpg")])
    local = [item.source for item in open_source([str(images)])]
    assert [s for s, _ in listed[:-1]] == local and all(err is None for _, err in listed[:-1])
    assert listed[-1] == (str(tmp_path / "missing.jpg"), f"{tmp_path / 'missing.jpg'}: no such file or folder")
    pattern = str(images / "0000000000[0-2]*.jpg")
    assert [s for s, _ in expand_inputs(pattern)] == sorted(glob.glob(pattern)) != []
    with pytest.raises(ConfigError, match="no such file"):
        expand_inputs(str(tmp_path / "nothing.jpg"))
    with pytest.raises(ConfigError, match="live streams are not batch inputs"):
        expand_inputs(["rtsp://camera/stream"])


def test_the_rayservice_manifest_builds_the_app_it_names(shared):
    """deploy/rayservice.yaml: its serveConfigV2 names build_app, and build_app accepts its args as they are."""
    import yaml

    from tests.assets import REPO

    manifest = yaml.safe_load((REPO / "deploy" / "rayservice.yaml").read_text(encoding="utf-8"))
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    (application,) = yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"]
    module, _, name = application["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), name)
    args = dict(application["args"])
    args["model"] = args["model"].replace("/models/yolov8n_openvino_model", str(shared.fp32_model))
    bound = builder(args)._bound_deployment
    config = bound._deployment_config
    assert bound.name == "YoloOv" and config.max_ongoing_requests == args["max_queue"]
    scaling = config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_ongoing_requests) == (1, 4, 8)
    (source,) = bound.init_args[1].values()
    assert source.path == shared.fp32_model and source.package is None  # read where it is on every node
    cluster = yaml.safe_load((REPO / "deploy" / "raycluster.yaml").read_text(encoding="utf-8"))
    assert (cluster["kind"], cluster["spec"]["rayVersion"]) == ("RayCluster", manifest["spec"]["rayClusterConfig"]
                                                                ["rayVersion"])


def test_the_replica_health_check_is_the_apps_readiness():
    """Ray Serve calls check_health; raising marks the replica for replacement."""
    from types import SimpleNamespace

    from yolo_ov.ray.serving import YoloOvDeployment

    model = SimpleNamespace(ready=True)
    state = SimpleNamespace(accepting=True, models={"yolov8n": model})
    replica = SimpleNamespace(_app=SimpleNamespace(state=SimpleNamespace(yolo=state)))
    YoloOvDeployment.check_health(replica)  # ready: no exception
    model.ready = False
    with pytest.raises(RuntimeError, match=r"not ready: models \['yolov8n'\]"):
        YoloOvDeployment.check_health(replica)
    model.ready, state.accepting = True, False  # draining at shutdown
    with pytest.raises(RuntimeError, match="not accepting"):
        YoloOvDeployment.check_health(replica)
    with pytest.raises(RuntimeError, match="not built yet"):
        YoloOvDeployment.check_health(SimpleNamespace(_app=None))


def test_uris_are_listed_through_pyarrow_filesystems(shared, tmp_path):
    """``file://`` goes through the same pyarrow code as ``s3://`` (listing recursively, images and videos)."""
    from yolo_ov.ray.inputs import expand_inputs

    listed = expand_inputs(f"file://{shared.coco96 / 'images'}")
    assert [s for s, _ in listed] == [f"file://{p}" for p in shared.coco96_images]
    assert expand_inputs(f"file://{shared.coco96_images[0]}") == [(f"file://{shared.coco96_images[0]}", None)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images or videos under it"):
        expand_inputs(f"file://{tmp_path / 'empty'}")


def test_replicas_need_ray(shared):
    result = runner.invoke(app, ["serve", "--model", str(shared.fp32_model), "--replicas", "2"],
                           catch_exceptions=False)
    assert result.exit_code == 2 and "go with --ray" in result.output


def _table(rows):
    pa = pytest.importorskip("pyarrow")
    from yolo_ov.ray.actor import OUTPUT_SCHEMA

    full = [{"index": i, "source": s, "stream": None, "frame": f, "record": rec, "error": err, "width": 64,
             "height": 64, "num_detections": n, "boxes": [], "confidence": [], "class_id": [], "class_name": [],
             "node_id": "node", "worker_pid": 1} for i, s, f, rec, err, n in rows]
    return pa.Table.from_pylist(full, schema=OUTPUT_SCHEMA)


def test_the_driver_writes_each_record_once_through_its_sinks(tmp_path):
    """The Ray driver's tally writes every checked record to every sink (JSONL and a plain new one), a
    record an actor sent twice only once, and counts failures and detections."""
    import json

    pytest.importorskip("ray")
    from yolo_ov.io.sinks import JsonlSink, Sinks
    from yolo_ov.ray.batch import BatchResult, _Tally

    class Collect:
        needs_images = False

        def __init__(self):
            self.got = []

        def open(self):
            pass

        def write(self, record, image=None, *, extra=None):
            self.got.append(record.to_dict())

        def close(self):
            pass

        def describe(self):
            return ""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    a = '{"source":"a.jpg","width":64,"height":64,"detections":[]}'
    b = '{"source":"b.jpg","error":"b.jpg: broken"}'
    collect = Collect()
    result = BatchResult()
    with Sinks([JsonlSink(tmp_path / "r.jsonl"), collect]) as sinks:
        tally = _Tally(result, sinks, None)
        tally.take(_table([(0, "a.jpg", None, a, None, 2), (1, "b.jpg", None, b, "b.jpg: broken", None)]), False)
        tally.take(_table([(0, "a.jpg", None, a, None, 2)]), False)  # an actor died after doing it: sent again
    assert (tmp_path / "r.jsonl").read_text(encoding="utf-8") == a + "\n" + b + "\n"
    assert collect.got == [json.loads(a), json.loads(b)]
    assert (result.records, result.failed, result.detections, result.duplicates) == (2, 1, 2, 1)


def test_the_driver_reads_the_model_through_the_ray_module(tmp_path):
    """``--ray`` checks the model on the driver with yolo_ov.ray.driver_model (no runtime calls in the CLI):
    a missing model is one line before Ray starts."""
    from yolo_ov.errors import ModelLoadError
    from yolo_ov.ray import driver_model

    with pytest.raises(ModelLoadError) as info:
        driver_model(tmp_path / "missing_openvino_model")
    assert "missing_openvino_model" in str(info.value) and "\n" not in str(info.value)


def test_driver_model_reads_classes_and_layout(shared):
    from yolo_ov.ray import driver_model

    path, info = driver_model(shared.fp32_model)
    assert path.exists() and len(info.names) == 80 and info.task == "detect"


#: Ray's two start-up time-outs: the raylet not registering (a bare Exception) and the GCS not writing its port.
_RAYLET_LATE = Exception("The current node timed out during startup. This could happen because ...")
_GCS_LATE = TimeoutError("Timed out waiting for file /tmp/ray/session_x/gcs_server_port_abc")
#: The variable Ray reads its GCS port-file wait from.
_GCS_WAIT = "RAY_gcs_server_port_wait_time_s"


class _StartupTimeout:
    """``ray.init`` failing as Ray does when a local node does not come up in time, ``fails`` times; records the
    GCS wait each call saw."""

    def __init__(self, fails: int, error: Exception) -> None:
        self.fails, self.error, self.calls, self.shutdowns, self.gcs_waits = fails, error, 0, 0, []

    def init(self, **kwargs) -> None:
        import os

        self.calls += 1
        self.gcs_waits.append(os.environ.get(_GCS_WAIT))
        if self.calls <= self.fails:
            raise self.error

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.mark.parametrize("error", [_RAYLET_LATE, _GCS_LATE], ids=["raylet", "gcs"])
@pytest.mark.parametrize("fails", [1, 2])
def test_a_local_start_that_times_out_is_tried_once_more_then_one_line(monkeypatch, fails, error):
    pytest.importorskip("ray")
    import ray

    from yolo_ov.ray import connect

    monkeypatch.delenv(_GCS_WAIT, raising=False)
    fake = _StartupTimeout(fails, error)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake.init)
    monkeypatch.setattr(ray, "shutdown", fake.shutdown)
    if fails == 1:
        assert connect("local", num_cpus=1, quiet=False) is True
        assert (fake.calls, fake.shutdowns) == (2, 1)
    else:
        with pytest.raises(ConfigError, match=f"did not start: {str(error)[:20]}") as info:
            connect("local", num_cpus=1, quiet=False)
        assert "\n" not in str(info.value) and (fake.calls, fake.shutdowns) == (2, 2)
    # The second start gives the GCS longer than Ray's 30 s; the environment is as it was afterwards.
    assert fake.gcs_waits == [None, "90"]
    import os

    assert _GCS_WAIT not in os.environ


def test_a_running_cluster_that_does_not_answer_is_one_line_without_retries(monkeypatch):
    pytest.importorskip("ray")
    import ray

    from yolo_ov.ray import connect

    fake = _StartupTimeout(5, ConnectionError("Could not find any running Ray instance.\nPlease specify ..."))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake.init)
    monkeypatch.setattr(ray, "shutdown", fake.shutdown)
    with pytest.raises(ConfigError, match=r"the Ray cluster at '10\.0\.0\.9:6379': Could not") as info:
        connect("10.0.0.9:6379", quiet=False)
    assert "\n" not in str(info.value) and fake.calls == 1
