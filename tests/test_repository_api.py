"""Triton's repository API and versioned requests over REST and gRPC, on the fake engine (fast tier).

A repository of stand-in version folders (``tests.test_repository.add_version``) is served by a real uvicorn
and the gRPC transport on free 127.0.0.1 ports (:class:`tests.grpc_support.Served`); the calls are made with
Triton's own clients (``tritonclient.http`` and ``tritonclient.grpc``), so the paths, bodies and status codes
are the ones Triton tooling sends and expects.
"""

from __future__ import annotations

import httpx
import pytest

from tests.grpc_support import Served, assert_fake_outputs, bytes_input, png
from tests.test_repository import add_version, factory
from yolo_ov.serve import ServeConfig, create_app

grpcclient = pytest.importorskip("tritonclient.grpc")
http = pytest.importorskip("tritonclient.http")
pytest.importorskip("fastapi")


def serve(root, **settings) -> Served:
    config = ServeConfig(models=(), model_repository=root, repository_poll_s=0, timeout_s=30, **settings)
    return Served(create_app(config, detectors=factory()))


def refused(call, status: str, *words: str) -> str:
    """A tritonclient call that must fail with ``status`` (HTTP code or gRPC status name) and one line."""
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as info:
        call()
    message = info.value.message()
    assert str(info.value.status()) in (status, f"StatusCode.{status}"), (info.value.status(), message)
    assert "\n" not in message and all(w in message for w in words), message
    return message


@pytest.fixture
def repo(tmp_path):
    add_version(tmp_path, "det", 1)
    add_version(tmp_path, "det", 2)
    (tmp_path / "det" / "config.yaml").write_text("version_policy: {all: {}}", encoding="utf-8")
    add_version(tmp_path, "seg", 3)
    add_version(tmp_path, "bad", 1, broken=True)
    return tmp_path


def test_versions_in_urls_and_answers_over_rest_and_grpc(repo):
    with serve(repo) as s:
        rest = http.InferenceServerClient(s.url.removeprefix("http://"))
        with grpcclient.InferenceServerClient(s.grpc) as g:
            for client, module in ((rest, http), (g, grpcclient)):
                for version, expected in (("", "2"), ("1", "1"), ("2", "2")):  # no version: the highest serving
                    result = client.infer("det", [bytes_input(module, [png(40)])], model_version=version)
                    assert_fake_outputs(result, [40])
                    assert result.get_response(**({"as_json": True} if module is grpcclient else {}))[
                        "model_version"] == expected
                assert client.is_model_ready("det", "1") and client.is_model_ready("seg", "3")
            refused(lambda: rest.infer("det", [bytes_input(http, [png(1)])], model_version="7"), "404",
                    "model 'det' has no version '7'; it has versions ['1', '2']")
            refused(lambda: g.infer("det", [bytes_input(grpcclient, [png(1)])], model_version="7"), "NOT_FOUND",
                    "has no version '7'")
            refused(lambda: g.get_model_metadata("seg", "1"), "NOT_FOUND", "it has version '3'")
            assert g.get_model_metadata("det", "1", as_json=True)["versions"] == ["1", "2"]  # all, as Triton
            assert rest.get_model_metadata("seg")["versions"] == ["3"]
        for query, expected in ("", "2"), ("&version=1", "1"):  # /predict: its record, the version in headers
            answer = httpx.post(f"{s.url}/predict?model=det{query}", content=png(40))
            assert answer.status_code == 200 and answer.json()["detections"]
            assert (answer.headers["X-Model-Name"], answer.headers["X-Model-Version"]) == ("det", expected)
        stats = httpx.get(f"{s.url}/v2/models/det/versions/1/stats").json()["model_stats"]
        assert [(m["name"], m["version"], m["inference_count"]) for m in stats] == [("det", "1", 3)]
        metrics = httpx.get(f"{s.url}/metrics").text
        for version, count in (("1", 1), ("2", 2)):  # per transport: the version named, and the default
            for endpoint in ("kserve", "grpc"):
                assert (f'yolo_ov_requests_success_total{{endpoint="{endpoint}",name="det",version="{version}"}} '
                        f'{count}.0') in metrics
            assert f'yolo_ov_requests_success_total{{endpoint="predict",name="det",version="{version}"}} 1.0' in metrics
        assert 'yolo_ov_model_load_failures_total{name="bad",version="1"} 1.0' in metrics


def test_index_over_rest_and_grpc(repo):
    with serve(repo) as s:
        want = [("bad", "1", "UNAVAILABLE"), ("det", "1", "READY"), ("det", "2", "READY"), ("seg", "3", "READY")]
        rest = http.InferenceServerClient(s.url.removeprefix("http://"))
        got = rest.get_model_repository_index()
        assert [(e["name"], e["version"], e["state"]) for e in got] == want
        bad = got[0]
        assert "truncated weights" in bad["reason"] and "\n" not in bad["reason"]
        with grpcclient.InferenceServerClient(s.grpc) as g:
            index = g.get_model_repository_index(as_json=True)["models"]
            assert [(e["name"], e["version"], e["state"]) for e in index] == want
            assert index[0]["reason"] == bad["reason"]
        ready = httpx.post(f"{s.url}/v2/repository/index", json={"ready": True}).json()
        assert [e["name"] for e in ready] == ["det", "det", "seg"]
        answer = httpx.post(f"{s.url}/v2/repository/index", json={"ready": "yes"})
        assert answer.status_code == 400 and "'ready' must be true or false" in answer.json()["error"]


def test_load_and_unload_are_refused_unless_explicit_as_triton(repo):
    with serve(repo) as s:
        rest = http.InferenceServerClient(s.url.removeprefix("http://"))
        for call in (rest.load_model, rest.unload_model):
            refused(lambda c=call: c("det"), "503", "explicit model load / unload is not allowed if polling is enabled")
        with grpcclient.InferenceServerClient(s.grpc) as g:
            for call in (g.load_model, g.unload_model):
                refused(lambda c=call: c("det"), "UNAVAILABLE", "explicit model load / unload is not allowed")
        assert s.state.model("det").ready  # nothing changed


def test_explicit_mode_over_rest_and_grpc(repo):
    with serve(repo, model_control="explicit", load_models=("seg",)) as s:
        rest = http.InferenceServerClient(s.url.removeprefix("http://"))
        ready = httpx.post(f"{s.url}/v2/repository/index", json={"ready": True}).json()
        assert [(e["name"], e["state"]) for e in ready] == [("seg", "READY")]
        refused(lambda: rest.infer("det", [bytes_input(http, [png(3)])]), "404", "unknown model 'det'")
        rest.load_model("det")
        assert rest.is_model_ready("det", "1") and rest.is_model_ready("det", "2")
        refused(lambda: rest.load_model("nope"), "404", "no model 'nope' in the repository")
        refused(lambda: rest.load_model("bad"), "400", "failed to load 'bad': version 1:", "truncated weights")
        with grpcclient.InferenceServerClient(s.grpc) as g:
            g.unload_model("det")
            assert "det" not in s.state.versions
            refused(lambda: g.infer("det", [bytes_input(grpcclient, [png(3)])]), "NOT_FOUND", "unknown model 'det'")
            refused(lambda: g.load_model("nope"), "NOT_FOUND", "no model 'nope' in the repository")
            refused(lambda: g.unload_model("nope"), "NOT_FOUND", "no model 'nope'")
            g.load_model("det")
            result = g.infer("det", [bytes_input(grpcclient, [png(9)])], model_version="1")
            assert_fake_outputs(result, [9])
            assert result.get_response(as_json=True)["model_version"] == "1"
        rest.unload_model("seg")
        ready = httpx.post(f"{s.url}/v2/repository/index", json={"ready": True}).json()
        assert [e["name"] for e in ready] == ["det", "det"]


def test_index_without_a_repository_lists_the_models_given(tmp_path):
    from tests.serve_support import fake_detectors, fake_models

    config = ServeConfig(models=fake_models(tmp_path, "a", "b"))
    with Served(create_app(config, detectors=fake_detectors())) as s:
        got = httpx.post(f"{s.url}/v2/repository/index").json()
        assert got == [{"name": "a", "version": "1", "state": "READY", "reason": ""},
                       {"name": "b", "version": "1", "state": "READY", "reason": ""}]
        answer = httpx.post(f"{s.url}/v2/repository/models/a/unload")
        assert answer.status_code == 503 and "not allowed" in answer.json()["error"]
