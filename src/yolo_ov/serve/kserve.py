"""The KServe v2 protocol (Open Inference Protocol), transport-neutral: tensors in, tensors out.

OpenVINO Model Server, Triton and KServe speak this protocol over REST and
gRPC. This module is what both transports share, pure Python and NumPy: the
request and response as dataclasses of named tensors (as the protocol defines
them: a datatype, a shape, and the elements either typed or as raw bytes, with
parameters), the validation of the one input every served model takes, the
output tensors of a request's results, and the response holding the outputs
a request asked for. A transport only converts its wire form to and from these
dataclasses: REST's JSON and binary tensor extension is
:mod:`yolo_ov.serve.kserve_rest`; a gRPC transport converts protobuf messages.

Inputs (one tensor named ``image``):

- ``BYTES``, any shape of ``N`` elements: ``N`` encoded images (JPEG, PNG...).
  Raw, each element is a 4-byte little-endian length and the bytes (Triton's
  serialisation, the same for REST's binary extension and gRPC's raw
  contents); typed, each element is the image's bytes.
- ``UINT8`` ``[N, H, W, 3]``: ``N`` BGR frames, as OpenCV holds them.

Outputs per image, padded to the largest count ``K`` in the request (see
:func:`result_tensors`): ``num_detections`` ``INT32 [N]``, ``boxes`` ``FP32
[N, K, 4]`` (x1, y1, x2, y2 in original pixels), ``scores`` ``FP32 [N, K]``,
``classes`` ``INT32 [N, K]`` (padding: 0, 0 and -1), and one tensor per
per-detection field a task adds in ``Detections.data``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ops.masks import Masks
from ..results import Classification, Detections
from .errors import ErrorCode, ServeError

__all__ = [
    "INPUT_NAME",
    "InferRequest",
    "InferResponse",
    "OutputTensor",
    "ProtocolError",
    "RequestedOutput",
    "Tensor",
    "TensorSpec",
    "build_response",
    "check_input_names",
    "output_specs",
    "request_images",
    "result_tensors",
]

#: The one input every served model takes.
INPUT_NAME = "image"

#: Datatypes of the protocol with a NumPy counterpart (``BYTES`` has none: its elements are byte strings).
NUMPY_TYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
               "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


class ProtocolError(ServeError, ValueError):
    """A request that does not follow the protocol or this server's inputs (``INVALID_ARGUMENT``)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_ARGUMENT, message)


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as model metadata describes it (``-1``: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Tensor:
    """An input tensor as a request carries it.

    Attributes:
        name, datatype, shape: as the protocol defines them.
        data: the elements, flattened, when they came typed (``bytes`` for
            ``BYTES``, numbers otherwise); ``None`` when they came raw.
        raw: the raw contents (little-endian; ``BYTES``: a 4-byte length
            before each element), or ``None``.
        parameters: the tensor's own parameters.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Sequence[Any] | None = None
    raw: bytes | memoryview | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of the request's ``outputs``, with its parameters (REST's ``binary_data`` among them)."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferRequest:
    """An infer request, whatever transport brought it.

    Attributes:
        id: the client's request id, echoed in the response.
        inputs: the input tensors (this server takes one, :data:`INPUT_NAME`).
        parameters: the request's parameters (detection settings, ``timeout``, others).
        outputs: the outputs asked for, in order; ``None``: all of them.
    """

    id: str | None
    inputs: tuple[Tensor, ...]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[RequestedOutput, ...] | None = None


@dataclass(frozen=True)
class OutputTensor:
    """An output tensor: its elements as an array (``BYTES``: an object array of ``bytes``)."""

    name: str
    datatype: str
    array: np.ndarray
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def raw(self) -> bytes:
        """The raw contents: little-endian elements; ``BYTES``, each a 4-byte length and its bytes."""
        if self.datatype == "BYTES":
            return b"".join(struct.pack("<I", len(v)) + v for v in self.array.reshape(-1).tolist())
        dtype = np.dtype(NUMPY_TYPES[self.datatype]).newbyteorder("<")
        return np.ascontiguousarray(self.array, dtype=dtype).tobytes()


@dataclass(frozen=True)
class InferResponse:
    """An infer response: the outputs the request asked for, in its order."""

    model_name: str
    model_version: str
    id: str | None
    outputs: tuple[OutputTensor, ...]
    parameters: Mapping[str, Any] = field(default_factory=dict)


# -- the input -----------------------------------------------------------------

def check_input_names(names: Sequence[Any]) -> None:
    """The request's input names must be exactly :data:`INPUT_NAME` (checked before anything else is read).

    Raises:
        ProtocolError: no inputs, or other ones.
    """
    if not names:
        raise ProtocolError(f"the request has no 'inputs'; send one tensor named {INPUT_NAME!r}")
    if list(names) != [INPUT_NAME]:
        raise ProtocolError(f"unknown inputs {list(names)}; this model takes one input named {INPUT_NAME!r}")


def request_images(request: InferRequest) -> list[bytes | np.ndarray]:
    """The images of a request: encoded images (``bytes``) or BGR frames (``H x W x 3`` uint8 views).

    Raises:
        ProtocolError: a wrong input name, datatype or shape, element counts
            or sizes that do not add up; the message says which.
    """
    check_input_names([t.name for t in request.inputs])
    (tensor,) = request.inputs
    shape = tensor.shape
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"input {INPUT_NAME!r} shape {list(shape)!r} is not a list of non-negative integers")
    if tensor.raw is None and tensor.data is None:
        raise ProtocolError(f"input {INPUT_NAME!r} has neither 'data' nor binary_data_size")
    if tensor.datatype == "BYTES":
        images: list[bytes | np.ndarray] = list(_bytes_elements(shape, tensor))
    elif tensor.datatype == "UINT8":
        images = list(_frames(shape, tensor))
    else:
        raise ProtocolError(
            f"input {INPUT_NAME!r} has datatype {tensor.datatype!r}; send BYTES (encoded images) "
            "or UINT8 [N, H, W, 3] (BGR frames)"
        )
    if not images:
        raise ProtocolError(f"input {INPUT_NAME!r} holds no images")
    return images


def _bytes_elements(shape: tuple[int, ...], tensor: Tensor) -> list[bytes]:
    count = math.prod(shape)
    raw = tensor.raw
    if raw is not None:
        items, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise ProtocolError("BYTES binary data is cut short (an element's 4-byte length is incomplete)")
            (n,) = struct.unpack_from("<I", raw, pos)
            if pos + 4 + n > len(raw):
                raise ProtocolError(f"BYTES element {len(items)} declares {n} bytes but fewer follow")
            items.append(bytes(raw[pos + 4 : pos + 4 + n]))
            pos += 4 + n
    else:
        items = [bytes(v) for v in tensor.data or ()]
    if len(items) != count:
        raise ProtocolError(f"input {INPUT_NAME!r} has shape {list(shape)} ({count} elements) but holds {len(items)}")
    return items


def _frames(shape: tuple[int, ...], tensor: Tensor) -> list[np.ndarray]:
    if len(shape) != 4 or shape[3] != 3 or 0 in shape[1:3]:
        raise ProtocolError(f"UINT8 input {INPUT_NAME!r} must have shape [N, H, W, 3] (BGR frames), got {list(shape)}")
    count = math.prod(shape)
    if tensor.raw is not None:
        if len(tensor.raw) != count:
            raise ProtocolError(f"UINT8 {list(shape)} needs {count} bytes of binary data, got {len(tensor.raw)}")
        array = np.frombuffer(tensor.raw, dtype=np.uint8).reshape(shape)
    else:
        try:
            values = np.asarray(tensor.data, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise ProtocolError("UINT8 data must be a list of integers from 0 to 255") from None
        if values.size != count:
            raise ProtocolError(f"UINT8 {list(shape)} needs {count} values, got {values.size}")
        if values.size and (values.min() < 0 or values.max() > 255):
            raise ProtocolError("UINT8 data must be integers from 0 to 255")
        array = values.astype(np.uint8).reshape(shape)
    return [array[i] for i in range(shape[0])]


# -- outputs -------------------------------------------------------------------

_BASE_OUTPUTS = (
    TensorSpec("num_detections", "INT32", (-1,)),
    TensorSpec("boxes", "FP32", (-1, -1, 4)),
    TensorSpec("scores", "FP32", (-1, -1)),
    TensorSpec("classes", "INT32", (-1, -1)),
)

#: Per-detection ``Detections.data`` fields whose tensor has another name.
_RENAMED = {"xywhr": "obb", "track_id": "track_ids"}


def output_specs(task: str, *, kpt_shape: tuple[int, int] | None = None) -> tuple[TensorSpec, ...]:
    """The outputs a model of ``task`` gives (its metadata), base detection outputs first."""
    if task == "classify":
        return (TensorSpec("top5", "INT32", (-1, 5)), TensorSpec("top5_scores", "FP32", (-1, 5)))
    points, dims = kpt_shape or (-1, 3)
    extra = {
        "pose": (TensorSpec("keypoints", "FP32", (-1, -1, points, dims)),),
        "segment": (TensorSpec("masks", "BYTES", (-1, -1)),),
        "obb": (TensorSpec("obb", "FP32", (-1, -1, 5)),),
    }.get(task, ())
    return _BASE_OUTPUTS + extra


def result_tensors(results: Sequence[Detections | Classification]) -> dict[str, OutputTensor]:
    """Output tensors by name for one request's results.

    Detections give the base outputs, padded to the most detections ``K`` of
    any image, plus one tensor per ``Detections.data`` field: ``masks`` as
    COCO RLE JSON strings (``BYTES [N, K]``, ``{"size": [h, w], "counts": "..."}``
    at original-image size, empty string for padding),
    ``xywhr`` as ``obb``, ``track_id`` as ``track_ids``; any other numeric
    field under its own name (``FP32`` or ``INT32``, ``[N, K, ...]``).
    Classifications give ``top5`` (class ids) and ``top5_scores``.

    Raises:
        ProtocolError: detections and classifications mixed in one request.
    """
    if results and all(isinstance(r, Classification) for r in results):
        return _classification_tensors([r for r in results if isinstance(r, Classification)])
    detections = [r for r in results if isinstance(r, Detections)]
    if len(detections) != len(results):
        raise ProtocolError("a request's results must all be detections or all classifications")
    n = len(detections)
    k = max((len(r) for r in detections), default=0)
    counts = np.array([len(r) for r in detections], np.int32)
    boxes = np.zeros((n, k, 4), np.float32)
    scores = np.zeros((n, k), np.float32)
    classes = np.full((n, k), -1, np.int32)
    for i, r in enumerate(detections):
        m = len(r)
        boxes[i, :m], scores[i, :m], classes[i, :m] = r.xyxy, r.confidence, r.class_id
    base = (OutputTensor("num_detections", "INT32", counts), OutputTensor("boxes", "FP32", boxes),
            OutputTensor("scores", "FP32", scores), OutputTensor("classes", "INT32", classes))
    tensors = {t.name: t for t in base}
    keys = dict.fromkeys(key for r in detections for key in r.data)
    for key in keys:
        found = _data_tensor(key, [r.data.get(key) for r in detections], k)
        if found is not None:
            name = _RENAMED.get(key, key)
            tensors[name] = OutputTensor(name, *found)
    return tensors


def _data_tensor(key: str, columns: list[Any], k: int) -> tuple[str, np.ndarray] | None:
    if key == "masks":
        cells = np.full((len(columns), k), b"", dtype=object)
        for i, values in enumerate(columns):
            for j, rle in enumerate(_mask_rles(values)):
                cells[i, j] = json.dumps(rle, separators=(",", ":")).encode()
        return "BYTES", cells
    arrays = [None if v is None else np.asarray(v) for v in columns]
    present = [a for a in arrays if a is not None]
    if not present or any(a.dtype.kind not in "biuf" for a in present):
        return None  # not a numeric tensor: nothing to send in this protocol
    rest = {a.shape[1:] for a in present if a.ndim >= 1}
    if len(rest) != 1:
        return None
    (tail,) = rest
    floating = any(a.dtype.kind == "f" for a in present)
    dtype, datatype = (np.float32, "FP32") if floating else (np.int32, "INT32")
    out = np.zeros((len(columns), k, *tail), dtype) if floating else np.full((len(columns), k, *tail), -1, dtype)
    for i, a in enumerate(arrays):
        if a is not None and len(a):
            out[i, : len(a)] = a
    return datatype, out


def _mask_rles(values: Any) -> list[Any]:
    """COCO RLE dicts of one image's masks (``Masks.to_rle()``, or RLE dicts already)."""
    if values is None:
        return []
    if isinstance(values, Masks):
        return list(values.to_rle())
    return [dict(v, counts=v["counts"].decode()) if isinstance(v.get("counts"), bytes) else v for v in values]


def _classification_tensors(results: Sequence[Classification]) -> dict[str, OutputTensor]:
    ids = np.full((len(results), 5), -1, np.int32)
    scores = np.zeros((len(results), 5), np.float32)
    for i, r in enumerate(results):
        top = np.asarray(r.top5, np.int64).reshape(-1)[:5]
        ids[i, : len(top)] = top
        conf = np.asarray(r.top5_confidence, np.float32).reshape(-1)[:5]
        scores[i, : len(conf)] = conf
    return {"top5": OutputTensor("top5", "INT32", ids), "top5_scores": OutputTensor("top5_scores", "FP32", scores)}


def build_response(
    request: InferRequest,
    tensors: Mapping[str, OutputTensor],
    *,
    model_name: str,
    model_version: str = "1",
) -> InferResponse:
    """The response to ``request``: the outputs it asked for (all of ``tensors`` when it named none), in its order.

    Raises:
        ProtocolError: the request named an output this model does not give.
    """
    wanted = [o.name for o in request.outputs] if request.outputs else list(tensors)
    unknown = [name for name in wanted if name not in tensors]
    if unknown:
        raise ProtocolError(f"unknown outputs {unknown}; this model gives {list(tensors)}")
    return InferResponse(model_name=model_name, model_version=model_version, id=request.id,
                         outputs=tuple(tensors[name] for name in wanted))
