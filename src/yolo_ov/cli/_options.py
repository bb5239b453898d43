"""Options shared by several commands, declared once."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..config import DetectConfig, RuntimeConfig, SliceConfig, load_runtime_config, normalize_imgsz, parse_slice_size
from ..errors import ConfigError
from ..pipeline import PipelineConfig, Specialize

if TYPE_CHECKING:
    from ..detector import Detector

ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", "-m",
                 help="OpenVINO export folder, .xml, .onnx or .tflite (default: $YOLO_OV_MODEL, then cache)"),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", "-d", help="CPU, GPU, NPU, AUTO, AUTO:GPU,CPU, ...")]
ModeOpt = Annotated[
    str | None, typer.Option("--mode", help="latency | throughput | cumulative_throughput")
]
ImgszOpt = Annotated[str | None, typer.Option("--imgsz", help="network input size: 640 or 384,640 (h,w)")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="runtime settings JSON (e.g. from 'yolo-ov tune')")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="turn OpenVINO's model cache off")]
NoMmapOpt = Annotated[bool, typer.Option("--no-mmap", help="read weights instead of mapping them (network drives)")]

# -- the detection and pipeline options of predict and track ------------------------
IouOpt = Annotated[float, typer.Option(help="NMS IoU threshold")]
AgnosticOpt = Annotated[bool, typer.Option("--agnostic-nms", help="NMS across classes")]
FastDecodeOpt = Annotated[bool, typer.Option(
    "--fast-decode", help="decode large JPEGs at 1/2, 1/4 or 1/8 size when the letterbox needs no more "
    "(12 MP photos, 4K frames: much faster; outputs differ slightly from Ultralytics' full decode)")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", help="host threads for decode/NMS (default: 1, and 2 once an image has 4 MP or more)")]

# -- sliced inference (predict, val): SAHI's settings and defaults ------------------------
SliceOpt = Annotated[str | None, typer.Option(
    "--slice", help="sliced inference for small objects in large images: cut each image into overlapping tiles "
    "of this size (640, or height,width like 512,640), detect in each at once, merge (SAHI's results)")]
OverlapOpt = Annotated[float, typer.Option("--overlap", help="with --slice: fraction of a tile shared with its "
                                           "neighbour, in [0, 1)")]
FullPassOpt = Annotated[bool, typer.Option("--full-pass/--no-full-pass", help="with --slice: also run the whole "
                                           "image once and merge it in (SAHI's perform_standard_pred)")]
SliceMergeOpt = Annotated[str, typer.Option("--slice-merge", help="with --slice: greedynmm | nmm | nms")]
SliceMetricOpt = Annotated[str, typer.Option("--slice-metric", help="with --slice: ios | iou, the overlap measure "
                                             "of the merge")]
SliceThresholdOpt = Annotated[float, typer.Option("--slice-threshold", help="with --slice: overlap at or above "
                                                  "which detections merge")]
SliceAgnosticOpt = Annotated[bool, typer.Option("--slice-agnostic", help="with --slice: merge across classes")]


def slice_config(size: str | None, *, overlap: float = 0.2, full_pass: bool = True, merge: str = "greedynmm",
                 metric: str = "ios", threshold: float = 0.5, agnostic: bool = False) -> SliceConfig | None:
    """The :class:`SliceConfig` of the ``--slice ...`` options, ``None`` without ``--slice``.

    Raises:
        ConfigError: a bad setting (one line naming it), or a slicing option given without ``--slice``.
    """
    if size is None:
        changed = [name for name, value, default in (
            ("--overlap", overlap, 0.2), ("--no-full-pass", full_pass, True), ("--slice-merge", merge, "greedynmm"),
            ("--slice-metric", metric, "ios"), ("--slice-threshold", threshold, 0.5),
            ("--slice-agnostic", agnostic, False)) if value != default]
        if changed:
            raise ConfigError(f"{', '.join(changed)} go{'es' if len(changed) == 1 else ''} with --slice SIZE "
                              "(e.g. --slice 640)")
        return None
    try:
        return SliceConfig(size=parse_slice_size(size, "--slice"), overlap=overlap, full_pass=full_pass,
                           merge=merge, metric=metric, threshold=threshold, class_agnostic=agnostic)
    except ConfigError as exc:
        message = str(exc)
        for field, option in (("overlap", "--overlap"), ("slice merge", "--slice-merge"),
                              ("slice match metric", "--slice-metric"), ("slice match threshold", "--slice-threshold")):
            if message.startswith(field):
                message = option + message[len(field):]
                break
        raise ConfigError(message) from None


def open_detector(model: str | Path | None, *, runtime: RuntimeConfig, detect: DetectConfig) -> Detector:
    """The :class:`~yolo_ov.Detector` a command runs on.

    The one place where ``predict`` and ``track`` build it: the tests put a
    fake-engine Detector here (``monkeypatch.setattr(_options, "open_detector", ...)``)
    to run the commands without a model.
    """
    from ..detector import Detector

    return Detector(model, runtime=runtime, detect=detect)


def pipeline_config(specialize: bool | None, workers: int | None) -> PipelineConfig:
    """The pipeline settings of ``--specialize/--no-specialize`` and ``--workers``."""
    return PipelineConfig(specialize=Specialize.parse(specialize),
                          **({"workers": workers} if workers is not None else {}))


def refuse_missing_inputs(missing: list[str], given: int) -> None:
    """A usage error (exit 2, before the model loads) when none of the ``given`` inputs exists.

    A missing input among existing ones is not an error here: the run
    records it as a failed input and goes on.
    """
    if missing and len(missing) == given:
        raise ConfigError(f"{missing[0]}: no such file or folder" if len(missing) == 1
                          else f"none of the inputs exist: {', '.join(missing)}")


def parse_imgsz(text: str | None) -> tuple[int, int] | None:
    """``"640"`` -> (640, 640); ``"384,640"`` -> (384, 640)."""
    if text is None:
        return None
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--imgsz {text!r}: expected a number like 640 or 'h,w' like 384,640") from None
    if len(values) == 1:
        return normalize_imgsz(values[0])
    if len(values) == 2:
        return normalize_imgsz((values[0], values[1]))
    raise ConfigError(f"--imgsz {text!r}: expected one or two numbers")


def build_runtime(
    *,
    mode: str | None,
    device: str | None,
    imgsz: str | None = None,
    config: Path | None = None,
    no_cache: bool = False,
    no_mmap: bool = False,
    default_mode: str = "latency",
    **extra: object,
) -> RuntimeConfig:
    """A RuntimeConfig from CLI options; options given win over a ``--config`` file."""
    values: dict[str, object] = {"mode": mode, "device": device, "imgsz": parse_imgsz(imgsz), **extra}
    if no_mmap:
        values["enable_mmap"] = False
    given = {k: v for k, v in values.items() if v is not None}
    if config is not None:
        cfg = load_runtime_config(config, **given)
    else:
        cfg = RuntimeConfig(**{"mode": default_mode, **given})  # type: ignore[arg-type]
    return cfg.with_(cache_dir=None) if no_cache else cfg


def tuned_model(model: str | None, config: Path | None) -> str | None:
    """``--model`` if given, else the model a ``--config`` file names (``yolo-ov tune --models`` writes the
    one it picked there), else ``None`` (the default model)."""
    if model is not None or config is None:
        return model
    try:
        data = json.loads(Path(config).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # load_runtime_config reports the file's problem in one line
    named = data.get("model") if isinstance(data, dict) else None
    return str(named) if isinstance(named, str) and named else None


def parse_classes(text: str | None) -> tuple[int | str, ...] | None:
    """``"0,2,5"`` -> (0, 2, 5); ``"person,car"`` -> ("person", "car"); ids and names may mix.

    Only the syntax is checked here; :func:`resolve_classes` checks the
    values against the model's classes once it is loaded.
    """
    if text is None:
        return None
    tokens = [c.strip() for c in text.split(",") if c.strip()]
    if not tokens:
        raise ConfigError(f"--classes {text!r}: expected class ids or names like 0,2 or person,car")
    return tuple(int(c) if c.lstrip("-").isdigit() else c for c in tokens)


def resolve_classes(wanted: tuple[int | str, ...], names: Mapping[int, str]) -> tuple[int, ...]:
    """Class ids for ``wanted`` (ids or names, names case-insensitive) in a model with ``names``.

    Raises:
        ConfigError: an id outside the model's classes (the message gives the
            valid range) or a name the model does not have (with close matches).
    """
    ids = sorted(names)
    valid = (f"this model's class ids are {ids[0]}-{ids[-1]} ({len(ids)} classes)" if ids
             else "this model has no classes")
    by_name = {str(n).lower(): i for i, n in names.items()}
    out: list[int] = []
    for token in wanted:
        if isinstance(token, int):
            if token not in names:
                raise ConfigError(f"--classes {token}: no such class id; {valid}")
            out.append(token)
            continue
        key = token.lower()
        if key not in by_name:
            key = key.replace("_", " ")
        if key not in by_name:
            close = difflib.get_close_matches(token.lower(), list(by_name), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"--classes {token!r}: no class of that name; {hint}{valid}, see 'yolo-ov info'")
        out.append(by_name[key])
    return tuple(dict.fromkeys(out))
