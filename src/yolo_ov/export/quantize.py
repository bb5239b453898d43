"""INT8 post-training quantization of a YOLO detector with NNCF.

What matters for accuracy, and why it is done this way:

* **Calibration data is pre-processed exactly as inference does**: the image
  is decoded by :func:`~yolo_ov.imaging.decode.load_image`, letterboxed by
  :func:`~yolo_ov.imaging.letterbox.letterbox`, then turned into the float ``NCHW``
  RGB tensor scaled by ``float32(1/255)`` that the exported graph expects (the
  same arithmetic the runtime compiles into the graph). Activation ranges are
  therefore measured on the very values the model will see.
* **The detection head's decode stays in float.** The box arithmetic (DFL
  softmax and its fixed 1x1 convolution, anchor offsets, stride multiply) and
  the class sigmoid turn small quantization errors into pixel offsets and
  score shifts. :func:`head_ignored_scope` finds that subgraph *structurally*:
  every operation between the model output and the last learned convolutions.
  On Ultralytics' own exports this is exactly the set its exporter ignores
  (``export_openvino``: the Sigmoid plus ``model.<head>/*`` and its ``dfl``),
  and unlike a name pattern it also works for ONNX-converted graphs.
* **Preset**: ``mixed`` (symmetric weights, asymmetric activations), chosen by
  measurement: SiLU activations are not symmetric around zero, and on coco96
  the ``performance`` preset loses more mAP for no measurable speed gain (see
  ``benchmarks/bench_int8.py``).
* ``max_drop`` switches to ``nncf.quantize_with_accuracy_control``: layers
  are reverted to float, worst first, until the COCO mAP50-95 (measured with
  :mod:`yolo_ov.eval.validate`) is within ``max_drop`` of the float model's.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._console import printable_output
from ..config import DetectConfig
from ..errors import CalibrationError, InputError, MissingExtraError, openvino_message
from ..eval.dataset import ClassifyDataset, YoloDataset
from ..eval.evaluate import evaluate
from ..imaging.decode import load_image
from ..imaging.letterbox import letterbox

if TYPE_CHECKING:
    from ..heads import Head

__all__ = [
    "RECOMMENDED_CALIB_SIZE",
    "CalibrationWarning",
    "QuantizeReport",
    "head_ignored_scope",
    "preprocess_for_graph",
    "quantize_model",
]

log = logging.getLogger(__name__)

#: NNCF's default calibration subset size; fewer images give noisier activation ranges.
RECOMMENDED_CALIB_SIZE = 300
PRESETS = ("mixed", "performance")

_SCALE = np.float32(1.0 / 255.0)
_CONV_TYPES = frozenset({"Convolution", "GroupConvolution", "MatMul"})


class CalibrationWarning(UserWarning):
    """Calibration ran, but on fewer images than recommended."""


@dataclass(frozen=True, kw_only=True)
class QuantizeReport:
    """How a model was quantized (written into the export's metadata)."""

    method: str
    preset: str
    calibration_images: int
    calibration_source: str
    ignored_ops: int
    fake_quantize_ops: int
    max_drop: float | None = None
    float_map50_95: float | None = None
    int8_map50_95: float | None = None
    initial_int8_map50_95: float | None = None
    runtime_float_map50_95: float | None = None
    runtime_int8_map50_95: float | None = None
    accuracy_metric: str | None = None
    skipped_images: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "preset": self.preset,
            "calibration_images": self.calibration_images,
            "calibration_source": self.calibration_source,
            "ignored_head_ops": self.ignored_ops,
            "fake_quantize_ops": self.fake_quantize_ops,
        }
        if self.max_drop is not None:
            out.update(
                max_drop=self.max_drop,
                nncf_f32_float_map50_95=self.float_map50_95,
                nncf_f32_initial_int8_map50_95=self.initial_int8_map50_95,
                nncf_f32_int8_map50_95=self.int8_map50_95,
                runtime_float_map50_95=self.runtime_float_map50_95,
                runtime_int8_map50_95=self.runtime_int8_map50_95,
                # what the *_map50_95 figures measure for this task (box/mask/pose mAP50-95, or top1)
                accuracy_metric=self.accuracy_metric,
            )
        if self.skipped_images:
            out["skipped_images"] = len(self.skipped_images)
        return out


def preprocess_for_graph(image: Any, imgsz: tuple[int, int], head: Head | None = None) -> np.ndarray:
    """One image as the exported graph's input: ``(1, 3, h, w)`` float32 RGB in ``[0, 1]``.

    The host-side twin of the runtime's in-graph pre-processing (BGR->RGB,
    NHWC->NCHW, multiply by ``float32(1/255)``), after the same host step:
    the head's own (``head.prepare``: the letterbox, or classification's
    resize and centre crop), the letterbox without a head.
    """
    img = load_image(image)
    frame = head.prepare(img, imgsz)[0] if head is not None else letterbox(img, imgsz)[0]
    chw = frame[:, :, ::-1].transpose(2, 0, 1)
    return (chw.astype(np.float32) * _SCALE)[None]


def head_ignored_scope(model: Any) -> list[str]:
    """Names of the operations that decode the head (kept in float when quantizing).

    Walks back from each model output and collects every operation until it
    reaches a learned convolution (more than one output channel) or that
    convolution's bias ``Add``. The DFL's fixed 1x1 convolution has a single
    output channel, so it lands in the scope; shape-only subgraphs
    (``ShapeOf``) are not followed into the backbone.
    """
    names: list[str] = []
    seen: set[str] = set()
    stack = [r.input_value(0).get_node() for r in model.get_results()]
    while stack:
        node = stack.pop()
        key = node.get_friendly_name()  # Python wrappers are recreated per access: ids are not stable
        if key in seen:
            continue
        seen.add(key)
        kind = node.get_type_name()
        if kind in ("Constant", "Parameter", "ShapeOf", "ShapeOf_3") or _learned_conv(node) or _bias_add(node):
            continue
        names.append(node.get_friendly_name())
        stack.extend(v.get_node() for v in node.input_values())
    return names


def _learned_conv(node: Any) -> bool:
    if node.get_type_name() not in _CONV_TYPES:
        return False
    shape = node.input_value(1).get_partial_shape()
    if node.get_type_name() == "MatMul":
        return True
    return shape.rank.is_static and shape[0].is_static and shape[0].get_length() > 1


def _bias_add(node: Any) -> bool:
    if node.get_type_name() != "Add":
        return False
    inputs = [v.get_node() for v in node.input_values()]
    return any(_learned_conv(n) for n in inputs) and any(n.get_type_name() == "Constant" for n in inputs)


def count_fake_quantize(model: Any) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")


def quantize_model(
    model: Any,
    images: Sequence[Path],
    *,
    imgsz: tuple[int, int],
    preset: str = "mixed",
    source: str = "",
    max_drop: float | None = None,
    dataset: YoloDataset | ClassifyDataset | None = None,
    head: Head | None = None,
) -> tuple[Any, QuantizeReport]:
    """Quantize an ``openvino.Model`` (float ``NCHW`` input) to INT8 with NNCF.

    Args:
        model: the float model as exported (not the runtime-prepared graph).
        images: calibration images (all of them are used).
        imgsz: ``(h, w)`` the images are letterboxed to.
        preset: ``mixed`` (default) or ``performance``.
        source: where the images came from, for the report.
        max_drop: the largest absolute mAP50-95 loss accepted; layers are
            reverted to float until it holds (needs ``dataset``).
        dataset: the labelled split the mAP is measured on for ``max_drop``.
        head: the model's :class:`~yolo_ov.heads.Head` (decodes outputs during
            validation: the same head every runner uses); needed with ``max_drop``.

    Raises:
        CalibrationError: no usable images, or NNCF failed.
        MissingExtraError: NNCF is not installed.
    """
    nncf = _import_nncf()
    if preset not in PRESETS:
        raise CalibrationError(f"preset {preset!r} is not one of: {', '.join(PRESETS)}")
    if not images:
        raise CalibrationError(f"no calibration images found in {source or 'the given data'}")
    if len(images) < RECOMMENDED_CALIB_SIZE:
        warnings.warn(
            f"calibrating on {len(images)} images from {source or 'the given data'}; "
            f"at least {RECOMMENDED_CALIB_SIZE} are recommended for stable INT8 accuracy",
            CalibrationWarning,
            stacklevel=3,
        )
    skipped: list[str] = []
    usable = _readable(images, skipped)
    if not usable:
        raise CalibrationError(f"none of the {len(images)} calibration images from {source} could be read")

    def transform(path: Path) -> np.ndarray:
        return preprocess_for_graph(path, imgsz, head)

    calib = nncf.Dataset(usable, transform)
    scope = head_ignored_scope(model)
    ignored = nncf.IgnoredScope(names=scope, validate=False) if scope else None
    nncf_preset = nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    report: dict[str, Any] = {}
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)  # NNCF logs every op it skips at INFO; its progress bars still show
    hidden = _hide_torch()  # NNCF's backend check imports torch on every call, see _hide_torch
    restore_output = printable_output()  # NNCF's progress bars must not fail in an ASCII locale
    try:
        if max_drop is None:
            quantized = nncf.quantize(
                model.clone(), calib, preset=nncf_preset, subset_size=len(usable), ignored_scope=ignored,
            )
        else:
            if dataset is None:
                raise CalibrationError("--max-drop needs a labelled dataset to measure the accuracy drop on")
            if head is None:
                raise CalibrationError("max_drop needs the model's head to measure mAP (pass head=select_head(info))")
            validation = _MapValidation(dataset, imgsz, head)
            val_data = nncf.Dataset(list(range(len(dataset))), lambda index: index)
            quantized = nncf.quantize_with_accuracy_control(
                model.clone(), calib, val_data,
                validation_fn=validation,
                max_drop=float(max_drop),
                drop_type=nncf.DropType.ABSOLUTE,
                preset=nncf_preset,
                subset_size=len(usable),
                ignored_scope=ignored,
            )
            runs = validation.full_runs
            report["float"] = runs[0] if runs else None
            report["initial"] = runs[1] if len(runs) > 1 else None
            report["int8"] = runs[-1] if len(runs) > 1 else None
    except CalibrationError:
        raise
    except Exception as exc:  # NNCF raises a variety of errors with long messages
        raise CalibrationError(f"NNCF quantization failed: {openvino_message(exc)}") from exc
    finally:
        nncf_log.setLevel(level)
        restore_output()
        _unhide_torch(hidden)
    fq = count_fake_quantize(quantized)
    runtime_maps: tuple[float | None, float | None] = (None, None)
    if max_drop is not None and dataset is not None and head is not None:
        runtime_maps = _runtime_check(model, quantized, dataset, imgsz, head, float(max_drop))
    return quantized, QuantizeReport(
        method="nncf.quantize_with_accuracy_control" if max_drop is not None else "nncf.quantize",
        preset=preset,
        calibration_images=len(usable),
        calibration_source=source,
        ignored_ops=len(scope),
        fake_quantize_ops=fq,
        max_drop=max_drop,
        float_map50_95=report.get("float"),
        int8_map50_95=report.get("int8"),
        initial_int8_map50_95=report.get("initial"),
        runtime_float_map50_95=runtime_maps[0],
        runtime_int8_map50_95=runtime_maps[1],
        accuracy_metric=_metric_name(head) if max_drop is not None and head is not None else None,
        skipped_images=skipped,
    )


class _MapValidation:
    """NNCF's ``validation_fn``: the task's headline accuracy of a compiled float-input model on
    some images of the dataset (box mAP50-95 for detection, mask or keypoint mAP50-95 for
    segmentation or pose, top-1 for classification: :attr:`~yolo_ov.eval.evaluate.ValResult.primary`).

    NNCF calls it with the full validation set and with subsets when ranking
    layers, so it scores exactly the images (indices into the dataset) it is given.
    """

    def __init__(self, dataset: YoloDataset | ClassifyDataset, imgsz: tuple[int, int], head: Head) -> None:
        self.dataset = dataset
        self.imgsz = imgsz
        self.head = head
        self.detect = DetectConfig(conf=0.001, iou=0.7, max_det=300, multi_label=True)
        self.full_runs: list[float] = []  # mAP of every full-set validation: float model, first INT8, ..., final

    def __call__(self, compiled: Any, indices: Iterable[int]) -> float:
        chosen = [int(i) for i in indices]
        request = compiled.create_infer_request()
        results = []
        images = self.dataset.images
        for i in chosen:
            img = load_image(images[i])
            frame, geo = self.head.prepare(img, self.imgsz)
            chw = (frame[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) * _SCALE)[None]
            outs = request.infer({0: chw})
            result = self.head.decode([outs[o][0] for o in compiled.outputs], geo, self.detect)
            result.source = str(images[i])
            results.append(result)
        value = evaluate(_subset(self.dataset, chosen), results, task=self.head.task).primary[1]
        if len(chosen) == len(self.dataset):
            self.full_runs.append(value)
        return value


def _metric_name(head: Head) -> str:
    return {"segment": "mask mAP50-95", "pose": "pose mAP50-95", "classify": "top1"}.get(head.task, "box mAP50-95")


def _subset(dataset: YoloDataset | ClassifyDataset, indices: list[int]) -> YoloDataset | ClassifyDataset:
    if isinstance(dataset, ClassifyDataset):
        return replace(dataset, images=tuple(dataset.images[i] for i in indices),
                       class_id=dataset.class_id[indices])
    return replace(dataset, items=tuple(dataset.items[i] for i in indices))


def _runtime_check(
    model: Any, quantized: Any, dataset: YoloDataset | ClassifyDataset, imgsz: tuple[int, int], head: Head,
    max_drop: float,
) -> tuple[float, float]:
    """Re-measure float and INT8 mAP with the CPU's default precision, as the runtime will run them.

    NNCF's accuracy control always validates with ``INFERENCE_PRECISION_HINT=f32``;
    on CPUs with bf16 (AVX512-BF16/AMX) the layers it reverts to float then
    run in bf16 at inference, and the real drop can exceed ``max_drop``. When
    it does, say so with both figures and the way out.
    """
    from ..runtime.core import get_core  # one Core per process

    core = get_core()
    measure = _MapValidation(dataset, imgsz, head)
    before = measure(core.compile_model(model, "CPU"), range(len(dataset)))
    after = measure(core.compile_model(quantized, "CPU"), range(len(dataset)))
    if before - after > max_drop:
        warnings.warn(
            f"NNCF kept the mAP50-95 drop within {max_drop} measured in f32, but with this CPU's default "
            f"precision it is {before - after:.4f} ({before:.4f} -> {after:.4f}); run the model with "
            "inference_precision='f32' for the controlled accuracy, or lower --max-drop",
            CalibrationWarning,
            stacklevel=3,
        )
    return before, after


def _readable(images: Sequence[Path], skipped: list[str]) -> list[Path]:
    """Drop images that cannot be decoded (each logged), so NNCF never fails halfway."""
    usable = []
    for path in images:
        try:
            load_image(path)
        except InputError as exc:
            log.warning("calibration: skipped %s", exc)
            skipped.append(str(path))
        else:
            usable.append(path)
    return usable


_TORCH_CPP_LOG = "torch.utils.cpp_extension"  # logs "No CUDA runtime is found" when first imported


def _hide_torch() -> bool | int:
    """Make ``import torch`` fail until :func:`_unhide_torch`; what to undo is returned.

    NNCF imports torch whenever it is installed, though quantizing an
    OpenVINO model never uses it: ``import nncf`` registers its torch tensor
    functions (``nncf.tensor.functions._initialize_backends``) and every
    ``nncf.quantize`` asks ``is_torch_fx_model`` first (``get_backend``);
    both treat an ImportError as "no torch". Loading torch costs about 2 s
    and prints its "No CUDA runtime is found" warning, and the README
    promises an IR/ONNX export without torch. If torch is already loaded
    (a ``.pt`` export), nothing is hidden, but the warning NNCF's torch
    extensions trigger is silenced (the previous log level is returned).
    """
    if "torch" in sys.modules:
        log_ = logging.getLogger(_TORCH_CPP_LOG)
        level = log_.level
        log_.setLevel(logging.ERROR)
        return level
    sys.modules["torch"] = None  # type: ignore[assignment]  # Python's documented "import blocked" marker
    return True


def _unhide_torch(hidden: bool | int) -> None:
    if hidden is True:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
    elif hidden is not False:
        logging.getLogger(_TORCH_CPP_LOG).setLevel(hidden)


def _import_nncf() -> Any:
    hidden = _hide_torch()
    try:
        import nncf
    except ImportError as exc:
        raise MissingExtraError("nncf", "quantize", "INT8 quantization") from exc
    finally:
        _unhide_torch(hidden)
    return nncf
