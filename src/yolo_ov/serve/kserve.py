"""The KServe v2 REST protocol (Open Inference Protocol): requests in, tensors out.

OpenVINO Model Server, Triton and KServe speak this protocol, so their clients
(``tritonclient.http``, KServe's SDK, plain ``curl``) work against
``yolo-ov serve`` unchanged. This module is the protocol only, pure Python and
NumPy: it parses an infer request (JSON tensors, or the binary tensor data
extension where a JSON header of ``Inference-Header-Content-Length`` bytes is
followed by raw tensor bytes), turns results into output tensors, and encodes
the response the same two ways. It knows nothing of HTTP frameworks or engines.

Inputs (one tensor named ``image``):

- ``BYTES``, any shape of ``N`` elements: ``N`` encoded images (JPEG, PNG...).
  In the binary extension each element is a 4-byte little-endian length and
  the bytes; in JSON each element is the image in base64.
- ``UINT8`` ``[N, H, W, 3]``: ``N`` BGR frames, as OpenCV holds them.

Outputs per image, padded to the largest count ``K`` in the request (see
:func:`result_tensors`): ``num_detections`` ``INT32 [N]``, ``boxes`` ``FP32
[N, K, 4]`` (x1, y1, x2, y2 in original pixels), ``scores`` ``FP32 [N, K]``,
``classes`` ``INT32 [N, K]`` (padding: 0, 0 and -1), and one tensor per
per-detection field a task adds in ``Detections.data``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "INPUT_NAME",
    "InferRequest",
    "ProtocolError",
    "RequestedOutput",
    "TensorSpec",
    "encode_infer_response",
    "output_specs",
    "parse_infer_request",
    "result_tensors",
]

#: The one input every served model takes.
INPUT_NAME = "image"

_NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


class ProtocolError(ValueError):
    """A request that does not follow the protocol or this server's inputs (HTTP 400)."""


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as model metadata describes it (``-1``: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of the request's ``outputs``; ``binary`` ``None``: the request's default."""

    name: str
    binary: bool | None = None


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request.

    Attributes:
        id: the client's request id, echoed in the response.
        images: encoded images (``bytes``) or BGR frames (``H x W x 3`` uint8 views).
        datatype: ``BYTES`` or ``UINT8``: how the images came.
        parameters: the request's ``parameters`` (detection settings and others).
        outputs: the outputs asked for, in order; ``None``: all of them.
        binary_output: send outputs as binary data unless an output says otherwise.
    """

    id: str | None
    images: list[bytes | np.ndarray]
    datatype: str
    parameters: dict[str, Any]
    outputs: tuple[RequestedOutput, ...] | None
    binary_output: bool


def parse_infer_request(body: bytes, header_length: int | str | None = None) -> InferRequest:
    """Parse an infer request body.

    Args:
        body: the whole HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header, when the
            binary extension is used: the JSON is that many leading bytes and
            the tensors' binary data follow, in input order.

    Raises:
        ProtocolError: malformed JSON, a wrong input name, datatype or shape,
            binary sizes that do not add up; the message says which.
    """
    view = memoryview(body)
    if header_length is None:
        head, binary = view, view[len(view):]
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"Inference-Header-Content-Length {header_length!r} is not a number") from None
        if not 0 < n <= len(view):
            raise ProtocolError(f"Inference-Header-Content-Length {n} does not fit a body of {len(view)} bytes")
        head, binary = view[:n], view[n:]
    try:
        request = json.loads(bytes(head))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"the request header is not valid JSON ({exc})") from None
    if not isinstance(request, dict):
        raise ProtocolError("the request must be a JSON object with 'inputs'")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(f"the request has no 'inputs'; send one tensor named {INPUT_NAME!r}")
    if len(inputs) != 1 or not isinstance(inputs[0], dict) or inputs[0].get("name") != INPUT_NAME:
        names = [i.get("name") if isinstance(i, dict) else i for i in inputs]
        raise ProtocolError(f"unknown inputs {names}; this model takes one input named {INPUT_NAME!r}")
    tensor = inputs[0]
    datatype, shape = tensor.get("datatype"), _shape(tensor.get("shape"))
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(f"binary_data_size {size!r} is not a byte count")
        if size != len(binary):
            raise ProtocolError(f"binary_data_size is {size} but {len(binary)} bytes follow the header")
        raw: memoryview | None = binary
    else:
        if len(binary):
            raise ProtocolError(f"{len(binary)} bytes follow the header but no input has binary_data_size")
        raw = None
        if "data" not in tensor:
            raise ProtocolError(f"input {INPUT_NAME!r} has neither 'data' nor binary_data_size")
    if datatype == "BYTES":
        images: list[bytes | np.ndarray] = list(_bytes_elements(shape, raw, tensor.get("data")))
    elif datatype == "UINT8":
        images = list(_frames(shape, raw, tensor.get("data")))
    else:
        raise ProtocolError(
            f"input {INPUT_NAME!r} has datatype {datatype!r}; send BYTES (encoded images) "
            "or UINT8 [N, H, W, 3] (BGR frames)"
        )
    if not images:
        raise ProtocolError(f"input {INPUT_NAME!r} holds no images")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("'parameters' must be a JSON object")
    return InferRequest(
        id=str(request["id"]) if request.get("id") not in (None, "") else None,
        images=images,
        datatype=datatype,
        parameters=parameters,
        outputs=_requested_outputs(request.get("outputs")),
        binary_output=bool(parameters.get("binary_data_output", False)),
    )


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise ProtocolError(f"input {INPUT_NAME!r} shape {value!r} is not a list of non-negative integers")
    return tuple(value)


def _bytes_elements(shape: tuple[int, ...], raw: memoryview | None, data: Any) -> Iterable[bytes]:
    count = math.prod(shape)
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
        items = [_b64(v, i) for i, v in enumerate(_flatten(data))]
    if len(items) != count:
        raise ProtocolError(f"input {INPUT_NAME!r} has shape {list(shape)} ({count} elements) but holds {len(items)}")
    return items


def _b64(value: Any, index: int) -> bytes:
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        value = value["b64"]
    if not isinstance(value, str):
        raise ProtocolError(f"BYTES element {index} in JSON must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"BYTES element {index} is not valid base64 (JSON carries images base64-encoded)") from None


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _frames(shape: tuple[int, ...], raw: memoryview | None, data: Any) -> Iterable[np.ndarray]:
    if len(shape) != 4 or shape[3] != 3 or 0 in shape[1:3]:
        raise ProtocolError(f"UINT8 input {INPUT_NAME!r} must have shape [N, H, W, 3] (BGR frames), got {list(shape)}")
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != count:
            raise ProtocolError(f"UINT8 {list(shape)} needs {count} bytes of binary data, got {len(raw)}")
        array = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
    else:
        try:
            values = np.asarray(_flatten(data), dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise ProtocolError("UINT8 data must be a list of integers from 0 to 255") from None
        if values.size != count:
            raise ProtocolError(f"UINT8 {list(shape)} needs {count} values, got {values.size}")
        if values.size and (values.min() < 0 or values.max() > 255):
            raise ProtocolError("UINT8 data must be integers from 0 to 255")
        array = values.astype(np.uint8).reshape(shape)
    return [array[i] for i in range(shape[0])]


def _requested_outputs(value: Any) -> tuple[RequestedOutput, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ProtocolError("'outputs' must be a list of {'name': ...} objects")
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError("each entry of 'outputs' must be an object with a 'name'")
        params = item.get("parameters") or {}
        binary = params.get("binary_data") if isinstance(params, dict) else None
        out.append(RequestedOutput(item["name"], None if binary is None else bool(binary)))
    return tuple(out)


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


def result_tensors(results: Sequence[Any]) -> dict[str, tuple[str, np.ndarray]]:
    """Output tensors ``name -> (datatype, array)`` for one request's results.

    Detections give the base outputs, padded to the most detections ``K`` of
    any image, plus one tensor per ``Detections.data`` field: ``masks`` as
    COCO RLE JSON strings (``BYTES [N, K]``, ``{"size": [h, w], "counts": "..."}``
    at original-image size, empty string for padding),
    ``xywhr`` as ``obb``, ``track_id`` as ``track_ids``; any other numeric
    field under its own name (``FP32`` or ``INT32``, ``[N, K, ...]``). An
    image-level classification result (one with ``top5``) gives ``top5``
    (class ids) and ``top5_scores``.
    """
    if results and all(_is_classification(r) for r in results):
        return _classification_tensors(results)
    n = len(results)
    k = max((len(r) for r in results), default=0)
    counts = np.array([len(r) for r in results], np.int32)
    boxes = np.zeros((n, k, 4), np.float32)
    scores = np.zeros((n, k), np.float32)
    classes = np.full((n, k), -1, np.int32)
    for i, r in enumerate(results):
        m = len(r)
        boxes[i, :m], scores[i, :m], classes[i, :m] = r.xyxy, r.confidence, r.class_id
    tensors: dict[str, tuple[str, np.ndarray]] = {
        "num_detections": ("INT32", counts), "boxes": ("FP32", boxes), "scores": ("FP32", scores),
        "classes": ("INT32", classes),
    }
    keys = dict.fromkeys(key for r in results for key in (getattr(r, "data", None) or {}))
    for key in keys:
        tensor = _data_tensor(key, [(r.data.get(key), len(r)) for r in results], k)
        if tensor is not None:
            tensors[_RENAMED.get(key, key)] = tensor
    return tensors


def _data_tensor(key: str, columns: list[tuple[Any, int]], k: int) -> tuple[str, np.ndarray] | None:
    if key == "masks":
        cells = np.full((len(columns), k), b"", dtype=object)
        for i, (values, _) in enumerate(columns):
            for j, rle in enumerate(_mask_rles(values)):
                cells[i, j] = json.dumps(rle, separators=(",", ":")).encode()
        return "BYTES", cells
    arrays = [None if v is None else np.asarray(v) for v, _ in columns]
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
    if hasattr(values, "to_rle"):
        return list(values.to_rle())
    return [dict(v, counts=v["counts"].decode()) if isinstance(v.get("counts"), bytes) else v for v in values]


def _is_classification(result: Any) -> bool:
    return getattr(result, "top5", None) is not None and not hasattr(result, "xyxy")


def _classification_tensors(results: Sequence[Any]) -> dict[str, tuple[str, np.ndarray]]:
    ids = np.full((len(results), 5), -1, np.int32)
    scores = np.zeros((len(results), 5), np.float32)
    for i, r in enumerate(results):
        top = np.asarray(r.top5).reshape(-1)[:5]
        ids[i, : len(top)] = top
        conf = getattr(r, "top5_confidence", None)
        if conf is None:
            conf = getattr(r, "top5conf", None)
        if conf is not None:
            c = np.asarray(conf, np.float32).reshape(-1)[:5]
            scores[i, : len(c)] = c
    return {"top5": ("INT32", ids), "top5_scores": ("FP32", scores)}


def encode_infer_response(
    request: InferRequest,
    tensors: Mapping[str, tuple[str, np.ndarray]],
    *,
    model_name: str,
    model_version: str = "1",
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follow it.

    The outputs are those the request asked for (all of ``tensors`` when it
    named none), each as JSON data or as binary data after the header, as
    the request said (``binary_data`` per output, ``binary_data_output`` for all).

    Raises:
        ProtocolError: the request named an output this model does not give.
    """
    wanted = request.outputs or tuple(RequestedOutput(name) for name in tensors)
    unknown = [o.name for o in wanted if o.name not in tensors]
    if unknown:
        raise ProtocolError(f"unknown outputs {unknown}; this model gives {list(tensors)}")
    outputs, blobs = [], []
    for out in wanted:
        datatype, array = tensors[out.name]
        entry: dict[str, Any] = {"name": out.name, "datatype": datatype, "shape": list(array.shape)}
        binary = request.binary_output if out.binary is None else out.binary
        if binary:
            blob = _binary(datatype, array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(datatype, array)
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _binary(datatype: str, array: np.ndarray) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in array.reshape(-1).tolist())
    return np.ascontiguousarray(array, dtype=np.dtype(_NUMPY[datatype]).newbyteorder("<")).tobytes()


def _json_data(datatype: str, array: np.ndarray) -> list[Any]:
    if datatype == "BYTES":
        return [v.decode() for v in array.reshape(-1).tolist()]
    if datatype.startswith("FP"):
        return [float(v) for v in array.reshape(-1).tolist()]
    return array.reshape(-1).tolist()
