"""Tracker settings: one frozen, keyword-only object, read from Ultralytics' YAML format.

The defaults are Ultralytics' ``bytetrack.yaml`` (and, for BoT-SORT, its
``botsort.yaml``), so ``tracker="bytetrack"`` behaves like
``model.track(tracker="bytetrack.yaml")``. A user's own file in the same
format (``--tracker-config FILE``) is checked key by key: a typo or a
feature this package does not ship (appearance re-id) is an error that names
the key, never silently ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["GMC_METHODS", "TRACKER_TYPES", "TrackerConfig", "load_tracker_config"]

#: Tracker algorithms shipped here.
TRACKER_TYPES = ("bytetrack", "botsort")
#: Camera-motion compensation methods shipped for BoT-SORT (``none`` turns it off).
GMC_METHODS = ("sparseOptFlow", "none")

#: Keys of Ultralytics' tracker files that are accepted and have no effect here:
#: ``model`` names the re-id network, which is only read when ``with_reid`` is on.
_IGNORED_KEYS = frozenset({"model"})


@dataclass(frozen=True, kw_only=True)
class TrackerConfig:
    """How detections become tracks (names and meanings as in Ultralytics' YAML files).

    Attributes:
        tracker_type: ``bytetrack`` or ``botsort``.
        track_high_thresh: detections at or above this score take part in the
            first association (and may start tracks).
        track_low_thresh: detections above this (and below the high threshold)
            only extend existing tracks in the second association, ByteTrack's
            idea; the detector's own ``conf`` must be at most this for them to
            exist (``yolo-ov track`` defaults ``conf`` to 0.1 for that reason).
        new_track_thresh: an unmatched detection starts a track only at or
            above this score.
        track_buffer: frames a lost track is kept for re-identification.
        match_thresh: largest association cost (1 - IoU, score-fused) accepted
            in the first association.
        fuse_score: multiply IoU by the detection score before matching.
        gmc_method: BoT-SORT camera-motion compensation: ``sparseOptFlow``
            (OpenCV sparse optical flow) or ``none``. Ignored by ByteTrack.
        proximity_thresh, appearance_thresh: BoT-SORT re-id gates; accepted
            for file compatibility, used only with re-id (not shipped).
        with_reid: appearance re-id; ``True`` is refused (not shipped).

    Example:
        >>> TrackerConfig.defaults("botsort").gmc_method
        'sparseOptFlow'
    """

    tracker_type: str = "bytetrack"
    track_high_thresh: float = 0.25
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.25
    track_buffer: int = 30
    match_thresh: float = 0.8
    fuse_score: bool = True
    gmc_method: str = "none"
    proximity_thresh: float = 0.5
    appearance_thresh: float = 0.8
    with_reid: bool = False

    def __post_init__(self) -> None:
        if self.tracker_type not in TRACKER_TYPES:
            raise ConfigError(f"tracker_type {self.tracker_type!r}: expected one of {', '.join(TRACKER_TYPES)}")
        for name in ("track_high_thresh", "track_low_thresh", "new_track_thresh", "match_thresh",
                     "proximity_thresh", "appearance_thresh"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.track_low_thresh > self.track_high_thresh:
            raise ConfigError(
                f"track_low_thresh ({self.track_low_thresh}) must not exceed track_high_thresh "
                f"({self.track_high_thresh})"
            )
        if isinstance(self.track_buffer, bool) or not isinstance(self.track_buffer, int) or self.track_buffer < 0:
            raise ConfigError(f"track_buffer must be a non-negative integer (frames), got {self.track_buffer!r}")
        for name in ("fuse_score", "with_reid"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        method = "none" if self.gmc_method in (None, "None") else self.gmc_method
        if method not in GMC_METHODS:
            raise ConfigError(
                f"gmc_method {self.gmc_method!r}: this package ships {', '.join(GMC_METHODS)} "
                "(Ultralytics' orb/sift/ecc are not implemented)"
            )
        object.__setattr__(self, "gmc_method", method)
        if self.with_reid:
            raise ConfigError("with_reid: true: appearance re-id is not shipped; set with_reid: false")

    @classmethod
    def defaults(cls, tracker_type: str = "bytetrack") -> TrackerConfig:
        """Ultralytics' default settings for ``bytetrack`` or ``botsort``."""
        if tracker_type == "botsort":
            return cls(tracker_type="botsort", gmc_method="sparseOptFlow")
        return cls(tracker_type=tracker_type)

    def with_(self, **changes: Any) -> TrackerConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_tracker_config(spec: str | Path | TrackerConfig | None) -> TrackerConfig:
    """A :class:`TrackerConfig` from a name, an Ultralytics-format YAML file, or a config.

    ``spec``: ``"bytetrack"``/``"botsort"`` (also ``"bytetrack.yaml"``, the
    names Ultralytics users type), a path to a YAML file in Ultralytics'
    format, an existing config, or ``None`` (ByteTrack defaults). Keys a file
    leaves out take the defaults of its ``tracker_type``.

    Raises:
        ConfigError: an unknown name, an unreadable file, an unknown key or a bad value.

    Example:
        >>> load_tracker_config("bytetrack.yaml").match_thresh
        0.8
    """
    if spec is None:
        return TrackerConfig.defaults()
    if isinstance(spec, TrackerConfig):
        return spec
    text = str(spec)
    name = text[: -len(".yaml")] if text.endswith(".yaml") else text
    path = Path(text).expanduser()
    if name in TRACKER_TYPES and not path.is_file():
        return TrackerConfig.defaults(name)
    if not path.is_file():
        raise ConfigError(
            f"tracker {text!r}: not {' or '.join(TRACKER_TYPES)} and no such file "
            "(pass a tracker name or a YAML file in Ultralytics' bytetrack.yaml/botsort.yaml format)"
        )
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the tracker config ({exc})") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a tracker config must be a YAML mapping of settings")
    known = {f.name for f in fields(TrackerConfig)}
    unknown = sorted(set(values) - known - _IGNORED_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown tracker setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    kind = values.get("tracker_type", "bytetrack")
    if kind not in TRACKER_TYPES:
        raise ConfigError(f"{path}: tracker_type {kind!r}: expected one of {', '.join(TRACKER_TYPES)}")
    given = {k: v for k, v in values.items() if k in known}
    try:
        return TrackerConfig.defaults(kind).with_(**given)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
