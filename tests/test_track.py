"""Tracking building blocks without a model: Kalman filter, assignment, trackers, config, counters, metrics."""

from __future__ import annotations

import doctest
import importlib
import itertools

import numpy as np
import pytest

from yolo_ov import Detections
from yolo_ov.errors import ConfigError
from yolo_ov.track import Counters, Line, Tracker, TrackerConfig, Zone, id_counter, load_tracker_config
from yolo_ov.track.counters import parse_line, parse_zone
from yolo_ov.track.kalman import BoxKalmanFilter
from yolo_ov.track.matching import assign, box_iou, fuse_scores
from yolo_ov.track.metrics import FrameTracks, _max_assignment, frame_agreement, idf1
from yolo_ov.track.sources import _Selector


@pytest.mark.parametrize(
    "module",
    ["config", "counters", "draw", "gmc", "kalman", "matching", "metrics", "sources", "tracker"],
)
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"yolo_ov.track.{module}")
    # Ultralytics changes NumPy's print options process-wide when it is imported (another
    # test may have): run the examples with NumPy's own defaults.
    with np.printoptions(formatter=None, linewidth=75, precision=8):
        result = doctest.testmod(mod, extraglobs={"np": np, "Detections": Detections})
    assert result.failed == 0


# -- Kalman filter ------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["xyah", "xywh"])
def test_kalman_measurement_round_trip(layout):
    kf = BoxKalmanFilter(layout)
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 3.0, 7.0]])
    mean, _ = kf.initiate(kf.to_measurement(boxes))
    np.testing.assert_allclose(kf.to_xyxy(mean), boxes)


@pytest.mark.parametrize("layout", ["xyah", "xywh"])
def test_kalman_learns_constant_velocity(layout):
    kf = BoxKalmanFilter(layout)
    box = np.array([[100.0, 100.0, 140.0, 200.0]])
    step = np.array([3.0, -2.0, 3.0, -2.0])
    mean, cov = kf.initiate(kf.to_measurement(box))
    for k in range(1, 30):
        mean, cov = kf.predict(mean, cov, frozen=np.array([False]))
        mean, cov = kf.update(mean, cov, kf.to_measurement(box + k * step))
    mean, _ = kf.predict(mean, cov, frozen=np.array([False]))
    np.testing.assert_allclose(kf.to_xyxy(mean)[0], box[0] + 30 * step, atol=0.5)
    # the covariance stays symmetric positive definite
    assert np.allclose(cov, cov.transpose(0, 2, 1))
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_kalman_multi_step_equals_repeated_steps_and_freezes_size():
    kf = BoxKalmanFilter("xyah")
    mean, cov = kf.initiate(kf.to_measurement(np.array([[0.0, 0.0, 20.0, 40.0], [5.0, 5.0, 15.0, 35.0]])))
    mean[:, 4:] = [[2.0, 1.0, 0.0, 0.5], [1.0, 1.0, 0.0, -0.5]]
    frozen = np.array([False, True])
    m3, c3 = kf.predict(mean, cov, frozen=frozen, steps=3)
    m, c = mean, cov
    for _ in range(3):
        m, c = kf.predict(m, c, frozen=frozen)
    np.testing.assert_allclose(m3, m)
    np.testing.assert_allclose(c3, c)
    assert m3[0, 3] == pytest.approx(mean[0, 3] + 1.5)  # a seen track keeps its height velocity
    assert m3[1, 3] == pytest.approx(mean[1, 3])  # a lost one does not grow or shrink


def test_kalman_warp_moves_centres_and_keeps_sizes_positive():
    kf = BoxKalmanFilter("xywh")
    mean, cov = kf.initiate(kf.to_measurement(np.array([[100.0, 100.0, 120.0, 160.0]])))
    shift = np.array([[1.0, 0.0, 7.0], [0.0, 1.0, -3.0]])
    moved, _ = kf.warp(mean, cov, shift)
    np.testing.assert_allclose(kf.to_xyxy(moved)[0], [107.0, 97.0, 127.0, 157.0])
    rotate = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    turned, _ = kf.warp(mean, cov, rotate)
    assert np.all(turned[0, 2:4] > 0)


# -- assignment and costs ----------------------------------------------------------------------
def test_box_iou_table():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 25 / 175, 0.0])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_fuse_scores_weighs_iou_by_score():
    cost = np.array([[0.2, 0.2]])
    np.testing.assert_allclose(fuse_scores(cost, np.array([1.0, 0.5])), [[0.2, 0.6]])


def _brute_force(cost: np.ndarray, limit: float) -> float:
    """The optimum of lapjv's extended problem: matched pairs cost theirs, every unmatched row/column limit / 2."""
    n, m = cost.shape
    best = (n + m) * limit / 2
    for k in range(1, min(n, m) + 1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                pairs = [cost[r, c] for r, c in zip(rows, cols, strict=True)]
                if max(pairs) <= limit:
                    best = min(best, sum(pairs) + (n + m - 2 * k) * limit / 2)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_assign_is_optimal_within_the_limit(seed):
    rng = np.random.default_rng(seed)
    cost = rng.uniform(0, 1, size=(rng.integers(1, 5), rng.integers(1, 5)))
    limit = 0.6
    matches, free_rows, free_cols = assign(cost, limit)
    assert all(cost[r, c] <= limit for r, c in matches)
    assert sorted([*matches[:, 0], *free_rows]) == list(range(cost.shape[0]))
    assert sorted([*matches[:, 1], *free_cols]) == list(range(cost.shape[1]))
    total = sum(cost[r, c] for r, c in matches) + (len(free_rows) + len(free_cols)) * limit / 2
    assert total == pytest.approx(_brute_force(cost, limit))


@pytest.mark.parametrize("seed", range(5))
def test_idf1_assignment_agrees_with_scipy(seed):
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 20, size=(rng.integers(2, 12), rng.integers(2, 12))).astype(float)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    assert _max_assignment(weights) == pytest.approx(weights[rows, cols].sum())


def test_idf1_and_agreement_on_known_cases():
    box = [[0, 0, 10, 10]]
    other = [[50, 50, 60, 60]]
    truth = [FrameTracks.of(box, [0], [1])] * 4
    # the same object under one id throughout: perfect; switching id half way: half the frames lost
    assert idf1(truth, [FrameTracks.of(box, [0], [9])] * 4) == 1.0
    switched = [FrameTracks.of(box, [0], [9])] * 2 + [FrameTracks.of(box, [0], [8])] * 2
    assert idf1(truth, switched) == pytest.approx(0.5)
    assert idf1(truth, [FrameTracks.of(other, [0], [9])] * 4) == 0.0
    a = frame_agreement(truth, [FrameTracks.of(box + other, [0, 0], [1, 2])] * 4)
    assert (a.matched, a.left, a.right, a.both_ways) == (4, 4, 8, 0.5)
    assert frame_agreement(truth, [FrameTracks.of(box, [3], [1])] * 4).matched == 0  # class must agree


# -- the tracker -------------------------------------------------------------------------------
def _walk(start, velocity, frames):
    start, velocity = np.asarray(start, float), np.asarray(velocity, float)
    return [start + k * np.r_[velocity, velocity] for k in frames]


def test_ids_persist_through_a_crossing():
    frames = range(40)
    a = _walk([0, 100, 40, 200], [6, 0], frames)
    b = _walk([240, 110, 280, 210], [-6, 0], frames)
    tracker = Tracker()
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for k in frames:
        boxes = np.array([a[k], b[k]], np.float32)
        out = tracker.update(boxes, np.array([0.9, 0.8]), np.array([0, 0]), frame=k)
        assert len(out) == 2
        for i, d in zip(out.track_id, out.det_index, strict=True):
            seen[int(d)].add(int(i))
    assert seen == {0: {1}, 1: {2}}


def test_low_score_detections_keep_a_track_alive_but_do_not_start_one():
    tracker = Tracker()
    box = np.array([[10, 10, 50, 90]], np.float32)
    assert tracker.update(box, [0.9], [0]).track_id.tolist() == [1]
    assert tracker.update(box, [0.15], [0]).track_id.tolist() == [1]  # second association (ByteTrack)
    fresh = Tracker()
    assert len(fresh.update(box, [0.15], [0])) == 0
    assert len(fresh.update(box, [0.15], [0])) == 0


def test_new_tracks_are_confirmed_on_their_second_frame():
    tracker = Tracker()
    first = np.array([[10, 10, 50, 90]], np.float32)
    tracker.update(first, [0.9], [0])
    both = np.array([[10, 10, 50, 90], [200, 10, 240, 90]], np.float32)
    assert tracker.update(both, [0.9, 0.9], [0, 0]).track_id.tolist() == [1]
    assert sorted(tracker.update(both, [0.9, 0.9], [0, 0]).track_id.tolist()) == [1, 2]


def test_a_gap_in_frame_indices_is_predicted_across():
    path = _walk([0, 100, 40, 200], [5, 0], range(60))
    tracker = Tracker()
    ids = set()
    for k in [*range(10), *range(20, 30), *range(45, 50)]:  # two gaps: 10 and 15 frames dropped
        out = tracker.update(np.array([path[k]], np.float32), [0.9], [0], frame=k)
        assert len(out) == 1
        np.testing.assert_allclose(out.xyxy[0], path[k], atol=3)
        ids.update(out.track_id.tolist())
    assert ids == {1}
    # without the frame indices the same boxes look like jumps of 50-75 px: the track is lost
    naive, naive_ids = Tracker(), set()
    for k in [*range(10), *range(20, 30), *range(45, 50)]:
        naive_ids.update(naive.update(np.array([path[k]], np.float32), [0.9], [0]).track_id.tolist())
    assert len(naive_ids) > 1


def test_lost_tracks_are_forgotten_after_the_buffer():
    box = np.array([[10, 10, 50, 90]], np.float32)
    for gap, same in ((10, True), (40, False)):
        tracker = Tracker(TrackerConfig(track_buffer=30))
        tracker.update(box, [0.9], [0], frame=0)
        tracker.update(box, [0.9], [0], frame=1)
        for k in range(2, 2 + gap):
            tracker.update(np.zeros((0, 4)), [], [], frame=k)
        again = 2 + gap
        tracker.update(box, [0.9], [0], frame=again)
        out = tracker.update(box, [0.9], [0], frame=again + 1)
        assert (out.track_id.tolist() == [1]) is same


def test_predict_reports_tracks_and_an_update_after_it_matches_a_jump():
    path = _walk([0, 100, 40, 200], [4, 2], range(20))
    a, b = Tracker(), Tracker()
    for k in range(10):
        a.update(np.array([path[k]], np.float32), [0.9], [0], frame=k)
        b.update(np.array([path[k]], np.float32), [0.9], [0], frame=k)
    predicted = [a.predict(frame=k) for k in (10, 11)]
    assert all(p.predicted and p.track_id.tolist() == [1] for p in predicted)
    np.testing.assert_allclose(predicted[1].xyxy[0], path[11], atol=2)
    after_predict = a.update(np.array([path[12]], np.float32), [0.9], [0], frame=12)
    jumped = b.update(np.array([path[12]], np.float32), [0.9], [0], frame=12)
    np.testing.assert_allclose(after_predict.xyxy, jumped.xyxy, rtol=1e-9)


def test_shared_id_source_keeps_trackers_disjoint():
    ids = id_counter()
    a, b = Tracker(next_id=ids), Tracker(next_id=ids)
    box = np.array([[10, 10, 50, 90]], np.float32)
    assert a.update(box, [0.9], [0]).track_id.tolist() == [1]
    assert b.update(box, [0.9], [0]).track_id.tolist() == [2]


def test_degenerate_boxes_are_ignored():
    tracker = Tracker()
    boxes = np.array([[10, 10, 10, 50], [0, 0, 20, 40]], np.float32)
    out = tracker.update(boxes, [0.9, 0.9], [0, 0])
    assert out.det_index.tolist() == [1]


# -- configuration --------------------------------------------------------------------------------
def test_defaults_are_ultralytics_tracker_files():
    pytest.importorskip("ultralytics", reason="Ultralytics' YAML files come with the export extra")
    from pathlib import Path

    import ultralytics

    folder = Path(ultralytics.__file__).parent / "cfg" / "trackers"
    for name in ("bytetrack", "botsort"):
        assert load_tracker_config(folder / f"{name}.yaml") == TrackerConfig.defaults(name)
        assert load_tracker_config(f"{name}.yaml") == TrackerConfig.defaults(name)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tracker_type: bytetrack\nmatch_tresh: 0.8\n", "unknown tracker setting(s) match_tresh"),
        ("tracker_type: ocsort\n", "tracker_type 'ocsort'"),
        ("tracker_type: botsort\nwith_reid: true\n", "appearance re-id is not shipped"),
        ("tracker_type: botsort\ngmc_method: orb\n", "gmc_method 'orb'"),
        ("track_buffer: -1\n", "track_buffer must be a non-negative integer"),
        ("match_thresh: 1.5\n", "match_thresh must be a number in [0, 1]"),
        ("- a list\n", "must be a YAML mapping"),
        ("a: [unclosed\n", "cannot read the tracker config"),
    ],
)
def test_bad_tracker_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "tracker.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r".*") as info:
        load_tracker_config(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_tracker_file_keys_override_the_defaults_of_its_type(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("tracker_type: botsort\ntrack_buffer: 60\nmodel: auto\n", encoding="utf-8")
    cfg = load_tracker_config(path)
    assert (cfg.tracker_type, cfg.track_buffer, cfg.gmc_method) == ("botsort", 60, "sparseOptFlow")
    with pytest.raises(ConfigError, match="no such file"):
        load_tracker_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must not exceed"):
        TrackerConfig(track_low_thresh=0.5, track_high_thresh=0.3)


# -- detect-every selection ------------------------------------------------------------------------
def test_selector_chooses_every_nth_frame_and_after_gaps():
    sel = _Selector(3, keep_images=False, sequential=True)
    chosen = [f for f in range(10) if sel.choose(0, f, np.zeros((4, 6, 3), np.uint8), "cam")]
    assert chosen == [0, 3, 6, 9]
    assert [n.frame for n in sel.skipped] == [1, 2, 4, 5, 7, 8]
    assert sel.skipped[0].image_shape == (4, 6) and sel.skipped[0].image is None
    live = _Selector(3, keep_images=True, sequential=False)
    assert [f for f in (0, 1, 5, 6, 7, 8) if live.choose(1, f, np.zeros((2, 2)), "cam")] == [0, 5, 8]
    assert live.take(lambda n: n.frame < 7)[-1].frame == 6
    assert [n.frame for n in live.skipped] == [7]


# -- counters ---------------------------------------------------------------------------------------
def _frame(boxes, ids, stream=0):
    return Detections(np.asarray(boxes, np.float32), np.full(len(ids), 0.9), np.zeros(len(ids)), stream=stream,
                      data={"track_id": np.asarray(ids)})


def test_line_counts_each_track_once_per_direction_within_the_segment():
    c = Counters(lines=[Line(name="gate", start=(0, 100), end=(200, 100))])
    c.update(_frame([[10, 60, 30, 80], [300, 60, 320, 80]], [1, 2]))
    c.update(_frame([[10, 120, 30, 140], [300, 120, 320, 140]], [1, 2]))  # 1 crosses; 2 passes beside the segment
    c.update(_frame([[10, 60, 30, 80]], [1]))  # 1 goes back
    counts = c.update(_frame([[10, 120, 30, 140]], [1]))  # and down again: already counted that way
    assert counts["lines"]["gate"] == {"in": 1, "out": 1}
    assert c.update(_frame([[10, 60, 30, 80]], [1], stream=1))["lines"]["gate"] == {"in": 0, "out": 0}


def test_zone_reports_occupancy_and_distinct_entries():
    c = Counters(zones=[Zone(name="z", points=((0, 0), (100, 0), (100, 100), (0, 100)))])
    assert c.update(_frame([[10, 10, 20, 20], [200, 200, 210, 210]], [1, 2]))["zones"]["z"] == \
        {"occupancy": 1, "entered": 1}
    assert c.update(_frame([[150, 10, 160, 20], [50, 50, 60, 60]], [1, 2]))["zones"]["z"] == \
        {"occupancy": 1, "entered": 2}
    drawn = c.draw(np.zeros((120, 120, 3), np.uint8))
    assert drawn.any()


def test_counters_forget_old_ids_but_keep_their_counts():
    from yolo_ov.track.counters import FORGET_AFTER

    c = Counters(lines=[Line(name="gate", start=(0, 100), end=(200, 100))],
                 zones=[Zone(name="z", points=((0, 0), (200, 0), (200, 200), (0, 200)))])
    for k in range(3 * FORGET_AFTER):  # a new object every frame, each crossing the line once
        y = 80 if k % 2 == 0 else 120
        c.update(_frame([[10, y - 5, 30, y + 5]], [k // 2]))
    lines, zones = c._state(0)
    assert len(lines[0].tracks) <= FORGET_AFTER + 2 and len(zones[0].seen) <= FORGET_AFTER + 2
    assert c.counts()["lines"]["gate"] == {"in": 3 * FORGET_AFTER // 2, "out": 0}
    assert c.counts()["zones"]["z"]["entered"] == 3 * FORGET_AFTER // 2


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_line, "1,2,3", "expected x1,y1,x2,y2"),
        (parse_line, "1,2,a,4", "comma-separated pixel coordinates"),
        (parse_line, "5,5,5,5", "its two points are the same"),
        (parse_zone, "0,0,1,1", "at least 3 x,y pairs"),
    ],
)
def test_bad_counter_geometry_is_a_config_error(parse, text, message):
    with pytest.raises(ConfigError, match=message):
        parse(text, "x")


# -- the commands on the fake engine (tests.cli_fakes): tracking end to end without a model ----------------
@pytest.fixture
def fake_cli(monkeypatch):
    from tests.cli_fakes import use_fake_detector

    return use_fake_detector(monkeypatch)


@pytest.fixture
def still_clip(tmp_path):
    """10 frames of one grey object the fake sees in the same place each frame (one track)."""
    from tests.media import grey_frames, write_clip

    return write_clip(tmp_path / "still.avi", grey_frames([200] * 10), fps=10.0)


def _lines(path):
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_cli_track_writes_ids_predictions_counts_and_video(fake_cli, still_clip, tmp_path):
    import cv2

    from tests.cli_fakes import invoke

    out, video = tmp_path / "t.jsonl", tmp_path / "t.avi"
    result = invoke("track", still_clip, "--detect-every", "2", "--line", "0,50,64,50", "--zone", "0,0,64,0,64,64,0,64",
                    "--save-json", out, "--save-video", video, "-q")
    assert result.exit_code == 0, result.output
    records = _lines(out)
    assert [r["frame"] for r in records] == list(range(10))
    assert {d["track_id"] for r in records for d in r["detections"]} == {1}  # one object, one id throughout
    assert [r["detections"][0].get("predicted", False) for r in records[1:]] == [k % 2 == 1 for k in range(1, 10)]
    assert all(set(r["counts"]) == {"lines", "zones"} for r in records)
    assert records[-1]["counts"]["zones"]["zone1"]["entered"] == 1
    assert "5 inferred, 5 predicted" in result.output and "1 tracks (bytetrack)" in result.output
    assert f"; JSONL: {out} (10 lines); video: {video} (10 frames)" in result.output
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    cap.release()


def test_cli_track_without_counters_writes_no_counts(fake_cli, still_clip, tmp_path):
    from tests.cli_fakes import invoke

    out = tmp_path / "t.jsonl"
    assert invoke("track", still_clip, "--save-json", out, "-q").exit_code == 0
    records = _lines(out)
    assert len(records) == 10 and all("counts" not in r for r in records)
    assert fake_cli[-1]["detect"].conf == 0.1  # track's own default


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tracker", "deepsort"), "not bytetrack or botsort and no such file"),
        (("--detect-every", "0"), "--detect-every 0"),
        (("--line", "1,2,3"), "expected x1,y1,x2,y2"),
        (("--zone", "1,2,3,4"), "zone"),
        (("--classes", "zebra"), "--classes 'zebra': no class of that name"),
    ],
)
def test_cli_track_bad_options_are_one_line_errors(fake_cli, still_clip, args, message):
    from tests.cli_fakes import invoke

    result = invoke("track", still_clip, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_cli_track_reads_an_ultralytics_format_tracker_file(fake_cli, still_clip, tmp_path):
    from tests.cli_fakes import invoke

    cfg = tmp_path / "mine.yaml"
    cfg.write_text("tracker_type: botsort\ntrack_high_thresh: 0.5\nnew_track_thresh: 0.6\ngmc_method: none\n",
                   encoding="utf-8")
    out = tmp_path / "t.jsonl"
    result = invoke("track", still_clip, "--tracker-config", cfg, "--save-json", out, "-q")
    assert result.exit_code == 0, result.output
    assert "(botsort)" in result.output
    assert {d["track_id"] for r in _lines(out) for d in r["detections"]} == {1}


def test_cli_track_refuses_what_it_cannot_track_before_the_model_loads(fake_cli, tmp_path):
    import cv2

    from tests.cli_fakes import invoke

    missing = invoke("track", tmp_path / "nope.mp4")
    assert missing.exit_code == 2 and "nope.mp4: no such file or folder" in missing.output
    unwritable = invoke("track", tmp_path / "nope.mp4", "--save-video", tmp_path / "v.gif")
    assert unwritable.exit_code == 2
    assert fake_cli == []
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((64, 64, 3), 200, np.uint8))
    images = invoke("track", folder, "--detect-every", "2")
    assert images.exit_code == 2 and "not image files" in images.output


def test_cli_track_two_streams_have_disjoint_ids(fake_cli, tmp_path):
    from tests.cli_fakes import invoke
    from tests.media import grey_frames, write_clip

    a = write_clip(tmp_path / "a.avi", grey_frames([200] * 6))
    b = write_clip(tmp_path / "b.avi", grey_frames([180] * 6))
    out = tmp_path / "t.jsonl"
    result = invoke("track", a, b, "--save-json", out, "--save-video", tmp_path / "v.avi", "-q")
    assert result.exit_code == 0, result.output
    ids = {}
    for r in _lines(out):
        ids.setdefault(r["stream"], set()).update(d["track_id"] for d in r["detections"])
    assert set(ids) == {0, 1} and all(len(v) == 1 for v in ids.values()) and not ids[0] & ids[1]
    assert (tmp_path / "v.avi").exists() and (tmp_path / "v_s1.avi").exists()


def test_cli_track_a_live_camera(fake_cli, tmp_path):
    from tests.cli_fakes import invoke
    from tests.media import MjpegCamera, grey_frames

    out = tmp_path / "cam.jsonl"
    with MjpegCamera(grey_frames([200] * 8), fps=40) as cam:
        result = invoke("track", cam.url, "--save-json", out, "--detect-every", "2", "--reconnect", "off", "-q")
    assert result.exit_code == 1, result.output  # hung up, not reconnected: given up on, a failed input
    lines = _lines(out)
    (lost,) = [r for r in lines if "error" in r]
    records = [r for r in lines if "error" not in r]
    assert "live source lost" in lost["error"] and "skipped:" in result.output
    frames = [r["frame"] for r in records]
    assert records and frames == sorted(frames) and all(r["source"] == cam.url for r in records)
    assert {d["track_id"] for r in records for d in r["detections"]} <= {1, 2}


def test_cli_predict_tracker_adds_ids_to_its_outputs(fake_cli, still_clip, tmp_path):
    import cv2

    from tests.cli_fakes import invoke

    out, video = tmp_path / "p.jsonl", tmp_path / "p.avi"
    result = invoke("predict", still_clip, "--tracker", "botsort", "--save-json", out, "--save-video", video, "-q")
    assert result.exit_code == 0, result.output
    records = _lines(out)
    assert [r["frame"] for r in records] == list(range(10))
    assert {d["track_id"] for r in records for d in r["detections"]} == {1}
    assert all("predicted" not in d for r in records for d in r["detections"])
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    cap.release()


def test_cli_predict_detect_every_marks_the_predicted_frames(fake_cli, still_clip, tmp_path):
    from tests.cli_fakes import invoke

    out = tmp_path / "p.jsonl"
    assert invoke("predict", still_clip, "--detect-every", "3", "--save-json", out, "-q").exit_code == 0
    predicted = [bool(r["detections"]) and r["detections"][0].get("predicted", False) for r in _lines(out)]
    assert predicted == [k % 3 != 0 for k in range(10)]
