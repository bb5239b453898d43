"""Export a YOLO model of any task to an OpenVINO folder: FP32, FP16 or INT8.

Sources:

* an Ultralytics ``.pt`` checkpoint: converted by Ultralytics' own OpenVINO
  exporter (needs the ``export`` extra: ``ultralytics`` + ``torch``; imported
  here lazily, never by the inference path);
* an ``.onnx`` file: converted by ``openvino.convert_model``;
* an existing OpenVINO IR (folder or ``.xml``): read as is.

Whatever the source, the float graph then goes through one path: optional
INT8 quantization (:mod:`yolo_ov.export.quantize`, NNCF), ``openvino.save_model``
(``compress_to_fp16`` for FP16), and a ``metadata.yaml`` Ultralytics can read
(names, imgsz, stride, task, batch, args) plus ``precision`` and a
``yolo_ov`` block saying how the model was made. The same facts go into the
IR's ``rt_info`` so a bare ``.xml`` still carries them.

The output folder appears atomically: everything is written into a hidden
temporary folder beside the target, which is renamed into place only when
complete. A failed or interrupted export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import normalize_imgsz
from ..errors import ConfigError, ExportError, MissingExtraError, ModelLoadError, OutputError, openvino_message
from ..heads import select_head
from ..runtime.model import HeadType, ModelInfo, inspect_model, read_model, resolve_model_path
from ..runtime.reshape import reshape_model

__all__ = ["PRECISIONS", "ExportConfig", "ExportWarning", "default_output", "export_model", "place_model_folder"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
#: Ultralytics tasks a ``.pt`` may hold for export (every head :mod:`yolo_ov.heads` runs).
EXPORT_TASKS = ("detect", "segment", "pose", "obb", "classify")
_SUFFIX = {"fp32": "openvino_model", "fp16": "fp16_openvino_model", "int8": "int8_openvino_model"}


class ExportWarning(UserWarning):
    """The export worked, but something about it deserves the user's attention."""


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What to export and how.

    Attributes:
        precision: ``fp32``, ``fp16`` (weights stored as FP16; on CPU the
            speed is that of FP32) or ``int8`` (NNCF post-training
            quantization; needs ``data``).
        imgsz: input size, an int or ``(h, w)``. Default: 640 from ``.pt``,
            the model's own size from ``.onnx``/IR.
        batch: static batch size.
        dynamic: export with dynamic batch and image size.
        data: calibration images for INT8: a folder of images or a YOLO
            dataset (its ``train`` split, else ``val``).
        calib_size: at most this many calibration images (evenly spread).
        output: the output folder (default: beside the source,
            ``<name>_openvino_model``, ``<name>_fp16_openvino_model`` or
            ``<name>_int8_openvino_model``).
        max_drop: INT8 with accuracy control: the largest mAP50-95 loss
            accepted, measured on ``data`` (which must then be labelled).
        preset: NNCF preset, ``mixed`` (default, measured best) or ``performance``.
    """

    precision: str = "fp32"
    imgsz: int | tuple[int, int] | None = None
    batch: int = 1
    dynamic: bool = False
    data: Path | str | None = None
    calib_size: int = 300
    output: Path | str | None = None
    max_drop: float | None = None
    preset: str = "mixed"

    def __post_init__(self) -> None:
        precision = str(self.precision).lower().strip()
        precision = {"f32": "fp32", "f16": "fp16", "half": "fp16", "i8": "int8"}.get(precision, precision)
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of: {', '.join(PRECISIONS)}")
        object.__setattr__(self, "precision", precision)
        if self.imgsz is not None:
            object.__setattr__(self, "imgsz", normalize_imgsz(self.imgsz))
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise ConfigError(f"batch must be a positive integer, got {self.batch!r}")
        if not isinstance(self.calib_size, int) or self.calib_size < 1:
            raise ConfigError(f"calib_size must be a positive integer, got {self.calib_size!r}")
        if self.max_drop is not None and not 0.0 < float(self.max_drop) < 1.0:
            raise ConfigError(f"max_drop must be within (0, 1), e.g. 0.01 for one mAP point; got {self.max_drop!r}")
        if self.preset not in ("mixed", "performance"):
            raise ConfigError(f"preset {self.preset!r} is not one of: mixed, performance")
        if precision == "int8" and self.data is None:
            raise ConfigError(
                "INT8 export needs calibration images: pass --data (data=) an image folder or a YOLO dataset"
            )
        if precision != "int8" and (self.max_drop is not None):
            raise ConfigError("max_drop applies to INT8 export only")
        if self.data is not None:
            object.__setattr__(self, "data", Path(self.data).expanduser())
        if self.output is not None:
            object.__setattr__(self, "output", Path(self.output).expanduser())


def default_output(weights: Path, precision: str) -> Path:
    """``yolov8n.pt`` -> ``yolov8n_int8_openvino_model`` beside it (likewise for a folder or .xml)."""
    stem = _stem(weights)
    parent = weights.parent
    return parent / f"{stem}_{_SUFFIX[precision]}"


def export_model(weights: Path, config: ExportConfig) -> Path:
    """Export ``weights`` (``.pt``, ``.onnx``, IR folder or ``.xml``) as ``config`` says.

    Returns:
        The output folder, holding ``<name>.xml``, ``<name>.bin`` and ``metadata.yaml``.

    Raises:
        MissingExtraError: exporting a ``.pt`` without the ``export`` extra,
            or INT8 without NNCF; the message names the extra.
        ExportError: the source is not a YOLO model yolo-ov runs, or conversion failed.
        CalibrationError: INT8 calibration could not run.
        DatasetError: the calibration/validation data is missing or malformed.
    """
    weights = Path(weights).expanduser()
    if not weights.exists():
        raise ExportError(f"{weights}: no such model file or folder")
    kind = _source_kind(weights)
    output = Path(config.output) if config.output else default_output(weights, config.precision)
    output = output.resolve()
    source_dir = (weights if weights.is_dir() else weights.parent).resolve()
    if kind == "ir" and output == source_dir:
        raise ExportError(f"{output}: the output folder is the source model's folder; choose another --output")
    _check_replaceable(output)
    if not output.name.endswith("_openvino_model"):
        warnings.warn(
            f"{output.name}: Ultralytics only recognises OpenVINO folders named '*_openvino_model'; "
            "yolo-ov loads it under any name",
            ExportWarning,
            stacklevel=2,
        )
    dataset, calib_images = _calibration_inputs(config)

    with _atomic_folder(output) as tmp:
        ov_model, info, provenance = _load_source(weights, kind, config, tmp / "_source")
        ov_model, info = _reshape(ov_model, info, config, weights, kind)
        if config.max_drop is not None:
            dataset = _labelled(config.data, info)  # type: ignore[arg-type]
        quant_report = None
        if config.precision == "int8":
            from .quantize import count_fake_quantize, quantize_model

            if count_fake_quantize(ov_model):
                raise ExportError(f"{weights}: this model is already quantized (INT8); export INT8 from a float model")
            ov_model, quant_report = quantize_model(
                ov_model, calib_images, imgsz=info.imgsz, preset=config.preset, source=str(config.data),
                max_drop=config.max_drop, dataset=dataset, head=select_head(info),
            )
        meta = _metadata(info, config, provenance, quant_report, weights)
        _write(ov_model, meta, tmp / f"{_stem(weights)}.xml", fp16=config.precision == "fp16")
        shutil.rmtree(tmp / "_source", ignore_errors=True)
    log.info("exported %s -> %s (%s)", weights, output, config.precision)
    return output


# -- source ----------------------------------------------------------------

def _source_kind(weights: Path) -> str:
    if weights.is_dir():
        return "ir"
    suffix = weights.suffix.lower()
    if suffix in (".pt", ".pth"):
        return "pt"
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".xml", ".bin"):
        return "ir"
    raise ExportError(f"{weights}: unsupported model file; export from a .pt, a .onnx, or an OpenVINO folder/.xml")


def _stem(weights: Path) -> str:
    if weights.is_dir():
        xmls = sorted(weights.glob("*.xml"))
        if len(xmls) == 1:
            return xmls[0].stem
        name = weights.name
        for suffix in ("_int8_openvino_model", "_fp16_openvino_model", "_openvino_model"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name
    return weights.stem


def _load_source(
    weights: Path, kind: str, config: ExportConfig, workdir: Path
) -> tuple[Any, ModelInfo, dict[str, Any]]:
    from ..runtime.core import get_core

    provenance: dict[str, Any] = {"source": str(weights.resolve()), "source_format": kind}
    if kind == "pt":
        xml, pt_meta = _export_pt(weights, config, workdir)
        path = xml
        provenance["converter"] = f"ultralytics {pt_meta.get('version', '?')} (format=openvino)"
        provenance["source_sha256"] = _sha256(weights)
    elif kind == "onnx":
        path = weights
        provenance["converter"] = "openvino.convert_model"
        provenance["source_sha256"] = _sha256(weights)
    else:
        try:
            path = resolve_model_path(weights)
        except ModelLoadError as exc:
            raise ExportError(str(exc)) from exc
        provenance["converter"] = "openvino.Core.read_model"
    core = get_core()
    try:
        if kind == "onnx":
            import openvino as ov

            ov_model = ov.convert_model(str(path))
        else:
            ov_model = read_model(core, path)
        info = inspect_model(ov_model, path)
    except ModelLoadError as exc:
        raise ExportError(f"cannot export {weights}: {exc}") from exc
    except Exception as exc:  # convert_model raises its own exception types
        raise ExportError(f"{weights}: OpenVINO cannot convert this model ({openvino_message(exc, 200)})") from exc
    return ov_model, info, provenance


def _export_pt(weights: Path, config: ExportConfig, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """Convert a ``.pt`` with Ultralytics' OpenVINO exporter, inside ``workdir``.

    The checkpoint is copied into ``workdir`` first: Ultralytics writes its
    export beside the ``.pt``, and the user's folder must not be touched.
    """
    try:
        from ultralytics import YOLO
        from ultralytics.utils import LOGGER
    except ImportError as exc:
        raise MissingExtraError("ultralytics", "export", "Exporting a .pt checkpoint") from exc
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / weights.name
    shutil.copyfile(weights, local)
    level = LOGGER.level
    LOGGER.setLevel(logging.ERROR)  # its banners and hints are not ours to print
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch tracer/deprecation chatter from inside Ultralytics' exporter
            try:
                model = YOLO(str(local))
            except Exception as exc:  # torch.load / Ultralytics raise many types for a bad checkpoint
                why = _first_line(exc).replace(str(local), str(weights))
                raise ExportError(f"{weights}: not an Ultralytics YOLO checkpoint ({why})") from exc
            if model.task not in EXPORT_TASKS:
                raise ExportError(f"{weights}: a '{model.task}' model; yolo-ov exports {', '.join(EXPORT_TASKS)} "
                                  "models")
            # without --imgsz, the size the checkpoint was trained at (640 for detection, 224 for
            # classification), as Ultralytics' own export does
            size = {"imgsz": list(config.imgsz)} if config.imgsz else {}
            try:
                out = model.export(
                    format="openvino", batch=config.batch, dynamic=config.dynamic, nms=False, verbose=False, **size,
                )
            except Exception as exc:
                why = _first_line(exc).replace(str(local), str(weights))
                raise ExportError(f"{weights}: Ultralytics' OpenVINO export failed ({why})") from exc
    finally:
        LOGGER.setLevel(level)
    folder = Path(out)
    xml = next(iter(sorted(folder.glob("*.xml"))), None)
    if xml is None:
        raise ExportError(f"{weights}: Ultralytics' export produced no .xml in {folder}")
    meta_path = folder / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    return xml, meta or {}


def _reshape(
    ov_model: Any, info: ModelInfo, config: ExportConfig, weights: Path, kind: str
) -> tuple[Any, ModelInfo]:
    """Fix (or free) the input shape; a static graph that cannot take the new shape is an error, not a surprise."""
    import openvino as ov

    h, w = config.imgsz or info.imgsz
    if h % info.stride or w % info.stride:
        raise ConfigError(f"imgsz {(h, w)} must be a multiple of the model stride {info.stride}")
    static_source = ov_model.inputs[0].get_partial_shape().is_static
    if config.dynamic and static_source and kind != "pt":
        raise ExportError(
            f"{weights}: this model was exported for a fixed input size (its head bakes in that size's anchors); "
            "export --dynamic from the .pt instead"
        )
    try:
        if config.dynamic:
            target = ov.PartialShape([-1, 3, -1, -1])
            if ov_model.inputs[0].get_partial_shape() != target:
                ov_model.reshape({ov_model.inputs[0]: target})
        else:  # regenerates the anchor constants a static export bakes in for its own size
            reshape_model(ov_model, info.imgsz, (h, w), config.batch)
    except (ConfigError, RuntimeError) as exc:
        raise ExportError(
            f"{weights}: this graph cannot be reshaped to {'dynamic' if config.dynamic else (config.batch, 3, h, w)} "
            f"({_first_line(exc)}); export from the .pt at that size/batch instead"
        ) from exc
    new_info = inspect_model(ov_model, info.path)
    return ov_model, dataclasses.replace(new_info, imgsz=(h, w))


# -- calibration data --------------------------------------------------------

def _calibration_inputs(config: ExportConfig) -> tuple[Any, list[Path]]:
    """Calibration images (evenly spread, at most ``calib_size``); the labelled split for ``max_drop``
    is read once the model's task is known (:func:`_labelled`)."""
    if config.precision != "int8":
        return None, []
    from ..eval.dataset import find_images

    images = find_images(config.data)  # type: ignore[arg-type]
    if len(images) > config.calib_size:
        step = len(images) / config.calib_size
        images = [images[int(i * step)] for i in range(config.calib_size)]
    return None, images


def _labelled(data: Path, info: ModelInfo) -> Any:
    """The labelled split accuracy control measures on, in the form the model's task is scored on."""
    from ..eval.dataset import load_classify_dataset, load_dataset, match_classes

    if info.task == "classify":
        return match_classes(load_classify_dataset(data), info.names)
    return load_dataset(data)


# -- output ----------------------------------------------------------------

def _metadata(
    info: ModelInfo, config: ExportConfig, provenance: dict[str, Any], quant: Any, weights: Path
) -> dict[str, Any]:
    import openvino as ov

    from .._version import __version__

    src = info.metadata or {}
    quantize = {"int8": 8, "fp16": 16}.get(config.precision)
    meta: dict[str, Any] = {
        "description": src.get("description", f"{_stem(weights)} exported by yolo-ov"),
        "author": src.get("author", "yolo-ov"),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": src.get("version", f"yolo-ov {__version__}"),
        "license": src.get("license"),
        "docs": src.get("docs"),
        "stride": int(info.stride),
        "task": info.task,
        "batch": config.batch,
        "imgsz": list(info.imgsz),
        "names": dict(info.names),
        "args": {"batch": config.batch, "dynamic": config.dynamic, "nms": False, "quantize": quantize},
        "channels": 3,
        "end2end": info.head is HeadType.END2END,
        "precision": config.precision,
    }
    if info.kpt_shape is not None:  # pose: Ultralytics needs it to load the model, the pose head to decode
        meta["kpt_shape"] = list(info.kpt_shape)
    made: dict[str, Any] = {
        "tool": f"yolo-ov {__version__}",
        **provenance,
        "openvino": ov.get_version(),
        "compress_to_fp16": config.precision == "fp16",
    }
    if quant is not None:
        import nncf

        made["nncf"] = nncf.__version__
        made["quantization"] = quant.to_dict()
    meta["yolo_ov"] = made
    return {k: v for k, v in meta.items() if v is not None}


def _write(ov_model: Any, meta: dict[str, Any], xml: Path, *, fp16: bool) -> None:
    import openvino as ov

    names = meta["names"]
    ov_model.set_rt_info("YOLO", ["model_info", "model_type"])
    ov_model.set_rt_info("True", ["model_info", "reverse_input_channels"])
    ov_model.set_rt_info("114", ["model_info", "pad_value"])
    ov_model.set_rt_info("255.0", ["model_info", "scale_values"])
    ov_model.set_rt_info("0.7", ["model_info", "iou_threshold"])
    ov_model.set_rt_info("fit_to_window_letterbox", ["model_info", "resize_type"])
    ov_model.set_rt_info(" ".join(str(names[i]).replace(" ", "_") for i in sorted(names)), ["model_info", "labels"])
    for key in ("names", "imgsz", "stride", "task", "precision", "end2end", "kpt_shape"):
        if key in meta:
            ov_model.set_rt_info(str(meta[key]), ["yolo_ov", key])
    try:
        ov.save_model(ov_model, str(xml), compress_to_fp16=fp16)
    except Exception as exc:  # disk full, permissions...
        raise ExportError(f"{xml}: cannot save the model ({_first_line(exc)})") from exc
    try:
        (xml.parent / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True),
            encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{xml.parent / 'metadata.yaml'}: cannot write ({exc.strerror or exc})") from exc


def _check_replaceable(output: Path) -> None:
    """An existing output is replaced only if it is a model folder (never a folder of other files)."""
    if not output.exists():
        return
    if not output.is_dir():
        raise ExportError(f"{output}: exists and is a file; choose another --output")
    entries = list(output.iterdir())
    allowed = {".xml", ".bin", ".yaml"}
    if entries and any(p.is_dir() or p.suffix.lower() not in allowed for p in entries):
        raise ExportError(f"{output}: exists and holds files other than a model; choose another --output")


def place_model_folder(built: Path, output: Path) -> Path:
    """Move a complete model folder ``built`` (on the same drive) into place as ``output``.

    For exports made in several candidates first (``export --precision auto``
    keeps one): the same rules as :func:`export_model`'s own output, an
    existing ``output`` is replaced only when it holds nothing but a model.
    """
    output = Path(output).resolve()
    _check_replaceable(output)
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.{os.getpid()}.old")
        output.rename(old)
    Path(built).rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return output


@contextlib.contextmanager
def _atomic_folder(output: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``output``; on success it replaces ``output``, on failure it vanishes."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the exported model there ({exc.strerror or exc})") from exc
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        yield tmp
        old = None
        if output.exists():
            old = output.with_name(f".{output.name}.{os.getpid()}.old")
            output.rename(old)
        tmp.rename(output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    """What went wrong, without OpenVINO's C++ location lines (see :func:`~yolo_ov.errors.openvino_message`)."""
    return openvino_message(exc, 200)

