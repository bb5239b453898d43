"""ByteTrack and BoT-SORT: detections of one stream's frames in, boxes with persistent ids out.

One :class:`Tracker` follows one stream (a video, a camera). Each frame it
is given the detector's boxes, scores and classes and answers which of them
belong to which track. The algorithm is ByteTrack's (Zhang et al., 2022, MIT
reference code), with the defaults and the bookkeeping of Ultralytics'
``bytetrack.yaml``:

1. every known track (tracked or lost) is moved forward by its Kalman filter
   to the current frame (several steps across a gap in the frame indices);
2. **first association**: tracks against detections scoring at least
   ``track_high_thresh``, cost ``1 - IoU`` (times the score with
   ``fuse_score``), matched within ``match_thresh``; a lost track matched
   here is found again with its old id;
3. **second association**: tracks still unmatched against the low-score
   detections (``track_low_thresh`` < score < ``track_high_thresh``) within
   IoU 0.5: ByteTrack's idea, a partly hidden object keeps its track;
4. tracks seen on the previous frame only (unconfirmed) against the
   remaining high-score detections (cost 0.7); unmatched ones are dropped;
5. remaining detections scoring at least ``new_track_thresh`` start
   tracks, confirmed (given an id and reported) when matched on a later
   frame, or at once on the very first frame;
6. a lost track is forgotten after ``track_buffer`` frames without a match.

BoT-SORT (Aharon et al., 2022) is the same with a ``xywh`` Kalman state and
camera-motion compensation (:mod:`~yolo_ov.track.gmc`) applied to every track
before the first association; its appearance re-id is not shipped.

The reported box of a track is its Kalman estimate after the frame's
correction, not the raw detection, as in Ultralytics' ``track``.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .config import TrackerConfig
from .gmc import SparseFlowMotion
from .kalman import BoxKalmanFilter
from .matching import assign, box_iou, fuse_scores, iou_cost

__all__ = ["TrackState", "TrackedObjects", "Tracker", "id_counter"]

#: The cost limit of the second (low-score) association: IoU at least 0.5.
_SECOND_MATCH = 0.5
#: The cost limit for tracks seen on one frame only (ByteTrack's value).
_UNCONFIRMED_MATCH = 0.7
#: A tracked and a lost track overlapping more than this are one object twice.
_DUPLICATE_IOU = 0.85
#: Frames of grace beyond ``track_buffer``: Ultralytics removes a stale lost
#: track after the frame's association and purges it only on the next frame,
#: so it is still matchable one frame longer. Kept so the defaults behave alike.
_BUFFER_GRACE = 1


class TrackState(enum.IntEnum):
    TRACKED = 1
    LOST = 2
    REMOVED = 3


def id_counter(start: int = 1) -> Callable[[], int]:
    """A source of track ids; one shared by several trackers keeps their ids disjoint."""
    counter: Iterator[int] = itertools.count(start)
    return lambda: next(counter)


def _without(tracks: list[_Track], others: list[_Track]) -> list[_Track]:
    """``tracks`` not in ``others`` (by identity), in order."""
    seen = {id(t) for t in others}
    return [t for t in tracks if id(t) not in seen]


class _Track:
    """One object's Kalman state and bookkeeping (internal)."""

    __slots__ = ("activated", "class_id", "cov", "det_index", "last_frame", "mean", "score", "start_frame",
                 "state", "time", "track_id")

    def __init__(self, mean: np.ndarray, cov: np.ndarray, score: float, class_id: int, det_index: int,
                 frame: int) -> None:
        self.mean, self.cov = mean, cov
        self.score, self.class_id, self.det_index = score, class_id, det_index
        self.state = TrackState.TRACKED
        self.activated = False
        self.track_id = 0
        self.start_frame = self.last_frame = self.time = frame


@dataclass(frozen=True)
class TrackedObjects:
    """What a tracker reports for one frame.

    Attributes:
        xyxy: ``(M, 4)`` float32 track boxes (Kalman estimates), original pixels.
        track_id: ``(M,)`` int64 ids, unique within the tracker's id source.
        confidence: ``(M,)`` float32 score of each track's latest detection.
        class_id: ``(M,)`` int32 class of each track's latest detection.
        det_index: ``(M,)`` index of the detection each track was matched to on
            this frame (``-1`` on a predicted frame).
        predicted: the frame had no detections given: boxes are predictions.
    """

    xyxy: np.ndarray
    track_id: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    det_index: np.ndarray
    predicted: bool = False

    def __len__(self) -> int:
        return len(self.track_id)


class Tracker:
    """Multi-object tracker for one stream (ByteTrack, or BoT-SORT by ``config``).

    Args:
        config: a :class:`TrackerConfig` (default: Ultralytics' ByteTrack settings).
        next_id: where ids come from (default: 1, 2, 3, ... for this tracker);
            pass one :func:`id_counter` to several trackers for disjoint ids.

    Example:
        >>> tracker = Tracker()
        >>> boxes = np.array([[10, 10, 50, 90]], np.float32)
        >>> tracker.update(boxes, np.array([0.9]), np.array([0])).track_id.tolist()
        [1]
        >>> tracker.update(boxes + 2, np.array([0.9]), np.array([0])).track_id.tolist()
        [1]
    """

    def __init__(self, config: TrackerConfig | None = None, *, next_id: Callable[[], int] | None = None) -> None:
        self.config = config or TrackerConfig.defaults()
        self._kf = BoxKalmanFilter("xywh" if self.config.tracker_type == "botsort" else "xyah")
        self._motion = (SparseFlowMotion() if self.config.tracker_type == "botsort"
                        and self.config.gmc_method == "sparseOptFlow" else None)
        self._next_id = next_id or id_counter()
        self._tracked: list[_Track] = []
        self._lost: list[_Track] = []
        self._frame: int | None = None
        self._updates = 0

    @property
    def uses_images(self) -> bool:
        """Whether :meth:`update` needs the frame (camera-motion compensation)."""
        return self._motion is not None

    @property
    def frame(self) -> int | None:
        """The index of the last frame given (``None`` before the first)."""
        return self._frame

    def reset(self) -> None:
        """Forget every track (ids keep counting from where they were)."""
        self._tracked, self._lost, self._frame, self._updates = [], [], None, 0
        if self._motion is not None:
            self._motion.reset()

    # -- per frame -----------------------------------------------------------------
    def update(self, xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, *,
               frame: int | None = None, image: np.ndarray | None = None) -> TrackedObjects:
        """Associate one frame's detections with the tracks and report the tracked objects.

        Args:
            xyxy, confidence, class_id: the frame's detections (``(N, 4)``, ``(N,)``, ``(N,)``).
            frame: the frame's index in its stream; a jump (frames dropped by a
                live source or skipped by the caller) is predicted across, one
                Kalman step per frame. Default: the next frame.
            image: the BGR frame, needed for BoT-SORT's camera-motion
                compensation (ignored otherwise).
        """
        xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(confidence, dtype=np.float64).reshape(-1)
        classes = np.asarray(class_id).reshape(-1).astype(np.int64)
        first = self._updates == 0
        self._updates += 1
        before = self._frame
        now = self._advance(frame)
        cfg = self.config
        if before is not None and now - before > cfg.track_buffer:
            self._forget_across_gap(now)

        w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        valid = (w > 0) & (h > 0)
        high = np.flatnonzero(valid & (scores >= cfg.track_high_thresh))
        low = np.flatnonzero(valid & (scores > cfg.track_low_thresh) & (scores < cfg.track_high_thresh))

        confirmed = [t for t in self._tracked if t.activated]
        unconfirmed = [t for t in self._tracked if not t.activated]
        pool = confirmed + _without(self._lost, confirmed)
        self._predict(pool, now)
        if self._motion is not None and image is not None:
            self._compensate(pool + unconfirmed, self._motion.apply(image))

        matched: list[_Track] = []
        pairs_seen: list[tuple[_Track, int]] = []  # Kalman corrections, applied together below
        # 1. confident detections against every known track
        cost = self._cost(pool, xyxy[high], scores[high])
        pairs, free_tracks, free_high = assign(cost, cfg.match_thresh)
        for ti, di in pairs:
            self._match(pool[ti], scores, classes, int(high[di]), now, pairs_seen)
            matched.append(pool[ti])
        # 2. weak detections keep the remaining tracked (not lost) tracks alive
        rest = [pool[i] for i in free_tracks if pool[i].state is TrackState.TRACKED]
        pairs, free_rest, _ = assign(iou_cost(self._boxes(rest), xyxy[low]), _SECOND_MATCH)
        for ti, di in pairs:
            self._match(rest[ti], scores, classes, int(low[di]), now, pairs_seen)
            matched.append(rest[ti])
        newly_lost = [rest[i] for i in free_rest]
        for track in newly_lost:
            track.state = TrackState.LOST
        # 3. tracks born on an earlier frame and not yet confirmed
        left = high[free_high]
        cost = self._cost(unconfirmed, xyxy[left], scores[left])
        pairs, free_unconfirmed, free_left = assign(cost, _UNCONFIRMED_MATCH)
        for ti, di in pairs:
            self._match(unconfirmed[ti], scores, classes, int(left[di]), now, pairs_seen)
            matched.append(unconfirmed[ti])
        for i in free_unconfirmed:
            unconfirmed[i].state = TrackState.REMOVED
        self._correct(pairs_seen, xyxy, now)
        # 4. new tracks from what is left
        born = [int(d) for d in left[free_left] if scores[d] >= cfg.new_track_thresh]
        if born:
            means, covs = self._kf.initiate(self._kf.to_measurement(xyxy[born]))
            for d, mean, cov in zip(born, means, covs, strict=True):
                track = _Track(mean, cov, float(scores[d]), int(classes[d]), d, now)
                if first:
                    self._confirm(track)
                matched.append(track)
        # 5. forget tracks lost for too long
        for track in self._lost:
            if track.state is TrackState.LOST and now - track.last_frame > cfg.track_buffer + _BUFFER_GRACE:
                track.state = TrackState.REMOVED

        self._merge(matched, newly_lost)
        shown = [t for t in self._tracked if t.activated]
        return self._report(shown, predicted=False)

    def predict(self, *, frame: int | None = None) -> TrackedObjects:
        """The tracked objects' predicted boxes on a frame the detector did not see.

        Tracks keep their ids, scores and classes; nothing is created, lost or
        forgotten, so a later :meth:`update` behaves as if it had jumped here.
        """
        now = self._advance(frame)
        confirmed = [t for t in self._tracked if t.activated]
        pool = confirmed + _without(self._lost, confirmed)
        self._predict(pool, now)
        return self._report(confirmed, predicted=True)

    # -- helpers -----------------------------------------------------------------
    def _forget_across_gap(self, now: int) -> None:
        """A jump longer than ``track_buffer`` (a camera that was reconnected after an outage: its frame
        numbers count the frames the gap would have held): every track not seen for longer than a lost
        track is kept is forgotten now, before matching, so the first frame after the gap starts new
        tracks instead of gluing them to objects seen before it. Shorter jumps (dropped frames,
        ``detect_every``) are predicted across as before."""
        limit = self.config.track_buffer + _BUFFER_GRACE
        stale = [t for t in self._tracked + self._lost if now - t.last_frame > limit]
        for track in stale:
            track.state = TrackState.REMOVED
        self._tracked = [t for t in self._tracked if t not in stale]
        self._lost = [t for t in self._lost if t not in stale]

    def _advance(self, frame: int | None) -> int:
        now = (0 if self._frame is None else self._frame + 1) if frame is None else int(frame)
        if self._frame is not None and now < self._frame:
            now = self._frame  # never step backwards; a repeated index is a zero-step frame
        self._frame = now
        return now

    def _predict(self, tracks: list[_Track], now: int) -> None:
        by_steps: dict[int, list[_Track]] = {}
        for t in tracks:
            if now > t.time:
                by_steps.setdefault(now - t.time, []).append(t)
        for steps, group in by_steps.items():
            mean, cov = self._kf.predict(
                np.stack([t.mean for t in group]), np.stack([t.cov for t in group]),
                frozen=np.array([t.state is not TrackState.TRACKED for t in group]), steps=steps,
            )
            for t, m, c in zip(group, mean, cov, strict=True):
                t.mean, t.cov, t.time = m, c, now

    def _compensate(self, tracks: list[_Track], affine: np.ndarray) -> None:
        if not tracks or np.allclose(affine, np.eye(2, 3)):
            return
        mean, cov = self._kf.warp(np.stack([t.mean for t in tracks]), np.stack([t.cov for t in tracks]), affine)
        for t, m, c in zip(tracks, mean, cov, strict=True):
            t.mean, t.cov = m, c

    def _boxes(self, tracks: list[_Track]) -> np.ndarray:
        if not tracks:
            return np.zeros((0, 4))
        return self._kf.to_xyxy(np.stack([t.mean for t in tracks]))

    def _cost(self, tracks: list[_Track], boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        cost = iou_cost(self._boxes(tracks), boxes)
        return fuse_scores(cost, scores) if self.config.fuse_score else cost

    def _match(self, track: _Track, scores: np.ndarray, classes: np.ndarray, d: int, now: int,
               pairs: list[tuple[_Track, int]]) -> None:
        """Book a track's match with detection ``d``; its Kalman correction waits for :meth:`_correct`.

        Each track is matched at most once per frame and no later stage looks at a matched
        track's box, so correcting all of them together afterwards is the same as one by one.
        """
        if not track.activated:
            self._confirm(track)
        track.state = TrackState.TRACKED
        track.score, track.class_id, track.det_index = float(scores[d]), int(classes[d]), d
        track.last_frame = now
        pairs.append((track, d))

    def _correct(self, pairs: list[tuple[_Track, int]], xyxy: np.ndarray, now: int) -> None:
        if not pairs:
            return
        tracks = [t for t, _ in pairs]
        mean, cov = self._kf.update(np.stack([t.mean for t in tracks]), np.stack([t.cov for t in tracks]),
                                    self._kf.to_measurement(xyxy[[d for _, d in pairs]]))
        for t, m, c in zip(tracks, mean, cov, strict=True):
            t.mean, t.cov, t.time = m, c, now

    def _confirm(self, track: _Track) -> None:
        track.activated = True
        track.track_id = self._next_id()

    def _merge(self, matched: list[_Track], newly_lost: list[_Track]) -> None:
        tracked = [t for t in self._tracked if t.state is TrackState.TRACKED]
        tracked += _without(matched, tracked)
        lost = [t for t in _without(self._lost, tracked) if t.state is TrackState.LOST]
        lost += newly_lost
        # One object both tracked and lost (a lost track came back as a new one): keep the older.
        if tracked and lost:
            overlap = box_iou(self._boxes(tracked), self._boxes(lost)) > _DUPLICATE_IOU
            drop_tracked, drop_lost = set(), set()
            for i, j in zip(*np.nonzero(overlap), strict=True):
                age_t = tracked[i].last_frame - tracked[i].start_frame
                age_l = lost[j].last_frame - lost[j].start_frame
                (drop_lost if age_t > age_l else drop_tracked).add(j if age_t > age_l else i)
            tracked = [t for i, t in enumerate(tracked) if i not in drop_tracked]
            lost = [t for j, t in enumerate(lost) if j not in drop_lost]
        self._tracked, self._lost = tracked, lost

    def _report(self, tracks: list[_Track], *, predicted: bool) -> TrackedObjects:
        return TrackedObjects(
            xyxy=self._boxes(tracks).astype(np.float32).reshape(-1, 4),
            track_id=np.array([t.track_id for t in tracks], dtype=np.int64),
            confidence=np.array([t.score for t in tracks], dtype=np.float32),
            class_id=np.array([t.class_id for t in tracks], dtype=np.int32),
            det_index=np.array([-1 if predicted else t.det_index for t in tracks], dtype=np.intp),
            predicted=predicted,
        )
