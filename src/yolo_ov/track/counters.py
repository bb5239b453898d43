"""Counting over track ids: objects crossing a line, objects inside a zone.

The two helpers video users reach for first, kept small. Each follows the
tracked results of one stream (use one :class:`Counters` per run: it keeps
one state per stream) and reports plain numbers for the JSONL record; both
can draw themselves on the frame.

A track's position is the centre of its box. A **line** counts a track once
per direction when its centre moves from one side of the segment to the
other across the segment itself: ``in`` from the left of the line, as
drawn from its first point to its second, to its right; ``out`` the other
way. A **zone** (a polygon) reports how many tracked objects are inside on
this frame (``occupancy``) and how many distinct ids have been inside so far
(``entered``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError
from ..results import Detections

__all__ = ["Counters", "Line", "Zone", "parse_line", "parse_zone"]

Point = tuple[float, float]


@dataclass(frozen=True, kw_only=True)
class Line:
    """A counting line from ``start`` to ``end`` (pixels)."""

    name: str
    start: Point
    end: Point

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ConfigError(f"line {self.name!r}: its two points are the same")


@dataclass(frozen=True, kw_only=True)
class Zone:
    """A counting zone: a polygon of at least three points (pixels)."""

    name: str
    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        if len(self.points) < 3:
            raise ConfigError(f"zone {self.name!r}: a polygon needs at least 3 points, got {len(self.points)}")


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected comma-separated pixel coordinates") from None


def parse_line(text: str, name: str) -> Line:
    """``"x1,y1,x2,y2"`` -> :class:`Line`."""
    values = _numbers(text, "--line")
    if len(values) != 4:
        raise ConfigError(f"--line {text!r}: expected x1,y1,x2,y2 (4 numbers), got {len(values)}")
    return Line(name=name, start=(values[0], values[1]), end=(values[2], values[3]))


def parse_zone(text: str, name: str) -> Zone:
    """``"x1,y1,x2,y2,x3,y3[,...]"`` -> :class:`Zone`."""
    values = _numbers(text, "--zone")
    if len(values) < 6 or len(values) % 2:
        raise ConfigError(f"--zone {text!r}: expected at least 3 x,y pairs (an even count of numbers)")
    return Zone(name=name, points=tuple((values[i], values[i + 1]) for i in range(0, len(values), 2)))


def _side(line: Line, p: np.ndarray) -> np.ndarray:
    (x1, y1), (x2, y2) = line.start, line.end
    return np.sign((x2 - x1) * (p[..., 1] - y1) - (y2 - y1) * (p[..., 0] - x1))


def _segments_cross(line: Line, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the movement ``a -> b`` crosses the line segment (not its extension)."""
    q1, q2 = np.asarray(line.start, float), np.asarray(line.end, float)

    def orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> float:
        return float(np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])))

    return orient(a, b, q1) != orient(a, b, q2) and orient(q1, q2, a) != orient(q1, q2, b)


#: Frames after which an id not seen any more is forgotten by the counters (its counts stay): a
#: tracker forgets a lost track after ``track_buffer`` (30) frames, so its id never comes back
#: later than that; forgetting keeps memory flat on a camera that runs for weeks.
FORGET_AFTER = 300


@dataclass
class _LineState:
    line: Line
    count_in: int = 0
    count_out: int = 0
    # id -> (last centre, frame tick last seen, directions already counted: bit 1 in, bit 2 out)
    tracks: dict[int, tuple[np.ndarray, int, int]] = field(default_factory=dict)

    def update(self, ids: np.ndarray, centres: np.ndarray, tick: int) -> None:
        for tid, c in zip(ids.tolist(), centres, strict=True):
            prev, _, done = self.tracks.get(tid, (None, 0, 0))
            self.tracks[tid] = (c, tick, done)
            if prev is None:
                continue
            before, after = _side(self.line, prev), _side(self.line, c)
            if before == after or before == 0 or after == 0 or not _segments_cross(self.line, prev, c):
                continue
            direction = 1 if after > 0 else 2
            if not done & direction:
                self.count_in += direction == 1
                self.count_out += direction == 2
                self.tracks[tid] = (c, tick, done | direction)
        if tick % FORGET_AFTER == 0:
            self.tracks = {k: v for k, v in self.tracks.items() if tick - v[1] <= FORGET_AFTER}

    def to_dict(self) -> dict[str, int]:
        return {"in": self.count_in, "out": self.count_out}


@dataclass
class _ZoneState:
    zone: Zone
    inside: int = 0
    entered: int = 0
    seen: dict[int, int] = field(default_factory=dict)  # id that has been inside -> frame tick last inside

    def update(self, ids: np.ndarray, centres: np.ndarray, tick: int) -> None:
        poly = np.asarray(self.zone.points, np.float32).reshape(-1, 1, 2)
        now = [tid for tid, c in zip(ids.tolist(), centres, strict=True)
               if cv2.pointPolygonTest(poly, (float(c[0]), float(c[1])), False) >= 0]
        self.inside = len(now)
        for tid in now:
            self.entered += tid not in self.seen
            self.seen[tid] = tick
        if tick % FORGET_AFTER == 0:
            self.seen = {k: t for k, t in self.seen.items() if tick - t <= FORGET_AFTER}

    def to_dict(self) -> dict[str, int]:
        return {"occupancy": self.inside, "entered": self.entered}


class Counters:
    """Line and zone counters over the tracked results of a run, one state per stream.

    Args:
        lines: counting lines; zones: counting polygons (same for every stream).

    Example:
        >>> c = Counters(lines=[Line(name="door", start=(0, 50), end=(100, 50))])
        >>> a = Detections([[40, 20, 60, 40]], [0.9], [0], data={"track_id": np.array([3])})
        >>> b = Detections([[40, 60, 60, 80]], [0.9], [0], data={"track_id": np.array([3])})
        >>> _ = c.update(a)  # above the line
        >>> c.update(b)["lines"]  # below it: crossed left-to-right's right-hand side
        {'door': {'in': 1, 'out': 0}}
    """

    def __init__(self, *, lines: Iterable[Line] = (), zones: Iterable[Zone] = ()) -> None:
        self.lines = list(lines)
        self.zones = list(zones)
        names = [x.name for x in (*self.lines, *self.zones)]
        if len(set(names)) != len(names):
            raise ConfigError(f"counter names must be unique, got {names}")
        self._streams: dict[int, tuple[list[_LineState], list[_ZoneState]]] = {}
        self._ticks: dict[int, int] = {}

    def __bool__(self) -> bool:
        return bool(self.lines or self.zones)

    @property
    def streams(self) -> list[int]:
        """The streams counted so far."""
        return sorted(self._streams)

    def _state(self, stream: int) -> tuple[list[_LineState], list[_ZoneState]]:
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = ([_LineState(x) for x in self.lines], [_ZoneState(z) for z in self.zones])
        return state

    def update(self, result: Detections) -> dict[str, Any]:
        """Count one tracked frame; returns this stream's counts so far (the JSONL ``counts``)."""
        ids = np.asarray(result.data.get("track_id", np.zeros(0, np.int64)))
        centres = (result.xyxy[:, :2] + result.xyxy[:, 2:]) / 2 if len(ids) else np.zeros((0, 2), np.float32)
        stream = result.stream or 0
        lines, zones = self._state(stream)
        tick = self._ticks[stream] = self._ticks.get(stream, 0) + 1
        for s in (*lines, *zones):
            s.update(ids, centres, tick)
        return self.counts(stream)

    def counts(self, stream: int = 0) -> dict[str, Any]:
        lines, zones = self._state(stream)
        return {"lines": {s.line.name: s.to_dict() for s in lines},
                "zones": {s.zone.name: s.to_dict() for s in zones}}

    def draw(self, image: np.ndarray, stream: int = 0) -> np.ndarray:
        """Draw the lines and zones with their counts on ``image`` (in place; returned)."""
        lw = max(round(sum(image.shape[:2]) / 2 * 0.003), 2)
        scale = lw / 3
        lines, zones = self._state(stream)
        for s in zones:
            pts = np.asarray(s.zone.points, np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [pts], True, (255, 144, 30), lw, cv2.LINE_AA)
            _label(image, f"{s.zone.name}: {s.inside} (entered {s.entered})", tuple(pts[0, 0]), scale, lw)
        for s in lines:
            p1 = tuple(int(v) for v in s.line.start)
            p2 = tuple(int(v) for v in s.line.end)
            cv2.arrowedLine(image, p1, p2, (0, 220, 255), lw, cv2.LINE_AA, tipLength=0.02)
            _label(image, f"{s.line.name}: in {s.count_in} out {s.count_out}", p1, scale, lw)
        return image


def _label(image: np.ndarray, text: str, at: Sequence[int], scale: float, lw: int) -> None:
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(lw - 1, 1))
    x, y = int(at[0]), max(int(at[1]), th + 4)
    cv2.rectangle(image, (x, y - th - 4), (x + tw + 4, y + 2), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(lw - 1, 1),
                cv2.LINE_AA)
