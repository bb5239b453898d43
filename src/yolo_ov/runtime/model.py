"""Find a model, read it, and understand what kind of YOLO detector it is.

Accepted: an Ultralytics OpenVINO export folder (``*_openvino_model/`` with
``metadata.yaml``), a bare ``.xml``/``.bin`` pair, an ``.onnx`` file or a
``.tflite`` file (OpenVINO reads both directly). Class names, image size,
stride, task and keypoint shape come from ``metadata.yaml``, the metadata
Ultralytics embeds in a ``.tflite`` file, or the IR's/ONNX file's
``rt_info``; COCO names are the fallback and the :class:`ModelInfo` says so.
The output head is detected from the graph once, here, so nothing per
inference walks the graph.
"""

from __future__ import annotations

import ast
import enum
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ModelLoadError, openvino_message
from .coco_names import COCO80_NAMES

__all__ = ["TASKS", "HeadType", "ModelInfo", "TensorSpec", "inspect_model", "read_model", "resolve_model_path"]

#: The Ultralytics tasks a model can declare.
TASKS = ("detect", "segment", "pose", "obb", "classify")

log = logging.getLogger(__name__)


class HeadType(str, enum.Enum):
    """How the network's output is laid out (see :mod:`yolo_ov.ops.boxes`)."""

    RAW = "raw"  # (B, 4 + nc, N): needs NMS
    END2END = "end2end"  # (B, N, 6): x1 y1 x2 y2 score class


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its name and shape as read (``?`` for a dynamic dimension)."""

    name: str
    shape: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "shape": self.shape}


@dataclass(frozen=True)
class ModelInfo:
    """What yolo-ov knows about a model, read once at load.

    Attributes:
        path: the ``.xml`` or ``.onnx`` file read.
        names: class id -> name.
        names_source: where ``names`` came from: ``metadata.yaml``,
            ``rt_info`` (IR or ONNX metadata) or ``default COCO names``.
        imgsz: ``(height, width)`` the model was exported for.
        stride: the largest feature-map stride (letterbox alignment).
        task: Ultralytics task (``detect``, ``segment``, ``pose``, ``obb``,
            ``classify``), from ``metadata.yaml``, else the IR's ``rt_info``,
            else guessed from the output shapes.
        head: output layout of the main output: ``raw`` (needs NMS) or
            ``end2end`` (already de-duplicated).
        inputs / outputs: every input and output, in the model's order.
        batch: static batch size, or ``None`` when dynamic.
        metadata: the raw metadata read (for ``info`` and export provenance).

    Task facts (``layout``, ``kpt_shape``, ``num_masks``, ``normalized_coords``)
    are properties derived from the fields above, so a :class:`ModelInfo`
    saved with the prepared model (see :mod:`yolo_ov.runtime.prepared`) carries them.
    """

    path: Path
    names: dict[int, str]
    names_source: str
    imgsz: tuple[int, int]
    stride: int
    task: str
    head: HeadType
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch: int | None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def end2end(self) -> bool:
        """The model de-duplicates its own detections (YOLOv10/YOLO26 style): no NMS."""
        return self.head is HeadType.END2END

    @property
    def input_name(self) -> str:
        return self.inputs[0].name

    @property
    def input_shape(self) -> str:
        return self.inputs[0].shape

    @property
    def output_name(self) -> str:
        """The first (main) output's name."""
        return self.outputs[0].name

    @property
    def output_shape(self) -> str:
        """The first (main) output's shape."""
        return self.outputs[0].shape

    @property
    def dynamic(self) -> bool:
        return "?" in self.input_shape

    @property
    def layout(self) -> str:
        """``NCHW`` (OpenVINO/ONNX exports) or ``NHWC`` (TFLite exports: ``[N, H, W, 3]``)."""
        dims = self.input_shape.strip("[]").split(",")
        return "NHWC" if len(dims) == 4 and dims[3].strip() == "3" and dims[1].strip() != "3" else "NCHW"

    @property
    def kpt_shape(self) -> tuple[int, int] | None:
        """Pose models: ``(keypoints, values per keypoint)``, e.g. ``(17, 3)`` (x, y, visibility)."""
        raw = _literal(self.metadata.get("kpt_shape"))
        if isinstance(raw, (list, tuple)) and len(raw) == 2:
            return (int(raw[0]), int(raw[1]))
        return None

    @property
    def num_masks(self) -> int | None:
        """Segmentation models: the number of mask prototypes (the channels of the rank-4 output)."""
        for out in self.outputs[1:]:
            dims = out.shape.strip("[]").split(",")
            if len(dims) == 4 and dims[1].strip().isdigit():
                return int(dims[1])
        return None

    @property
    def normalized_coords(self) -> bool:
        """Boxes (and keypoints) come out in ``[0, 1]`` of the input size, not pixels.

        Ultralytics' TFLite exports (onnx2tf, NHWC) divide coordinates by the
        input size inside the graph so INT8 keeps score resolution; its LiteRT
        backend multiplies them back, and so do the heads.
        """
        return self.path.suffix.lower() == ".tflite" and self.layout == "NHWC"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "task": self.task,
            "head": self.head.value,
            "end2end": self.end2end,
            "num_classes": self.num_classes,
            "names_source": self.names_source,
            "imgsz": list(self.imgsz),
            "stride": self.stride,
            "input": self.inputs[0].to_dict(),
            "output": self.outputs[0].to_dict(),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "batch": self.batch,
            "layout": self.layout,
            "kpt_shape": list(self.kpt_shape) if self.kpt_shape else None,
            "num_masks": self.num_masks,
        }


def resolve_model_path(model: str | os.PathLike[str] | None) -> Path:
    """The model file to read for ``model`` (a folder, ``.xml``, ``.onnx`` or ``.tflite``).

    ``None`` is resolved by :func:`yolo_ov.default_model.default_model_path`
    (environment, user cache, download), which callers that want a default
    (``Detector``, the CLI) call first; here it means nothing was given.

    Raises:
        ModelLoadError: nothing usable was found; the message says what to pass.
    """
    if model is None:
        raise ModelLoadError("no model given; pass an OpenVINO export folder, a .xml file or a .onnx file")
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelLoadError(f"{path}: model not found; pass an OpenVINO export folder, a .xml file or a .onnx file")
    if path.is_dir():
        return _xml_in_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        if not path.with_suffix(".bin").exists():
            raise ModelLoadError(f"{path}: the weights file {path.with_suffix('.bin').name} is missing beside it")
        return path
    if suffix in (".onnx", ".tflite"):
        return path
    if suffix == ".bin" and path.with_suffix(".xml").exists():
        return path.with_suffix(".xml")
    if suffix in (".pt", ".pth"):
        raise ModelLoadError(
            f"{path}: a PyTorch checkpoint cannot be run directly; convert it first: yolo-ov export {path}"
        )
    raise ModelLoadError(
        f"{path}: unsupported model file; pass an OpenVINO export folder, a .xml, a .onnx or a .tflite file"
    )


def _xml_in_folder(folder: Path) -> Path:
    xmls = sorted(folder.glob("*.xml"))
    if not xmls:
        single = sorted(folder.glob("*.onnx")) or sorted(folder.glob("*.tflite"))
        if len(single) == 1:
            return single[0]
        raise ModelLoadError(f"{folder}: no .xml model file in this folder; pass an OpenVINO export folder")
    if len(xmls) > 1:
        preferred = [x for x in xmls if folder.name.startswith(x.stem)]
        if len(preferred) != 1:
            names = ", ".join(x.name for x in xmls)
            raise ModelLoadError(f"{folder}: several .xml files ({names}); pass the one to use")
        xmls = preferred
    return _xml_checked(xmls[0])


def _xml_checked(xml: Path) -> Path:
    if not xml.with_suffix(".bin").exists():
        raise ModelLoadError(f"{xml}: the weights file {xml.with_suffix('.bin').name} is missing beside it")
    return xml


def read_model(core: Any, path: Path, *, enable_mmap: bool = True) -> Any:
    """Read ``path`` with OpenVINO, translating its errors into :class:`ModelLoadError`.

    ``enable_mmap`` goes to this read only (never to the process-wide ``Core``).
    """
    try:
        return core.read_model(str(path), config={"ENABLE_MMAP": bool(enable_mmap)})
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long C++ traces
        raise ModelLoadError(f"{path}: OpenVINO cannot read this model ({openvino_message(exc)})") from exc


def inspect_model(model: Any, path: Path) -> ModelInfo:
    """Read metadata, the task and the output layout of an ``openvino.Model``.

    This describes the model; whether yolo-ov can run its task is decided by
    :func:`yolo_ov.heads.select_head`, so adding a task touches only ``heads``.

    Raises:
        ModelLoadError: the graph is not a YOLO model; the message names the
            input and output shapes found.
    """
    meta, names_source = _read_metadata(model, path)
    shapes = _shapes_text(model)
    if len(model.inputs) != 1:
        raise ModelLoadError(f"{path}: expected one image input, found {len(model.inputs)} ({shapes})")
    if not model.outputs:
        raise ModelLoadError(f"{path}: the model has no outputs ({shapes})")
    inp = model.inputs[0].get_partial_shape()
    if inp.rank.is_dynamic or inp.rank.get_length() != 4:
        raise ModelLoadError(f"{path}: not a YOLO model: expected an N,3,H,W (or N,H,W,3) image input ({shapes})")
    channels = [i for i in (1, 3) if inp[i].is_static and inp[i].get_length() == 3]
    if not channels:
        raise ModelLoadError(f"{path}: not a YOLO model: expected an N,3,H,W (or N,H,W,3) image input ({shapes})")
    hw_axes = (2, 3) if channels[0] == 1 else (1, 2)
    # the main output: the first one that is not a segmentation model's (B, masks, H, W) prototypes
    ranks = [o.get_partial_shape().rank for o in model.outputs]
    main = next((i for i, r in enumerate(ranks) if r.is_dynamic or r.get_length() != 4), 0)
    out = model.outputs[main].get_partial_shape()
    task = _task(meta, model, path, shapes)
    names = _parse_names(meta.get("names"))
    head = _detect_head(out, meta, path, shapes)
    nc = _num_classes(task, head, model, meta, names)
    if task == "detect" and head is HeadType.RAW and names and len(names) != nc:
        raise ModelLoadError(
            f"{path}: metadata lists {len(names)} class names but the output has {nc} classes ({shapes})"
        )
    if not names:
        names_source = "default COCO names"
        names = {i: COCO80_NAMES[i] if i < len(COCO80_NAMES) else f"class{i}" for i in range(nc)}
        log.warning("%s: no class names in the model; using COCO names", path)
    imgsz = _imgsz(meta.get("imgsz"), inp, hw_axes)
    batch = inp[0].get_length() if inp[0].is_static else None
    return ModelInfo(
        path=path,
        names=names,
        names_source=names_source,
        imgsz=imgsz,
        stride=int(meta.get("stride", 32)),
        task=task,
        head=head,
        inputs=(TensorSpec(_name(model.inputs[0], "images"), _shape_text(inp)),),
        outputs=tuple(
            TensorSpec(_name(o, f"output{i}"), _shape_text(o.get_partial_shape())) for i, o in enumerate(model.outputs)
        ),
        batch=batch,
        metadata=meta,
    )


def _name(port: Any, default: str) -> str:
    return port.get_any_name() if port.get_names() else default


def _task(meta: dict[str, Any], model: Any, path: Path, shapes: str) -> str:
    """The task from the metadata, else guessed from the outputs' shapes."""
    declared = meta.get("task")
    if declared is not None:
        task = str(declared).strip().lower()
        if task not in TASKS:
            raise ModelLoadError(f"{path}: unknown task {task!r} in the model's metadata ({shapes})")
        return task
    ranks = [o.get_partial_shape().rank for o in model.outputs]
    lengths = [r.get_length() if r.is_static else None for r in ranks]
    if lengths[0] == 2:
        return "classify"
    if len(lengths) == 2 and 4 in lengths:
        return "segment"
    if meta.get("kpt_shape") is not None:
        return "pose"
    return "detect"


def _num_classes(task: str, head: HeadType, model: Any, meta: dict[str, Any], names: dict[int, str]) -> int:
    """Classes the output holds: from its rows where the layout says (raw heads, classify), else the names."""
    out = next((o.get_partial_shape() for o in model.outputs if o.get_partial_shape().rank.get_length() != 4),
               model.outputs[0].get_partial_shape())
    if task == "classify" and out.rank.get_length() == 2 and out[1].is_static:
        return out[1].get_length()
    if head is HeadType.RAW and out.rank.get_length() == 3 and out[1].is_static:
        rows = out[1].get_length() - 4
        if task == "segment":
            protos = [o.get_partial_shape() for o in model.outputs[1:] if o.get_partial_shape().rank.get_length() == 4]
            rows -= protos[0][1].get_length() if protos and protos[0][1].is_static else 32
        elif task == "pose":
            kpt = _literal(meta.get("kpt_shape")) or (17, 3)
            rows -= int(kpt[0]) * int(kpt[1])
        elif task == "obb":
            rows -= 1  # the angle
        return rows
    return len(names) if names else 80


def _detect_head(out: Any, meta: dict[str, Any], path: Path, shapes: str) -> HeadType:
    if out.rank.is_dynamic or out.rank.get_length() not in (2, 3):
        raise ModelLoadError(f"{path}: not a YOLO model: expected a 2-D or 3-D first output ({shapes})")
    if out.rank.get_length() == 2:
        return HeadType.RAW  # classification scores
    d1 = out[1].get_length() if out[1].is_static else None
    d2 = out[2].get_length() if out[2].is_static else None
    end2end = meta.get("end2end")
    if end2end is True or (end2end is None and d2 == 6):
        if d2 is not None and d2 >= 6:
            return HeadType.END2END
    elif d1 is not None and d1 >= 5:
        return HeadType.RAW
    raise ModelLoadError(
        f"{path}: unrecognised output head ({shapes}); expected (B, 4+classes, anchors) or (B, detections, 6)"
    )


def _read_metadata(model: Any, path: Path) -> tuple[dict[str, Any], str]:
    """``metadata.yaml`` beside the model wins; then a ``.tflite`` file's embedded
    metadata; then ``rt_info``; then ONNX props."""
    yaml_path = path.parent / "metadata.yaml"
    if yaml_path.exists():
        try:
            meta = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ModelLoadError(f"{yaml_path}: unreadable metadata ({exc})") from exc
        if not isinstance(meta, dict):
            raise ModelLoadError(f"{yaml_path}: metadata must be a mapping")
        if meta.get("names"):
            return meta, "metadata.yaml"
    else:
        meta = {}
    if path.suffix.lower() == ".tflite":
        embedded = _tflite_metadata(path)
        for key, value in embedded.items():
            meta.setdefault(key, value)
        if meta.get("names"):
            return meta, "tflite metadata"
    rt = _rt_info(model)
    # Ultralytics' ONNX metadata (kept by OpenVINO under "framework") has the
    # exact names; rt_info's model_info labels replace spaces with "_".
    for section, source in (("yolo_ov", "rt_info"), ("framework", "rt_info")):
        values = rt.get(section)
        if isinstance(values, dict) and values.get("names"):
            for key in ("names", "imgsz", "stride", "task", "end2end", "batch", "kpt_shape", "channels"):
                if key in values:
                    meta.setdefault(key, _literal(values[key]))
            return meta, source
    info = rt.get("model_info", {})
    if isinstance(info, dict) and info.get("labels"):
        meta.setdefault("names", {i: n.replace("_", " ") for i, n in enumerate(str(info["labels"]).split())})
        return meta, "rt_info"
    return meta, "none"


def _tflite_metadata(path: Path) -> dict[str, Any]:
    """The metadata Ultralytics appends to a ``.tflite`` file as a zip entry (``{}`` when absent).

    Newer exports store ``metadata.json``; older ones a Python-literal dict as
    the zip's only entry. A TFLite file from elsewhere has no zip part.
    """
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            raw = z.read("metadata.json" if "metadata.json" in names else names[0]).decode("utf-8")
    except (OSError, zipfile.BadZipFile, IndexError, KeyError, UnicodeDecodeError):
        return {}
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = _literal(raw)
    return meta if isinstance(meta, dict) else {}


def _rt_info(model: Any) -> dict[str, Any]:
    """``model.get_rt_info()`` as plain Python: nested dicts of strings."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if hasattr(value, "astype"):
            return value.astype(str)
        return value

    try:
        return convert(dict(model.get_rt_info()))
    except Exception:  # noqa: BLE001 - rt_info is optional; a model without it is fine
        return {}


def _literal(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _parse_names(raw: Any) -> dict[int, str]:
    raw = _literal(raw)
    if isinstance(raw, dict):
        try:
            return {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            return {}
    if isinstance(raw, (list, tuple)):
        return {i: str(n) for i, n in enumerate(raw)}
    return {}


def _imgsz(raw: Any, inp: Any, hw_axes: tuple[int, int] = (2, 3)) -> tuple[int, int]:
    raw = _literal(raw)
    if isinstance(raw, int):
        return (raw, raw)
    if isinstance(raw, (list, tuple)) and len(raw) == 2:
        return (int(raw[0]), int(raw[1]))
    h, w = inp[hw_axes[0]], inp[hw_axes[1]]
    if h.is_static and w.is_static:
        return (h.get_length(), w.get_length())
    return (640, 640)


def _shape_text(shape: Any) -> str:
    return "[" + ",".join(str(d.get_length()) if d.is_static else "?" for d in shape) + "]"


def _shapes_text(model: Any) -> str:
    ins = ", ".join(_shape_text(i.get_partial_shape()) for i in model.inputs)
    outs = ", ".join(_shape_text(o.get_partial_shape()) for o in model.outputs)
    return f"inputs {ins or 'none'}; outputs {outs or 'none'}"
