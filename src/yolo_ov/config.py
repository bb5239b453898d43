"""Typed configuration objects: one per concern, frozen and keyword-only.

``RuntimeConfig`` says *how* OpenVINO compiles and runs the model (the
latency/throughput choice lives here); ``DetectConfig`` says *what* counts as a
detection. Both validate themselves on construction, so an invalid combination
fails early with a message that names the field, and nothing is silently
rewritten.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "DetectConfig",
    "Mode",
    "Precision",
    "RuntimeConfig",
    "SliceConfig",
    "default_cache_dir",
    "load_runtime_config",
    "parse_slice_size",
]


class Mode(str, enum.Enum):
    """The OpenVINO performance hint a model is compiled with.

    ``LATENCY``: one request at a time, each answered as fast as possible.
    ``THROUGHPUT``: many requests in flight over several CPU/GPU streams.
    ``CUMULATIVE_THROUGHPUT``: throughput summed over several devices (AUTO/MULTI).
    """

    LATENCY = "latency"
    THROUGHPUT = "throughput"
    CUMULATIVE_THROUGHPUT = "cumulative_throughput"

    @property
    def ov_hint(self) -> str:
        """The value of OpenVINO's ``PERFORMANCE_HINT`` property."""
        return self.value.upper()

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        if isinstance(value, Mode):
            return value
        try:
            return cls(str(value).strip().lower().replace("-", "_"))
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ConfigError(f"mode {value!r} is not one of: {choices}") from None


class Precision(str, enum.Enum):
    """OpenVINO ``INFERENCE_PRECISION_HINT`` values a user may force."""

    F32 = "f32"
    BF16 = "bf16"
    F16 = "f16"

    @classmethod
    def parse(cls, value: str | Precision) -> Precision:
        if isinstance(value, Precision):
            return value
        try:
            return cls(str(value).strip().lower().replace("fp", "f"))
        except ValueError:
            raise ConfigError(
                f"inference_precision {value!r} is not one of: f32, bf16, f16"
            ) from None


def default_cache_dir() -> Path:
    """The per-user folder for yolo-ov's model cache and downloaded models.

    ``YOLO_OV_CACHE_DIR`` wins; otherwise ``$XDG_CACHE_HOME/yolo-ov`` (or
    ``~/.cache/yolo-ov``). Nothing is created here: callers create what they use.
    """
    env = os.environ.get("YOLO_OV_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "yolo-ov"


_AUTO_CACHE = "auto"


def _positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """How the model is compiled and run by OpenVINO.

    Attributes:
        mode: the performance hint (``latency``, ``throughput``,
            ``cumulative_throughput``).
        device: an OpenVINO device string: ``CPU``, ``GPU``, ``NPU``, ``AUTO``,
            ``AUTO:GPU,CPU``, ``MULTI:GPU,CPU``, ``HETERO:GPU,CPU``. Checked
            against ``Core.available_devices`` when the model is compiled.
        cache_dir: OpenVINO model cache folder. ``"auto"`` (default) uses a
            per-user folder (:func:`default_cache_dir`); ``None`` turns caching
            off. A warm cache turns a compile of hundreds of ms into a load.
        enable_mmap: map the weights file instead of reading it. On by default;
            turn it off for models on network or removable drives.
        num_streams: force the number of streams (default: the hint decides).
        num_requests: force the number of in-flight requests used by the
            throughput pipeline (default: OpenVINO's optimal number).
        inference_num_threads: cap the threads OpenVINO uses.
        inference_precision: force ``f32``, ``bf16`` or ``f16`` (default: the
            device decides; on CPUs with AMX/AVX512-BF16 that is bf16).
        batch: the model's batch size (the IR is reshaped when it differs).
        imgsz: ``(height, width)`` the model is reshaped to; default the
            model's own.

    Example:
        >>> RuntimeConfig(mode="throughput", device="CPU").mode
        <Mode.THROUGHPUT: 'throughput'>
    """

    mode: Mode = Mode.LATENCY
    device: str = "CPU"
    cache_dir: Path | str | None = _AUTO_CACHE
    enable_mmap: bool = True
    num_streams: int | None = None
    num_requests: int | None = None
    inference_num_threads: int | None = None
    inference_precision: Precision | None = None
    batch: int = 1
    imgsz: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        if not isinstance(self.device, str) or not self.device.strip():
            raise ConfigError(f"device must be a non-empty string such as 'CPU', got {self.device!r}")
        object.__setattr__(self, "device", self.device.strip().upper())
        if self.inference_precision is not None:
            object.__setattr__(self, "inference_precision", Precision.parse(self.inference_precision))
        if self.cache_dir is not None and self.cache_dir != _AUTO_CACHE:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        for name in ("num_streams", "num_requests", "inference_num_threads", "batch"):
            _positive(name, getattr(self, name))
        if self.imgsz is not None:
            object.__setattr__(self, "imgsz", normalize_imgsz(self.imgsz))

    @property
    def resolved_cache_dir(self) -> Path | None:
        """The cache folder actually used (``None`` when caching is off)."""
        if self.cache_dir is None:
            return None
        if self.cache_dir == _AUTO_CACHE:
            return default_cache_dir() / "ov_cache"
        return Path(self.cache_dir)

    def ov_properties(self) -> dict[str, Any]:
        """The OpenVINO compile properties this configuration stands for."""
        props: dict[str, Any] = {"PERFORMANCE_HINT": self.mode.ov_hint}
        cache = self.resolved_cache_dir
        if cache is not None:
            props["CACHE_DIR"] = str(cache)
        if self.num_streams is not None:
            props["NUM_STREAMS"] = str(self.num_streams)
        if self.inference_num_threads is not None:
            props["INFERENCE_NUM_THREADS"] = str(self.inference_num_threads)
        if self.inference_precision is not None:
            props["INFERENCE_PRECISION_HINT"] = self.inference_precision.value
        return props

    def with_(self, **changes: Any) -> RuntimeConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :func:`load_runtime_config` reads back."""
        out = asdict(self)
        out["mode"] = self.mode.value
        out["inference_precision"] = self.inference_precision.value if self.inference_precision else None
        out["cache_dir"] = None if self.cache_dir is None else str(self.cache_dir)
        out["imgsz"] = list(self.imgsz) if self.imgsz else None
        return out


def normalize_imgsz(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``640`` -> ``(640, 640)``; ``(h, w)`` stays; anything else is an error."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(f"imgsz must be an int or (height, width), got {value!r}") from None
    if h < 32 or w < 32:
        raise ConfigError(f"imgsz must be at least 32 pixels on each side, got {(h, w)}")
    return (h, w)


def load_runtime_config(path: str | Path, **overrides: Any) -> RuntimeConfig:
    """Read a ``RuntimeConfig`` saved as JSON (e.g. by ``yolo-ov tune``).

    The file may hold the config at the top level or under a ``"runtime"`` key;
    unknown keys are an error so a typo is not silently ignored. ``overrides``
    (non-``None`` values only) win over the file.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: not a readable JSON config ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("runtime"), dict):
        data = data["runtime"]
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object with runtime settings")
    known = {f.name for f in fields(RuntimeConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown runtime setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    from_file = set(data) - set(given)
    data.update(given)
    if isinstance(data.get("imgsz"), list):
        data["imgsz"] = tuple(data["imgsz"])
    try:
        return RuntimeConfig(**data)
    except ConfigError as exc:  # a bad value written in the file: name the file (a command's flags name themselves)
        if str(exc).partition(" ")[0] in from_file:
            raise ConfigError(f"{p}: {exc}") from None
        raise


@dataclass(frozen=True, kw_only=True)
class DetectConfig:
    """What counts as a detection. Defaults match Ultralytics' ``predict``.

    Attributes:
        conf: minimum confidence.
        iou: IoU above which NMS suppresses the weaker box.
        max_det: most detections kept per image.
        classes: keep only these class ids (``None``: all).
        agnostic: NMS across classes instead of per class.
        multi_label: let one anchor yield several classes above ``conf``
            (what Ultralytics' validator does; off for prediction).
        fast_decode: decode a JPEG at a half, quarter or eighth of its size
            when the letterbox needs no more pixels (12 MP photos, 4K frames;
            see :func:`yolo_ov.imaging.decode.load_image_for`): much less decoding
            work, boxes still in original pixels, but the network sees
            slightly different pixels than after Ultralytics' full decode.
            Inputs already near the model's size are never affected.
    """

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    classes: tuple[int, ...] | None = None
    agnostic: bool = False
    multi_label: bool = False
    fast_decode: bool = False
    max_candidates: int = field(default=30000, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.conf) <= 1.0:
            raise ConfigError(f"conf must be within [0, 1], got {self.conf!r}")
        if not 0.0 <= float(self.iou) <= 1.0:
            raise ConfigError(f"iou must be within [0, 1], got {self.iou!r}")
        _positive("max_det", self.max_det)
        _positive("max_candidates", self.max_candidates)
        if self.classes is not None:
            classes = tuple(int(c) for c in self.classes)
            if any(c < 0 for c in classes):
                raise ConfigError(f"classes must be non-negative class ids, got {classes}")
            object.__setattr__(self, "classes", classes)


SLICE_MERGES = ("greedynmm", "nmm", "nms")
SLICE_METRICS = ("ios", "iou")


def parse_slice_size(value: str | int | tuple[int, int] | list[int], setting: str = "--slice") -> tuple[int, int]:
    """A tile size as the user typed it -> ``(height, width)``.

    ``640`` or ``"640"`` is a square tile; ``"512,640"`` (or ``512x640``) is
    height 512, width 640, the order of every other ``(h, w)`` in yolo-ov.

    Raises:
        ConfigError: not one or two positive integers; the message names ``setting``.
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.lower().replace("x", ",").split(",")]
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{setting} must be a tile size like 640 or 512,640, got {value!r}") from None
    elif isinstance(value, (list, tuple)):
        numbers = [int(v) for v in value]
    else:
        numbers = [int(value)]
    if len(numbers) not in (1, 2):
        raise ConfigError(f"{setting} must be one size or height,width, got {value!r}")
    h, w = (numbers[0], numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
    if h <= 0 or w <= 0:
        raise ConfigError(f"{setting} must be a positive tile size in pixels, got {value!r}")
    return h, w


def _pair(value: float | tuple[float, float] | list[float]) -> tuple[float, float]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(value)
        return float(value[0]), float(value[1])
    return float(value), float(value)


@dataclass(frozen=True, kw_only=True)
class SliceConfig:
    """Sliced (tiled) inference: cut a large image into overlapping tiles, detect in each, merge.

    The defaults and the meaning of every field are SAHI's (``get_sliced_prediction``),
    so the same settings give the same tiles and the same merge:

    Attributes:
        size: tile ``(height, width)`` in original pixels (SAHI ``slice_height``/``slice_width``);
            an int is a square tile. ``--slice 640`` / ``--slice 512,640``.
        overlap: fraction of a tile shared with its neighbour, ``(height, width)`` or one
            float for both (SAHI ``overlap_height_ratio``/``overlap_width_ratio``); in ``[0, 1)``.
        full_pass: also run the whole image once and merge it in (SAHI ``perform_standard_pred``);
            skipped when the image is a single tile, as SAHI does.
        merge: ``greedynmm`` (SAHI's default), ``nmm`` (transitive) or ``nms`` (SAHI ``postprocess_type``).
        metric: overlap measure of the merge, ``ios`` (intersection over the smaller box) or
            ``iou`` (SAHI ``postprocess_match_metric``).
        threshold: overlap at or above which two detections are merged or suppressed
            (SAHI ``postprocess_match_threshold``).
        class_agnostic: merge across classes (SAHI ``postprocess_class_agnostic``).

    Example:
        >>> SliceConfig(size=512).size, SliceConfig(size=512).overlap
        ((512, 512), (0.2, 0.2))
    """

    size: int | tuple[int, int] = 640
    overlap: float | tuple[float, float] = 0.2
    full_pass: bool = True
    merge: str = "greedynmm"
    metric: str = "ios"
    threshold: float = 0.5
    class_agnostic: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", parse_slice_size(self.size, "slice"))
        try:
            overlap = _pair(self.overlap)
        except (TypeError, ValueError):
            raise ConfigError(f"overlap must be a ratio like 0.2 or (0.2, 0.1), got {self.overlap!r}") from None
        for ratio in overlap:
            if not 0.0 <= ratio < 1.0:
                raise ConfigError(f"overlap must be within [0, 1) (a fraction of the tile), got {self.overlap!r}")
        object.__setattr__(self, "overlap", overlap)
        merge = str(self.merge).lower().replace("_", "").replace("-", "")
        if merge not in SLICE_MERGES:
            raise ConfigError(f"slice merge must be one of {', '.join(SLICE_MERGES)}, got {self.merge!r}")
        object.__setattr__(self, "merge", merge)
        metric = str(self.metric).lower()
        if metric not in SLICE_METRICS:
            raise ConfigError(f"slice match metric must be one of {', '.join(SLICE_METRICS)}, got {self.metric!r}")
        object.__setattr__(self, "metric", metric)
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ConfigError(f"slice match threshold must be within [0, 1], got {self.threshold!r}")
        object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def tile_hw(self) -> tuple[int, int]:
        """``(height, width)`` of a tile (``size`` normalised)."""
        return self.size  # type: ignore[return-value]

    @property
    def overlap_hw(self) -> tuple[float, float]:
        """``(height, width)`` overlap ratios (``overlap`` normalised)."""
        return self.overlap  # type: ignore[return-value]
