"""The request cycle's parts on their own: the slot keeper (slots, hang check, broken) and the steps
(prepare, pack, start, finish, the fan-out group), plus the import rule they exist for: the pipeline's
children and ``track`` never import their owner, not even for type checkers."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import expected_for, fake_engine, fake_info, uniform_image
from tests.fanout_support import Grid, tiled_image
from yolo_ov import DetectConfig, Detections, InferenceError, InputError
from yolo_ov.heads import select_head
from yolo_ov.imaging.letterbox import PAD_VALUE
from yolo_ov.pipeline import SlotKeeper
from yolo_ov.pipeline.steps import Frame, Group, Part, Request, finish, pack, prepare, prepare_parts, start

pytestmark = pytest.mark.timeout(30)
SRC = Path(__file__).resolve().parents[1] / "src" / "yolo_ov"


# -- the slot keeper -------------------------------------------------------------------------------

def test_keeper_bounds_the_slots():
    keeper = SlotKeeper(2, timeout_s=1.0)
    assert keeper.try_acquire(0.01) and keeper.try_acquire(0.01)
    assert not keeper.try_acquire(0.01)
    keeper.release()
    assert keeper.try_acquire(0.01)


def test_keeper_acquire_gives_up_when_stopped():
    keeper = SlotKeeper(1, timeout_s=1.0)
    assert keeper.acquire()
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    t0 = time.perf_counter()
    assert keeper.acquire(stop) is False
    assert time.perf_counter() - t0 < 1.0


def test_keeper_acquire_waits_for_a_release():
    keeper = SlotKeeper(1, timeout_s=1.0)
    keeper.acquire()
    threading.Timer(0.1, keeper.release).start()
    assert keeper.acquire(threading.Event())


def test_keeper_on_wait_runs_while_waiting_and_its_error_ends_the_wait():
    keeper = SlotKeeper(1, timeout_s=1.0)
    keeper.acquire()
    calls = []

    def on_wait():
        calls.append(1)
        if len(calls) == 3:
            raise InferenceError("hung")

    with pytest.raises(InferenceError, match="hung"):
        keeper.acquire(on_wait=on_wait)
    assert len(calls) == 3


def test_keeper_hang_check_marks_broken_and_names_the_device():
    keeper = SlotKeeper(4, timeout_s=0.5, device="GPU.1")
    now = time.perf_counter()
    keeper.check([now, now - 0.1])  # nothing overdue
    assert not keeper.broken
    assert keeper.overdue([now, now - 0.6, now - 2.0], now=now) == [1, 2]
    assert keeper.broken
    with pytest.raises(InferenceError, match=r"within 0\.5 s \(2 in flight on GPU\.1\)"):
        keeper.check([now - 1.0, now])


def test_keeper_broken_refuses_work_and_cancels():
    cancelled = []
    keeper = SlotKeeper(1, timeout_s=1.0, cancel=lambda: cancelled.append(1))
    keeper.check_usable()
    keeper.mark_broken()
    with pytest.raises(InferenceError, match="hung request"):
        keeper.check_usable()
    keeper.cancel_busy()
    assert cancelled == [1]


# -- the steps ----------------------------------------------------------------------------------------

@pytest.fixture
def head():
    return select_head(fake_info())


@pytest.mark.parametrize(("batch", "frames"), [(1, 1), (2, 1), (2, 2), (4, 3), (4, 4)])
def test_pack_fills_the_batch_and_pads_the_rest(head, batch, frames):
    lane = fake_engine(batch=batch)
    items = [prepare(head, uniform_image(10 * (k + 1)), (64, 64), lane, time.perf_counter()) for k in range(frames)]
    packed = pack(items, lane)
    assert packed.shape == (batch, 64, 64, 3) and packed.dtype == np.uint8
    for k in range(frames):
        assert (packed[k] == 10 * (k + 1)).all()
    assert (packed[frames:] == PAD_VALUE).all()


def test_prepare_letterboxes_into_the_lane_and_keeps_what_the_caller_gave(head):
    lane = fake_engine((32, 64))
    image = uniform_image(50, (64, 128))
    frame = prepare(head, image, (64, 128), lane, time.perf_counter(), key=7, item="src", keep_image=True)
    assert frame.data.shape == (32, 64, 3) and frame.lane is lane
    assert (frame.key, frame.item, frame.group, frame.part) == (7, "src", None, 0)
    assert frame.image is image and frame.prep_ms >= 0
    assert prepare(head, image, (64, 128), lane, time.perf_counter()).image is None


def test_finish_decodes_the_kth_frame_with_its_timings(head):
    lane = fake_engine(batch=2)
    frames = [prepare(head, uniform_image(v), (64, 64), lane, time.perf_counter()) for v in (40, 80)]
    outputs = lane.infer(pack(frames, lane))
    for k, v in enumerate((40, 80)):
        result = finish(head, outputs, k, frames[k], DetectConfig(), infer_ms=3.0)
        cls, score = expected_for(v)
        assert result.class_id.tolist() == [cls]
        assert result.confidence[0] == pytest.approx(score, abs=1e-4)
        assert result.timing.inference_ms == 3.0 and result.timing.preprocess_ms == frames[k].prep_ms


def test_prepare_parts_makes_one_frame_per_part_sharing_a_group(head):
    image = tiled_image([10, 20, 30, 40], 2, 2)
    asked = []

    def lane_for(hw):
        asked.append(hw)
        return fake_engine()

    frames = prepare_parts(head, image, (128, 128), Grid(), lane_for, time.perf_counter(), key=3, item="big")
    assert [f.part for f in frames] == [0, 1, 2, 3]
    assert len({id(f.group) for f in frames}) == 1 and frames[0].group is not None
    assert asked == [(64, 64)] * 4
    assert [int(f.data[0, 0, 0]) for f in frames] == [10, 20, 30, 40]
    assert all(f.key == 3 and f.item == "big" for f in frames)
    assert np.shares_memory(frames[0].group.parts[0].image, image)  # parts are views, not copies


def test_prepare_parts_refuses_no_part_and_empty_parts(head):
    class Nothing:
        def split(self, image, hw):
            return []

        def merge(self, results, parts, hw):
            raise AssertionError

    image = tiled_image([1, 2, 3, 4], 2, 2)
    with pytest.raises(InputError, match="no part"):
        prepare_parts(head, image, (128, 128), Nothing(), lambda hw: fake_engine(), 0.0, item="x")
    with pytest.raises(InputError, match="part 0 of the fan-out is an empty image"):
        prepare_parts(head, image, (128, 128), Grid(empty=0), lambda hw: fake_engine(), 0.0, item="x")


def _result(v: float) -> Detections:
    from yolo_ov.results import Timings

    d = Detections([[0, 0, 1, 1]], [v], [0], {0: "a"}, (10, 10))
    d.timing = Timings(1.0, v, 2.0)
    return d


def test_group_merges_once_every_part_is_in_whatever_the_order():
    parts = [Part(np.zeros((5, 5, 3), np.uint8), (5 * k, 0)) for k in range(3)]
    group = Group(Grid(1, 3), parts, (5, 15))
    assert group.add(2, _result(0.3)) is None
    assert group.add(0, _result(0.1)) is None
    merged = group.add(1, _result(0.2))
    assert merged.confidence.tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert merged.xyxy[:, 0].tolist() == [0, 5, 10]  # shifted by each part's offset
    assert merged.timing.preprocess_ms == pytest.approx(3.0) and merged.timing.inference_ms == pytest.approx(0.3)


def test_group_fails_once_and_then_ignores_results():
    parts = [Part(np.zeros((5, 5, 3), np.uint8)) for _ in range(2)]
    group = Group(Grid(1, 2), parts, (5, 10))
    assert group.fail() is True
    assert group.fail() is False
    assert group.add(0, _result(0.1)) is None and group.add(1, _result(0.2)) is None


def test_start_takes_a_slot_registers_before_the_callback_and_gives_it_back():
    keeper = SlotKeeper(1, timeout_s=5.0)
    lane = fake_engine()
    lane.reserve(1)
    done = threading.Event()
    seen: list[tuple[bool, float]] = []
    registered = []

    def on_done(request, outputs, finished):
        seen.append((id(request) in registered, finished - request.started))
        keeper.release()
        done.set()

    request = Request(lane, [], np.zeros((1, 64, 64, 3), np.uint8))
    assert start(keeper, request, on_done, register=lambda r: registered.append(id(r)))
    assert done.wait(5)
    assert seen[0][0] and seen[0][1] >= 0
    assert keeper.try_acquire(0.1)  # the slot came back


def test_start_returns_false_when_stopped_and_releases_when_the_engine_refuses():
    keeper = SlotKeeper(1, timeout_s=5.0)
    keeper.acquire()
    stop = threading.Event()
    stop.set()
    lane = fake_engine()
    request = Request(lane, [], np.zeros((1, 64, 64, 3), np.uint8))
    assert start(keeper, request, lambda *a: None, stop=stop) is False
    keeper.release()
    lane.close()  # a closed engine refuses to start
    with pytest.raises(InferenceError, match="closed"):
        start(keeper, request, lambda *a: None)
    assert keeper.try_acquire(0.1)


def test_frame_has_no_dict():
    frame = Frame(np.zeros((1, 1, 3), np.uint8), None, fake_engine(), 0.0)
    assert not hasattr(frame, "__dict__")  # slots: one small object per frame on the default path


# -- the import rule -------------------------------------------------------------------------------------

def _imported(path: Path) -> set[str]:
    """Every module named by an import in ``path``, TYPE_CHECKING blocks included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
            found.update("." * node.level + (node.module or "") + "." + a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("module", ["run.py", "submit.py", "steps.py", "slots.py", "lanes.py"])
def test_pipeline_children_never_import_the_pipeline(module):
    names = _imported(SRC / "pipeline" / module)
    assert not any(n.startswith(".core") or n == "..pipeline" or n.endswith("Pipeline") for n in names), names


def test_track_never_imports_the_detector():
    for path in (SRC / "track").glob("*.py"):
        names = _imported(path)
        assert not any("detector" in n for n in names), (path.name, names)
