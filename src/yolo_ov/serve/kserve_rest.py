"""The KServe v2 REST encoding: HTTP bodies to and from :mod:`yolo_ov.serve.kserve`'s dataclasses.

OpenVINO Model Server, Triton and KServe speak this encoding, so their
clients (``tritonclient.http``, KServe's SDK, plain ``curl``) work against
``yolo-ov serve`` unchanged. A body is JSON, or, with the binary tensor data
extension, a JSON header of ``Inference-Header-Content-Length`` bytes followed
by the tensors' raw bytes (``binary_data_size`` in a tensor's parameters).
In JSON, ``BYTES`` elements are base64 strings and numbers are JSON numbers.

Only the encoding lives here: what the tensors must hold is checked by the
transport-neutral core, which the gRPC transport shares.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from .kserve import (
    InferRequest,
    InferResponse,
    OutputTensor,
    ProtocolError,
    RequestedOutput,
    Tensor,
    check_input_names,
)

__all__ = ["encode_infer_response", "parse_infer_request"]


def parse_infer_request(body: bytes, header_length: int | str | None = None) -> InferRequest:
    """Parse a REST infer request body into the protocol's :class:`~yolo_ov.serve.kserve.InferRequest`.

    Args:
        body: the whole HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header, when the
            binary extension is used: the JSON is that many leading bytes and
            the tensors' binary data follow, in input order.

    Raises:
        ProtocolError: malformed JSON, a wrong input name, shape, binary
            sizes that do not add up, bad base64; the message says which.
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
    if not isinstance(inputs, list):
        inputs = []
    names = [i.get("name") if isinstance(i, dict) else i for i in inputs]
    check_input_names(names)
    if not isinstance(inputs[0], dict):
        raise ProtocolError(f"unknown inputs {names}; each input must be an object with a 'name'")
    tensor = _input(inputs[0], binary)
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("'parameters' must be a JSON object")
    return InferRequest(
        id=str(request["id"]) if request.get("id") not in (None, "") else None,
        inputs=(tensor,),
        parameters=parameters,
        outputs=_requested_outputs(request.get("outputs")),
    )


def _input(tensor: dict[str, Any], binary: memoryview) -> Tensor:
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), _shape(tensor.get("name"), tensor.get("shape"))
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(f"binary_data_size {size!r} is not a byte count")
        if size != len(binary):
            raise ProtocolError(f"binary_data_size is {size} but {len(binary)} bytes follow the header")
        return Tensor(str(name), str(datatype), shape, raw=binary, parameters=params)
    if len(binary):
        raise ProtocolError(f"{len(binary)} bytes follow the header but no input has binary_data_size")
    if "data" not in tensor:
        raise ProtocolError(f"input {name!r} has neither 'data' nor binary_data_size")
    data = _flatten(tensor["data"])
    if datatype == "BYTES":
        data = [_b64(v, i) for i, v in enumerate(data)]
    return Tensor(str(name), str(datatype), shape, data=data, parameters=params if isinstance(params, dict) else {})


def _shape(name: Any, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise ProtocolError(f"input {name!r} shape {value!r} is not a list of non-negative integers")
    return tuple(value)


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
        out.append(RequestedOutput(item["name"], params if isinstance(params, dict) else {}))
    return tuple(out)


def encode_infer_response(request: InferRequest, response: InferResponse) -> tuple[bytes, int | None]:
    """The REST body of ``response``, and the JSON header's length when binary data follow it.

    Each output goes as JSON data or as binary data after the header, as the
    request said (``binary_data`` per output, ``binary_data_output`` for all).
    """
    default = bool(request.parameters.get("binary_data_output", False))
    asked = {o.name: o.parameters.get("binary_data") for o in request.outputs or ()}
    outputs, blobs = [], []
    for tensor in response.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        binary = asked.get(tensor.name)
        if default if binary is None else bool(binary):
            blob = tensor.raw()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(tensor)
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version,
                            "outputs": outputs}
    if response.id is not None:
        body["id"] = response.id
    header = json.dumps(body, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _json_data(tensor: OutputTensor) -> list[Any]:
    flat = np.asarray(tensor.array).reshape(-1).tolist()
    if tensor.datatype == "BYTES":
        return [v.decode() for v in flat]
    if tensor.datatype.startswith("FP"):
        return [float(v) for v in flat]
    return flat
