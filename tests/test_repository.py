"""The model repository without a model (fast tier): layout, version policies, the stable-file check, and the
reloader's load / swap / retire on fake detectors.

Each version folder holds a stand-in ``model.xml``; the factory opens every version as the fake end-to-end
detector (``tests.fakes``) and refuses a folder holding a file named ``broken`` as a truncated IR would be
refused, so the reloader's decisions (what serves, what is retired when, what is reported) are checked in
milliseconds. The same paths on real IR folders are in ``test_repository_live.py``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.serve_support import ServerProcess, fake_detectors, metric_value
from yolo_ov.errors import ConfigError, ModelLoadError
from yolo_ov.serve import ServeConfig
from yolo_ov.serve.errors import ErrorCode, ServeError
from yolo_ov.serve.repository import StableFiles, VersionPolicy, fingerprint, model_path, policy_from, read_policy, scan
from yolo_ov.serve.state import load_models

pytest.importorskip("prometheus_client")


def add_version(root: Path, name: str, version: int, *, broken: bool = False, kind: str = "xml") -> Path:
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"model.{kind}").write_text(f"<net version='{version}'/>", encoding="utf-8")
    if broken:
        (folder / "broken").write_text("truncated", encoding="utf-8")
    return folder


def factory(opened: list | None = None):
    fake = fake_detectors(opened=opened)

    def open_detector(spec, config):
        if (Path(spec.path) / "broken").exists():
            raise ModelLoadError(f"{spec.path}: cannot read the model (truncated weights): bin is too short")
        return fake(spec, config)

    return open_detector


def start(root: Path, opened: list | None = None, **settings):
    config = ServeConfig(models=(), model_repository=root, repository_poll_s=0, **settings)
    return load_models(config, open_detector=factory(opened))


def metric(state, metric_name: str, /, **labels: str) -> float:
    return metric_value(state.metrics.render().decode(), metric_name, **labels)


# -- policies and the layout ------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "available", "served"), [
    (VersionPolicy(), [1, 2, 3], (3,)),
    (VersionPolicy(kind="latest", num_versions=2), [3, 1, 2], (2, 3)),
    (VersionPolicy(kind="latest", num_versions=5), [1, 2], (1, 2)),
    (VersionPolicy(kind="specific", versions=(1, 3, 9)), [1, 2, 3], (1, 3)),
    (VersionPolicy(kind="all"), [4, 1], (1, 4)),
    (VersionPolicy(), [], ()),
])
def test_policy_selects_versions(policy, available, served):
    assert policy.select(available) == served


@pytest.mark.parametrize(("text", "words"), [
    ("version_policy: {latest: {num_versions: 0}}", "num_versions must be a positive integer"),
    ("version_policy: {specific: {versions: []}}", "versions must be a list of positive integers"),
    ("version_policy: {newest: {}}", "use latest, specific or all"),
    ("version_policy: [1, 2]", "expected one of"),
    ("version_policy: {latest: {}}\n  bad: [", "not readable YAML"),
])
def test_bad_config_names_the_file_and_the_fix(tmp_path, text, words):
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_policy(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "config.yaml") in message and words in message and "\n" not in message


def test_config_file_and_default_policy(tmp_path):
    assert read_policy(tmp_path) == VersionPolicy()
    (tmp_path / "config.yaml").write_text("version_policy:\n  specific:\n    versions: [3, 1]\n", encoding="utf-8")
    assert read_policy(tmp_path) == VersionPolicy(kind="specific", versions=(1, 3))
    assert policy_from({"all": {}}).describe() == {"all": {}}


def test_scan_reads_versions_and_skips_what_is_not_one(tmp_path):
    add_version(tmp_path, "det", 1)
    onnx = add_version(tmp_path, "det", 2, kind="onnx")
    (tmp_path / "det" / "notes").mkdir()
    (tmp_path / "det" / "0").mkdir()
    (tmp_path / "det" / "3").mkdir()  # empty: present, with the reason it cannot load
    (tmp_path / ".hidden" / "1").mkdir(parents=True)
    found = scan(tmp_path)
    assert list(found) == ["det"]
    versions = found["det"].versions
    assert sorted(versions) == [1, 2, 3]
    assert versions[1].model_path == tmp_path / "det" / "1"  # an IR folder: the Detector opens the folder
    assert versions[2].model_path == onnx / "model.onnx"
    assert versions[3].model_path is None and "no model file" in versions[3].problem
    assert model_path(tmp_path / "det" / "1") == (tmp_path / "det" / "1", None)


def test_stable_files_wait_for_two_equal_polls(tmp_path):
    folder = add_version(tmp_path, "det", 1)
    stable = StableFiles()
    first = fingerprint(folder)
    assert not stable.stable("det", 1, first)  # first sight: maybe still being copied
    assert stable.stable("det", 1, fingerprint(folder))
    (folder / "model.bin").write_bytes(b"x" * 10)  # a file grows: wait again
    assert not stable.stable("det", 1, fingerprint(folder))
    assert stable.stable("det", 1, fingerprint(folder))
    stable.forget(set())
    assert not stable.stable("det", 1, fingerprint(folder))


def test_settings_refuse_mixed_and_bad_modes(tmp_path):
    from tests.serve_support import fake_models

    with pytest.raises(ConfigError, match="exclude each other"):
        ServeConfig(models=fake_models(tmp_path), model_repository=tmp_path)
    with pytest.raises(ConfigError, match="model_control 'manual'"):
        ServeConfig(models=(), model_repository=tmp_path, model_control="manual")
    with pytest.raises(ConfigError, match="--load-model goes with --model-control explicit"):
        ServeConfig(models=(), model_repository=tmp_path, load_models=("det",))
    with pytest.raises(ModelLoadError, match="no such folder"):
        ServeConfig(models=(), model_repository=tmp_path / "missing")
    with pytest.raises(ConfigError, match="at least one model"):
        ServeConfig(models=())


# -- the reloader on fake detectors --------------------------------------------------------------------

def test_new_version_waits_for_stable_files_then_replaces_the_old(tmp_path):
    add_version(tmp_path, "det", 1)
    state = start(tmp_path)
    try:
        v1 = state.model("det")
        assert v1.version == "1" and state.index() == [{"name": "det", "version": "1", "state": "READY", "reason": ""}]
        add_version(tmp_path, "det", 2)
        state.repository.sync()  # first sight of version 2: not loaded yet
        assert state.model("det") is v1
        assert {e["version"]: e["state"] for e in state.index()} == {"1": "READY", "2": "LOADING"}
        state.repository.sync()  # unchanged since: loaded, swapped in, version 1 retired (latest 1)
        assert state.model("det").version == "2" and sorted(state.versions["det"]) == ["2"]
        assert not v1.ready  # closed
        with pytest.raises(ServeError) as info:
            state.model("det", "1")
        assert info.value.code is ErrorCode.NOT_FOUND and "has no version '1'; it has version '2'" in info.value.message
        assert metric(state, "yolo_ov_model_loads_total", name="det", version="2") == 1
        assert metric(state, "yolo_ov_model_unloads_total", name="det", version="1") == 1
        assert metric(state, "yolo_ov_streams", name="det", version="1") == 0  # its gauges are gone
        assert {e["version"]: (e["state"], e["reason"]) for e in state.index()} == {
            "1": ("UNAVAILABLE", "not served: version policy {'latest': {'num_versions': 1}}"), "2": ("READY", "")}
    finally:
        state.close()


def test_corrupt_version_is_reported_and_the_serving_one_stays(tmp_path):
    add_version(tmp_path, "det", 1)
    state = start(tmp_path)
    try:
        v1 = state.model("det")
        broken = add_version(tmp_path, "det", 2, broken=True)
        state.repository.sync()
        state.repository.sync()
        state.repository.sync()  # tried once per change of its files, not at every poll
        assert state.model("det") is v1 and v1.ready
        entry = next(e for e in state.index() if e["version"] == "2")
        assert entry["state"] == "UNAVAILABLE" and "truncated weights" in entry["reason"]
        assert metric(state, "yolo_ov_model_load_failures_total", name="det", version="2") == 1
        (broken / "broken").unlink()  # fixed: loads at the next stable poll
        state.repository.sync()
        state.repository.sync()
        assert state.model("det").version == "2" and not v1.ready
        assert next(e for e in state.index() if e["version"] == "2")["state"] == "READY"
    finally:
        state.close()


def test_retiring_version_finishes_requests_routed_to_it(tmp_path):
    add_version(tmp_path, "det", 1)
    state = start(tmp_path)
    try:
        held = state.acquire("det")  # a request routed to version 1, not answered yet
        add_version(tmp_path, "det", 2)
        state.repository.sync()
        swap = threading.Thread(target=state.repository.sync)
        swap.start()
        deadline = time.monotonic() + 10
        while state.model("det").version != "2" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state.model("det").version == "2"  # new requests go to version 2 at once
        time.sleep(0.2)
        assert held.ready and swap.is_alive()  # version 1 waits for its request
        assert next(e for e in state.index() if e["version"] == "1")["state"] == "UNLOADING"
        held.release()
        swap.join(10)
        assert not swap.is_alive() and not held.ready
    finally:
        state.close()


def test_changed_files_reload_as_a_new_instance(tmp_path):
    folder = add_version(tmp_path, "det", 1)
    state = start(tmp_path)
    try:
        before = state.model("det")
        (folder / "metadata.yaml").write_text("names: {0: a}\n", encoding="utf-8")
        state.repository.sync()
        assert state.model("det") is before  # changed, not yet stable
        state.repository.sync()
        after = state.model("det")
        assert after is not before and after.version == "1" and after.ready and not before.ready
        assert metric(state, "yolo_ov_model_reloads_total", name="det", version="1") == 1
        assert metric(state, "yolo_ov_model_unloads_total", name="det", version="1") == 0
    finally:
        state.close()


def test_policy_serves_several_versions_routed_by_number(tmp_path):
    for v in (1, 2, 3):
        add_version(tmp_path, "det", v)
    (tmp_path / "det" / "config.yaml").write_text("version_policy: {specific: {versions: [1, 2]}}",
                                                  encoding="utf-8")
    add_version(tmp_path, "other", 4)
    state = start(tmp_path)
    try:
        assert sorted(state.versions["det"]) == ["1", "2"] and state.model("det").version == "2"
        assert state.model("det", "1").version == "1" and state.model("other").version == "4"
        (tmp_path / "det" / "config.yaml").write_text("version_policy: {all: {}}", encoding="utf-8")
        state.repository.sync()
        state.repository.sync()
        assert sorted(state.versions["det"]) == ["1", "2", "3"]
        import shutil

        shutil.rmtree(tmp_path / "other")  # a model removed whole
        state.repository.sync()
        assert "other" not in state.versions and "other" not in state.models
    finally:
        state.close()


def test_a_removed_version_folder_stops_serving(tmp_path):
    import shutil

    add_version(tmp_path, "det", 1)
    add_version(tmp_path, "det", 2)
    (tmp_path / "det" / "config.yaml").write_text("version_policy: {all: {}}", encoding="utf-8")
    state = start(tmp_path)
    try:
        v2 = state.model("det", "2")
        shutil.rmtree(tmp_path / "det" / "2")
        state.repository.sync()
        assert sorted(state.versions["det"]) == ["1"] and not v2.ready
        assert [e["version"] for e in state.index()] == ["1"]
    finally:
        state.close()


def test_explicit_mode_loads_only_through_the_api(tmp_path):
    add_version(tmp_path, "det", 1)
    add_version(tmp_path, "seg", 1)
    add_version(tmp_path, "bad", 1, broken=True)
    state = start(tmp_path, model_control="explicit", load_models=("seg",))
    try:
        assert list(state.versions) == ["seg"]
        assert {(e["name"], e["state"], e["reason"]) for e in state.index()} == {
            ("bad", "UNAVAILABLE", "unloaded"), ("det", "UNAVAILABLE", "unloaded"), ("seg", "READY", "")}
        state.load("det")
        assert state.model("det").version == "1"
        with pytest.raises(ServeError) as info:
            state.load("bad")
        assert info.value.code is ErrorCode.INVALID_ARGUMENT
        assert "failed to load 'bad': version 1:" in info.value.message
        with pytest.raises(ServeError) as info:
            state.load("nope")
        assert info.value.code is ErrorCode.NOT_FOUND and "no model 'nope' in the repository" in info.value.message
        state.unload("det")
        assert "det" not in state.versions
        with pytest.raises(ServeError) as info:
            state.unload("nope")
        assert info.value.code is ErrorCode.NOT_FOUND
        assert [e["name"] for e in state.index(ready_only=True)] == ["seg"]
    finally:
        state.close()


def test_load_and_unload_are_refused_unless_explicit(tmp_path):
    add_version(tmp_path, "det", 1)
    state = start(tmp_path)
    try:
        for call in (state.load, state.unload):
            with pytest.raises(ServeError) as info:
                call("det")
            assert info.value.code is ErrorCode.UNAVAILABLE  # as Triton answers
            assert info.value.message.startswith("explicit model load / unload is not allowed if polling is enabled")
    finally:
        state.close()


def test_poll_thread_picks_up_a_new_version(tmp_path):
    add_version(tmp_path, "det", 1)
    config = ServeConfig(models=(), model_repository=tmp_path, repository_poll_s=0.05)
    state = load_models(config, open_detector=factory())
    try:
        add_version(tmp_path, "det", 2)
        deadline = time.monotonic() + 10
        while state.model("det").version != "2" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state.model("det").version == "2"
    finally:
        state.close()
    assert not state.repository._thread.is_alive()


# -- the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "code", "words"), [
    (["--model", "{root}/det/1"], 2, "--model and --model-repository exclude each other"),
    (["--model-control", "manual"], 2, "model_control 'manual': use one of none, poll, explicit"),
    (["--load-model", "det"], 2, "--load-model goes with --model-control explicit"),
    (["--model-control", "explicit", "--load-model", "nope"], 2,
     "--load-model nope: no model 'nope' in the repository"),
])
def test_cli_refuses_bad_repository_options_in_one_line(tmp_path, monkeypatch, extra, code, words):
    from typer.testing import CliRunner

    from yolo_ov.cli import app

    monkeypatch.setattr("yolo_ov.cli.serve._listen", lambda host, port: _NoSocket())
    add_version(tmp_path, "det", 1)
    args = ["serve", "--model-repository", str(tmp_path), "--port", "0",
            *[a.format(root=tmp_path) for a in extra]]
    result = CliRunner().invoke(app, args)
    output = result.output.strip()
    assert result.exit_code == code, output
    assert words in output and "Traceback" not in output, output


class _NoSocket:
    def getsockname(self):
        return ("127.0.0.1", 0)

    def close(self) -> None:
        pass


def test_cli_help_names_the_repository_options():
    from typer.testing import CliRunner

    from yolo_ov.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--model-repository", "--repository-poll-s", "--model-control", "--load-model"):
        assert option in result.output


@pytest.mark.parametrize(("extra", "then"), [
    ([], "it is read every 2 s, so a version copied in is served then"),
    (["--model-control", "explicit"], "load one with POST /v2/repository/models/NAME/load"),
    (["--model-control", "none"], "restart the server after adding one (--model-control none reads it at start only)"),
])
def test_an_empty_repository_serves_and_says_what_to_do(tmp_path, extra, then):
    """As Triton, an empty repository is no error; the one note says what a model folder is and how it gets in."""
    root = tmp_path / "models"
    root.mkdir()
    proc = ServerProcess(["--model-repository", str(root), *extra], cache_dir=tmp_path / "cache").start()
    try:
        notes = [line for line in proc.output().splitlines() if line.startswith("note: no model is serving")]
        assert len(notes) == 1 and f"{root}/NAME/1/" in notes[0] and notes[0].endswith(then), proc.output()
    finally:
        assert proc.stop() == 0, proc.output()
