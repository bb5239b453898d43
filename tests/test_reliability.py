"""Reliability as a user meets it (issue 8): signals, full disks, unwritable outputs, class filters,
broken models, and what the summary says.

Where the behaviour belongs to the process (signals, exit codes, what reaches
stderr) the real ``yolo-ov`` runs in a subprocess on the real shared models
and data; the rest goes through Typer's runner in-process. Subprocess waits
are bounded by timeouts; no test asserts a duration.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.tiny_models import raw_head_model, save
from yolo_ov.cli import app
from yolo_ov.errors import OutputError, openvino_message
from yolo_ov.io.sinks import JsonlSink, VideoSink, check_output_dir, check_output_file
from yolo_ov.results import Failure

CLI = [sys.executable, "-m", "yolo_ov"]
SIGNALS = [
    pytest.param(signal.SIGTERM, 143, "terminated (SIGTERM)", id="SIGTERM"),
    pytest.param(signal.SIGINT, 130, "interrupted", id="SIGINT"),
]


class _Proc:
    """A running ``yolo-ov`` whose stderr is collected as it comes (so a pipe never fills up)."""

    def __init__(self, args: list[object]) -> None:
        self.popen = subprocess.Popen(
            [*CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                    encoding="utf-8", errors="replace"
        )
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr += line

    def finish(self, timeout: float = 90.0) -> int:
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"yolo-ov did not exit within {timeout} s; stderr so far:\n{self.stderr}")
        self._reader.join(timeout=10)
        return self.popen.returncode


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _run(args: list[object], *, prefix: list[str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or CLI), *map(str, args)], capture_output=True, text=True,
            encoding="utf-8", errors="replace", timeout=timeout,
                          check=False)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# -- item 3: SIGTERM and SIGINT stop cleanly, with every completed record on disk -----------------

@pytest.mark.parametrize(("signum", "code", "word"), SIGNALS)
def test_signal_during_a_folder_run_keeps_every_completed_image(shared, tmp_path, signum, code, word):
    repeats = 20  # 1,920 images: the run is still going when the signal comes
    out, coco, vis = tmp_path / "out" / "o.jsonl", tmp_path / "out" / "c.json", tmp_path / "vis"
    proc = _Proc(["predict", *[shared.coco96 / "images"] * repeats, "--model", shared.fp32_model,
                  "--save-json", out, "--save-coco", coco, "--save-dir", vis, "-q"])
    started = _wait_for(lambda: _line_count(out) >= 30, timeout=180)
    proc.popen.send_signal(signum)
    rc = proc.finish()
    assert started, f"no 30 JSONL lines within 180 s:\n{proc.stderr}"
    assert rc == code, proc.stderr
    assert word in proc.stderr and "Traceback" not in proc.stderr
    data = out.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.decode().splitlines()]
    expected = [str(p) for p in shared.coco96_images] * repeats
    assert 30 <= len(records) < len(expected)
    assert [r["source"] for r in records] == expected[: len(records)]  # in order, no gap, no half record
    assert all("detections" in r for r in records)
    assert f"stopped: {len(records)} images" in proc.stderr  # the summary says what is on disk
    assert f"JSONL: {out} ({len(records)} lines)" in proc.stderr
    entries = json.loads(coco.read_text(encoding="utf-8"))  # the array was closed: valid JSON
    assert len(entries) == sum(len(r["detections"]) for r in records)
    assert len(list(vis.iterdir())) == len(records)  # one complete annotated image per record
    assert all(cv2.imread(str(p)) is not None for p in sorted(vis.iterdir())[-3:])
    assert sorted(p.name for p in out.parent.iterdir()) == ["c.json", "o.jsonl"]  # nothing temporary left


@pytest.mark.parametrize(("signum", "code", "word"), SIGNALS)
def test_signal_during_a_video_run_leaves_a_playable_video(shared, tmp_path, signum, code, word):
    clip = shared.video("walking_720p.mp4")  # 341 frames at 1280x720
    jsonl, video = tmp_path / "v.jsonl", tmp_path / "v.mp4"
    proc = _Proc(["predict", clip, "--model", shared.int8_model, "--save-json", jsonl, "--save-video", video, "-q"])
    started = _wait_for(lambda: _line_count(jsonl) >= 15, timeout=180)
    proc.popen.send_signal(signum)
    rc = proc.finish()
    assert started, f"no 15 JSONL lines within 180 s:\n{proc.stderr}"
    assert rc == code, proc.stderr
    assert word in proc.stderr and "Traceback" not in proc.stderr
    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert 15 <= len(records) < 341
    assert [(r["stream"], r["frame"]) for r in records] == [(0, k) for k in range(len(records))]
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened(), "the interrupted mp4 does not open"
    decoded = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (720, 1280, 3)
        decoded += 1
    cap.release()
    assert decoded == len(records)  # a record goes to every output or to none
    assert f"stopped: {decoded} frames" in proc.stderr
    assert f"JSONL: {jsonl} ({decoded} lines); video: {video} ({decoded} frames)" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.jsonl", "v.mp4"]


def test_sigterm_during_an_int8_export_leaves_nothing_behind(shared, tmp_path):
    out = tmp_path / "x_int8_openvino_model"
    proc = _Proc(["export", shared.fp32_model, "--precision", "int8", "--data", shared.coco96, "-o", out])
    started = _wait_for(lambda: any(tmp_path.glob(".x_int8_openvino_model.*.tmp")), timeout=120)
    time.sleep(3)  # a few seconds in: NNCF is reading and calibrating
    proc.popen.send_signal(signal.SIGTERM)
    rc = proc.finish()
    assert started, f"the export never created its temporary folder:\n{proc.stderr}"
    assert rc == 143, proc.stderr  # 0 would mean the export finished before the signal
    assert "terminated (SIGTERM)" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


# -- item 4: write failures ----------------------------------------------------------------------

@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_full_disk_is_one_line_and_exit_2(shared):
    proc = _run(["predict", *shared.coco96_images[:2], "--model", shared.fp32_model, "--save-json", "/dev/full"])
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc.stderr)
    assert "/dev/full" in line and os.strerror(28) in line  # ENOSPC: "No space left on device"


def test_a_write_that_fails_midway_leaves_only_whole_records(shared, tmp_path):
    """RLIMIT_FSIZE makes the kernel cut a write short at the limit, then refuse (EFBIG), as a filling disk does."""
    out = tmp_path / "o.jsonl"
    limit = 3000
    launcher = [sys.executable, "-c",
                "import os, resource, sys; "
                f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
                "os.execv(sys.executable, [sys.executable, '-m', 'yolo_ov', *sys.argv[1:]])"]
    proc = _run(["predict", *shared.coco96_images[:12], "--model", shared.fp32_model, "--save-json", out,
                 "--no-cache", "-q"], prefix=launcher)
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc.stderr)
    assert str(out) in line and os.strerror(27) in line  # EFBIG: "File too large"
    data = out.read_bytes()
    assert 0 < len(data) <= limit and data.endswith(b"\n")
    records = [json.loads(x) for x in data.decode().splitlines()]
    assert [r["source"] for r in records] == [str(p) for p in shared.coco96_images[: len(records)]]


def test_jsonl_sink_rolls_back_a_failed_write(tmp_path, monkeypatch):
    sink = JsonlSink(tmp_path / "o.jsonl")
    good = Failure("a.jpg", "broken")
    sink.write(good)
    real_write = sink._file._fh.write  # type: ignore[union-attr]
    calls = {"n": 0}

    def short_then_full(data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(bytes(data)[:7])  # a short write: part of the record reaches the file
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(sink._file._fh, "write", short_then_full, raising=False)  # type: ignore[union-attr]
    with pytest.raises(OutputError, match="No space left on device"):
        sink.write(Failure("b.jpg", "broken too"))
    monkeypatch.undo()
    sink.write(Failure("c.jpg", "third"))
    sink.close()
    lines = (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["source"] for x in lines] == ["a.jpg", "c.jpg"]
    assert sink.count == 2


# -- item 6: every output location is checked before any work --------------------------------------

@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write into, root included (chattr +i as root, chmod 555 otherwise)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr +i: no way to make a folder read-only here")
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if as_root:
            subprocess.run([shutil.which("chattr") or "chattr", "-i", str(folder)], check=False)
        else:
            folder.chmod(0o755)


def _reason_writing_into(folder: Path) -> str:
    try:
        (folder / "probe").touch()
    except OSError as exc:
        return exc.strerror
    pytest.fail(f"{folder} is writable")


@pytest.mark.parametrize(
    ("option", "name"),
    [("--save-video", "out.mp4"), ("--save-json", "o.jsonl"), ("--save-coco", "c.json"), ("--save-dir", "vis")],
)
def test_unwritable_output_fails_before_the_model_loads(shared, read_only_dir, option, name):
    target = read_only_dir / name
    reason = _reason_writing_into(read_only_dir)
    # A model that does not exist: exit 2 naming the output (not 3 for the model) proves the order.
    proc = _run(["predict", shared.coco96_images[0], "--model", "/nonexistent/model", option, target])
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc.stderr)
    assert str(target) in line and reason in line
    assert "OpenCV" not in line


def test_unwritable_export_and_val_outputs_are_one_line_exit_2(shared, read_only_dir):
    reason = _reason_writing_into(read_only_dir)
    export = _run(["export", shared.fp32_model, "--precision", "fp16", "-o", read_only_dir / "x_openvino_model"])
    assert export.returncode == 2, export.stderr
    assert str(read_only_dir / "x_openvino_model") in _one_line(export.stderr) and reason in export.stderr
    val = _run(["val", shared.coco96, "--model", "/nonexistent/model", "--json", read_only_dir / "v.json"])
    assert val.returncode == 2, val.stderr  # checked before the dataset and the model
    assert str(read_only_dir / "v.json") in _one_line(val.stderr) and reason in val.stderr


def test_output_checks_name_the_reason(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path, "JSONL output")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="is a file"):
        check_output_dir(tmp_path / "file", "annotated images")
    with pytest.raises(OutputError, match="file is a file, not a folder"):
        check_output_file(tmp_path / "file" / "sub" / "o.jsonl")
    existing = tmp_path / "keep.jsonl"
    existing.write_text("old\n", encoding="utf-8")
    check_output_file(existing)
    assert existing.read_text(encoding="utf-8") == "old\n"  # checked, not truncated
    assert check_output_file(tmp_path / "new" / "o.jsonl").parent.is_dir()
    assert not (tmp_path / "new" / "o.jsonl").exists()
    assert VideoSink.check(tmp_path / "v.avi") == tmp_path / "v.avi"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "keep.jsonl", "new"]


# -- item 5: OpenVINO's useful line is kept ------------------------------------------------------

def test_truncated_bin_names_the_cause(shared, tmp_path):
    model = tmp_path / "broken_openvino_model"
    model.mkdir()
    for name in ("yolov8n.xml", "metadata.yaml"):
        shutil.copy(shared.fp32_model / name, model / name)
    weights = (shared.fp32_model / "yolov8n.bin").read_bytes()
    (model / "yolov8n.bin").write_bytes(weights[: len(weights) // 2])
    proc = _run(["info", "--model", model, "--no-cache"])
    assert proc.returncode == 3, proc.stderr
    line = _one_line(proc.stderr)
    assert "Incorrect weights in bin file" in line and "core.cpp" not in line
    exported = _run(["export", model, "--precision", "fp16", "-o", tmp_path / "out_openvino_model"])
    assert exported.returncode == 3, exported.stderr
    assert "Incorrect weights in bin file" in _one_line(exported.stderr)


def test_openvino_message_skips_the_cpp_boilerplate():
    exc = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\n"
        "Check 'is_valid_weights_range(m_weights_provider->size(), offset, size)' failed at "
        "src/core/xml_util/src/xml_deserialize_util.cpp:900:\nIncorrect weights in bin file!\n\n"
    )
    assert openvino_message(exc) == "Incorrect weights in bin file!"
    assert openvino_message(RuntimeError("one plain line")) == "one plain line"


# -- item 7: --classes by id or name, validated against the model ---------------------------------

def test_classes_out_of_range_is_a_usage_error(shared):
    result = _invoke("predict", shared.coco96_images[0], "--model", shared.fp32_model, "--classes", "999")
    assert result.exit_code == 2
    assert "--classes 999" in result.output and "class ids are 0-79 (80 classes)" in result.output


def test_classes_beyond_a_three_class_model(tmp_path, shared):
    raw = np.zeros((7, 10), np.float32)  # 3 classes, 10 anchors
    raw[:4, 0] = [32, 32, 10, 10]
    raw[6, 0] = 0.9
    xml = save(raw_head_model(raw), tmp_path / "tiny")
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    bad = _invoke("predict", image, "--model", xml, "--classes", "5")
    assert bad.exit_code == 2 and "class ids are 0-2 (3 classes)" in bad.output
    out = tmp_path / "p.jsonl"
    good = _invoke("predict", image, "--model", xml, "--classes", "car", "--save-json", out)
    assert good.exit_code == 0, good.output
    assert [d["class_name"] for d in json.loads(out.read_text(encoding="utf-8"))["detections"]] == ["car"]


def test_classes_by_name(shared, tmp_path):
    out = tmp_path / "p.jsonl"
    result = _invoke("predict", *shared.coco96_images[:16], "--model", shared.int8_model, "--classes",
                     "person,car", "--save-json", out, "-q")
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    found = {d["class_name"] for line in lines for d in json.loads(line)["detections"]}
    assert "person" in found and found <= {"person", "car"}
    typo = _invoke("predict", shared.coco96_images[0], "--model", shared.int8_model, "--classes", "persn")
    assert typo.exit_code == 2 and "did you mean person" in typo.output


# -- item 8: the summary names what was written ----------------------------------------------------

def test_summary_names_the_videos_actually_written(shared, tmp_path, video_16x9):
    corrupt = tmp_path / "one.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    video = tmp_path / "out" / "two.mp4"
    result = _invoke("predict", corrupt, video_16x9, "--model", shared.int8_model, "--save-video", video, "-q")
    assert result.exit_code == 1, result.output
    written = video.with_name("two_s1.mp4")
    assert f"video: {written} (12 frames)" in result.output
    assert sorted(p.name for p in video.parent.iterdir()) == ["two_s1.mp4"]

    only_bad = _invoke("predict", corrupt, "--model", shared.int8_model, "--save-video", tmp_path / "none.mp4", "-q")
    assert only_bad.exit_code == 1
    assert "video: none written" in only_bad.output and not (tmp_path / "none.mp4").exists()


# -- item 9: small things ---------------------------------------------------------------------------

def test_summary_without_any_compiled_shape_has_no_empty_pipeline(shared, tmp_path):
    bad = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for p in bad:
        p.write_bytes(b"not an image")
    result = _invoke("predict", *bad, "--model", shared.int8_model, "--mode", "throughput", "-q")
    assert result.exit_code == 1
    assert "0 images, 2 failed" in result.output and "(throughput, CPU)" in result.output
    assert "pipeline" not in result.output


def test_video_runs_count_frames(shared, video_16x9):
    result = _invoke("predict", video_16x9, "--model", shared.int8_model, "-q")
    assert result.exit_code == 0, result.output
    assert "12 frames," in result.output and "frames/s" in result.output and "images" not in result.output


def test_globs_expand_videos_and_a_pattern_matching_nothing_is_a_usage_error(shared, tmp_path, video_16x9):
    nothing = _invoke("predict", str(tmp_path / "*.gif"), "--model", shared.int8_model)
    assert nothing.exit_code == 2 and "the pattern matched no files" in nothing.output
    assert "no such video file" not in nothing.output
    videos = _invoke("predict", str(video_16x9.parent / "*.avi"), "--model", shared.int8_model, "-q")
    assert videos.exit_code == 0 and "12 frames" in videos.output


def test_a_single_missing_file_exits_2(shared, tmp_path):
    proc = _run(["predict", tmp_path / "missing.jpg", "--model", shared.int8_model])
    assert proc.returncode == 2
    assert "missing.jpg: no such file or folder" in _one_line(proc.stderr)


def test_help_shows_flags_without_a_value():
    result = _invoke("predict", "--help")
    assert result.exit_code == 0
    assert "--agnostic-nms" in result.output and "<bool>" not in result.output
    flag_line = next(line for line in result.output.splitlines() if "--agnostic-nms" in line)
    assert "<" not in flag_line


def test_info_prints_the_path_given(shared, monkeypatch):
    monkeypatch.chdir(shared.fp32_model.parent)
    result = _invoke("info", "--model", shared.fp32_model.name)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert rows[0] == ["model", shared.fp32_model.name]
    assert rows[1] == ["model", "file", str(shared.fp32_model / "yolov8n.xml")]


def test_int8_export_of_an_ir_never_imports_torch(shared, tmp_path):
    code = (
        "import sys\n"
        "from yolo_ov.export.convert import ExportConfig, export_model\n"
        f"export_model({str(shared.fp32_model)!r}, ExportConfig(precision='int8', data={str(shared.coco96)!r}, "
        f"calib_size=4, output={str(tmp_path / 'q_int8_openvino_model')!r}))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'ultralytics'})\n"
        "print(bad[:5])\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
            encoding="utf-8", errors="replace", timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No CUDA runtime" not in proc.stderr
    assert (tmp_path / "q_int8_openvino_model" / "yolov8n.xml").exists()


@pytest.mark.slow
@pytest.mark.export
def test_pt_int8_export_prints_no_torch_warning(shared, tmp_path):
    pytest.importorskip("ultralytics", reason="needs the export extra: pip install 'yolo-ov[export]'")
    pt = tmp_path / "yolov8n.pt"
    shutil.copy(shared.pt_model, pt)
    proc = _run(["export", pt, "--precision", "int8", "--data", shared.coco96, "--calib-size", 8])
    assert proc.returncode == 0, proc.stderr
    assert "No CUDA runtime" not in proc.stderr and "cpp_extension" not in proc.stderr
    assert (tmp_path / "yolov8n_int8_openvino_model" / "yolov8n.xml").exists()



def test_progress_bars_cannot_fail_in_an_ascii_locale(monkeypatch):
    """Under ``LC_ALL=C PYTHONUTF8=0`` the streams are ASCII with ``surrogateescape``: NNCF's progress bar
    (``━``, ``•``) raised UnicodeEncodeError and failed an INT8 export. They now print ``?`` instead."""
    import io

    from yolo_ov._console import printable_output

    raw = io.BytesIO()
    ascii_out = io.TextIOWrapper(raw, encoding="ascii", errors="surrogateescape")
    utf8_out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    monkeypatch.setattr(sys, "stderr", utf8_out)
    restore = printable_output()
    assert (ascii_out.errors, utf8_out.errors) == ("replace", "strict")
    print("Statistics collection \u2501\u2501 100% \u2022 0:00:02")
    ascii_out.flush()
    assert raw.getvalue() == b"Statistics collection ?? 100% ? 0:00:02\n"
    restore()
    assert ascii_out.errors == "surrogateescape"


# -- SIGTERM / SIGINT drain on the fake detector (fast tier) --------------------------------------------
# The subprocess tests above check what a user sees; these check the engine underneath: a run interrupted
# by a signal keeps what it yielded (in order, no gap), waits for its requests in flight, joins its threads,
# and submit() answers every image it accepted.

def _grey_value(result) -> int:
    return round((float(result.confidence[0]) - 0.5) * 1024)


def _yolo_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("yolo-ov") and t.is_alive()]


SIGNUMS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("signum", SIGNUMS)
def test_fake_signal_during_a_stream_keeps_what_was_yielded_and_drains(signum, batch):
    from tests.fakes import fake_detector, uniform_image
    from yolo_ov.io.signals import Terminated, terminate_as_interrupt

    got: list[int] = []
    with fake_detector(batch=batch, delay_s=0.005, mode="throughput") as det:
        with pytest.raises(KeyboardInterrupt) as info, terminate_as_interrupt():  # noqa: PT012
            for r in det.stream([uniform_image(k % 250) for k in range(300)]):
                got.append(_grey_value(r))
                if len(got) == 10:
                    os.kill(os.getpid(), signum)
        assert isinstance(info.value, Terminated) == (signum == signal.SIGTERM)
        assert 10 <= len(got) < 300 and got == list(range(len(got)))
        assert det.engine._in_flight == 0, "requests left in flight"
        assert _yolo_threads() == []
        assert len(list(det.stream([uniform_image(1)] * 3))) == 3  # the Detector is still usable


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", SIGNUMS)
def test_fake_signal_during_submit_answers_every_accepted_image(signum):
    from tests.fakes import fake_detector, uniform_image
    from yolo_ov.io.signals import terminate_as_interrupt
    from yolo_ov.pipeline import PipelineConfig

    futures = []
    det = fake_detector(delay_s=0.003, mode="throughput", pipeline=PipelineConfig(max_queue=10_000))
    with det, pytest.raises(KeyboardInterrupt), terminate_as_interrupt():  # noqa: PT012
        for k in range(5000):
            futures.append((k, det.submit(uniform_image(k % 250))))
            if k == 40:
                os.kill(os.getpid(), signum)
    # closed: every accepted image has its answer, none is left pending or failed
    assert 41 <= len(futures) < 5000
    for k, future in futures:
        assert future.done()
        assert _grey_value(future.result(timeout=0)) == k % 250
    assert _yolo_threads() == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", SIGNUMS)
def test_fake_signal_during_a_callback_run_stops_and_drains(signum):
    from tests.fakes import fake_detector, uniform_image
    from yolo_ov.io.signals import terminate_as_interrupt

    seen: list[int] = []
    lock = threading.Lock()

    def collect(result) -> None:
        with lock:
            seen.append(_grey_value(result))
            if len(seen) == 10:
                threading.Timer(0, os.kill, (os.getpid(), signum)).start()

    with fake_detector(delay_s=0.005, mode="throughput") as det:
        with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
            det.stream_callback([uniform_image(k % 250) for k in range(400)], collect)
        assert 10 <= len(seen) < 400 and len(set(seen)) == len(seen)
        assert det.engine._in_flight == 0
        assert _yolo_threads() == []
