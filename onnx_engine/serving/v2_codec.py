"""Open Inference Protocol (KServe V2 / Triton HTTP) bodies: JSON and the binary extension.

Binary tensor data extension: the body is a JSON header of ``Inference-Header-Content-Length``
bytes followed by the raw tensors of the inputs whose ``parameters.binary_data_size`` is set, in
input order. A BYTES tensor is its elements, each a 4-byte little-endian length and the bytes.
Outputs go binary when the request asks (``outputs[i].parameters.binary_data``, or the request's
``parameters.binary_data_output``), which ``tritonclient.http`` does by default.

The gRPC listener (``grpc_codec``) decodes its messages with the same checks: an input's header
(:func:`input_count`), a BYTES tensor's bytes (:func:`bytes_elements`), the parameters the model
sees (:func:`model_parameters`), and the outputs to send (:func:`selected_outputs`,
:func:`tensor_bytes`).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.tokenization import checked_unicode
from onnx_engine.serving.errors import BackendError, ValidationError
from onnx_engine.serving.tasks.base import MODEL_VERSION, OutputTensor

HEADER_LENGTH = "Inference-Header-Content-Length"
# Request parameters that steer the protocol or the scheduler, not the model.
_PROTOCOL_PARAMETERS = ("binary_data_output", "priority", "timeout")
_LENGTH = struct.Struct("<I")
NO_INPUTS = 'The request needs "inputs": a non-empty list of tensors.'


@dataclass(frozen=True)
class V2Request:
    """A decoded inference request: BYTES inputs as strings, and how to send each output."""

    id: str | None
    inputs: dict[str, list[str]]
    parameters: dict[str, Any]
    requested: dict[str, bool] | None  # output name -> binary; None: every output
    binary_default: bool


def parse_request(body: bytes, header_length: str | None) -> V2Request:
    """Decode a V2 body; ``header_length`` is the ``Inference-Header-Content-Length`` header.

    Raises:
        ValidationError: malformed JSON or binary data, non-BYTES inputs, shapes that disagree
            with the data.
    """
    json_size = _header_size(header_length, len(body))
    header = _json_object(body[:json_size])
    binary = memoryview(body)[json_size:]
    offset = 0
    inputs: dict[str, list[str]] = {}
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ValidationError(NO_INPUTS)
    for tensor in raw_inputs:
        name, count, binary_size = _input_header(tensor)
        if binary_size is None:
            values = _json_strings(name, tensor.get("data"), count)
        else:
            if offset + binary_size > len(binary):
                raise ValidationError(
                    f"Input '{name}' declares {binary_size} binary bytes but the body has only "
                    f"{len(binary) - offset} left."
                )
            values = bytes_elements(name, binary[offset : offset + binary_size], count)
            offset += binary_size
        add_input(inputs, name, values)
    if offset != len(binary):
        raise ValidationError(
            f"The body has {len(binary) - offset} bytes after the declared binary inputs."
        )
    parameters = _object(header.get("parameters"), "parameters")
    binary_default = bool(parameters.get("binary_data_output", False))
    return V2Request(request_id(header.get("id")), inputs, model_parameters(parameters),
                     _requested_outputs(header.get("outputs"), binary_default), binary_default)


def model_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The request parameters the model's handler sees: all but the protocol's own."""
    return {k: v for k, v in parameters.items() if k not in _PROTOCOL_PARAMETERS}


def encode_response(
    model: str, request: V2Request, outputs: list[OutputTensor]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (content type, binary header length).

    Raises:
        ValidationError: the request asked for an output the model does not have.
    """
    entries, blobs = [], []
    for output, as_binary in selected_outputs(request, outputs):
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype,
                                 "shape": list(output.data.shape)}
        if as_binary:
            blob = tensor_bytes(output)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_tensor(output)
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model, "model_version": MODEL_VERSION,
                                "outputs": entries}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, ensure_ascii=False, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }


def selected_outputs(
    request: V2Request, outputs: list[OutputTensor]
) -> list[tuple[OutputTensor, bool]]:
    """The outputs the request asked for (all when it named none), each with whether to send
    it binary, in the order asked.

    Raises:
        ValidationError: the request asked for an output the model does not have.
    """
    by_name = {output.name: output for output in outputs}
    wanted = request.requested or dict.fromkeys(by_name, request.binary_default)
    unknown = sorted(set(wanted) - set(by_name))
    if unknown:
        raise ValidationError(
            f"Unknown output(s) {unknown}; this model has {', '.join(by_name)}."
        )
    return [(by_name[name], as_binary) for name, as_binary in wanted.items()]


def _header_size(header_length: str | None, body_size: int) -> int:
    if header_length is None:
        return body_size
    try:
        size = int(header_length)
    except ValueError:
        size = -1
    if not 0 < size <= body_size:
        raise ValidationError(
            f"{HEADER_LENGTH} is {header_length!r}; it must be the JSON header's size in bytes "
            f"(1..{body_size})."
        )
    return size


def _json_object(raw: bytes | memoryview) -> dict[str, Any]:
    try:
        value = json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ValidationError(f"The request body is not valid JSON: {error}.") from None
    return _object(value, "the request body")


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a JSON object, got {type(value).__name__}.")
    return value


def _input_header(tensor: Any) -> tuple[str, int, int | None]:
    tensor = _object(tensor, "each input")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str):
        raise ValidationError('Each input needs a "name" string.')
    count = input_count(name, datatype, shape)
    binary_size = _object(tensor.get("parameters"), f"input '{name}' parameters").get(
        "binary_data_size"
    )
    if binary_size is not None and (not isinstance(binary_size, int) or binary_size < 0):
        raise ValidationError(f"Input '{name}' has a bad binary_data_size {binary_size!r}.")
    return name, count, binary_size


def add_input(inputs: dict[str, list[str]], name: str, values: list[str]) -> None:
    """Record input ``name``'s strings; a name sent twice would silently answer one of them.

    Raises:
        ValidationError: ``inputs`` has ``name`` already.
    """
    if name in inputs:
        raise ValidationError(f"Input '{name}' is sent twice; send each input once.")
    inputs[name] = values


def input_count(name: str, datatype: Any, shape: Any) -> int:
    """The elements of input ``name``, after checking its datatype (BYTES) and shape.

    Raises:
        ValidationError: another datatype, or a shape that is not non-negative integers.
    """
    if datatype != "BYTES":
        raise ValidationError(
            f"Input '{name}' has datatype {datatype!r}; this server's models take text as BYTES."
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ValidationError(f"Input '{name}' needs a shape: a list of non-negative integers.")
    return math.prod(shape)


def _json_strings(name: str, data: Any, count: int) -> list[str]:
    flat = list(_flatten(data)) if isinstance(data, list) else None
    if flat is None or not all(isinstance(item, str) for item in flat):
        raise ValidationError(f"Input '{name}' needs \"data\": a list of strings.")
    if len(flat) != count:
        raise ValidationError(f"Input '{name}' has {len(flat)} strings but its shape says {count}.")
    return flat


def _flatten(data: list) -> Any:
    """Row-major elements of nested lists, without recursion (depth is the client's choice)."""
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def bytes_elements(name: str, raw: memoryview | bytes, count: int) -> list[str]:
    """The strings of a binary BYTES tensor (each a 4-byte little-endian length, then UTF-8).

    Raises:
        ValidationError: malformed data, or not ``count`` elements.
    """
    values, offset = [], 0
    try:
        while offset < len(raw):
            (size,) = _LENGTH.unpack_from(raw, offset)
            offset += _LENGTH.size
            if offset + size > len(raw):
                raise struct.error("element runs past the tensor")
            values.append(bytes(raw[offset : offset + size]).decode("utf-8"))
            offset += size
    except (struct.error, UnicodeDecodeError) as error:
        raise ValidationError(
            f"Input '{name}' is not valid binary BYTES data (4-byte little-endian length, then "
            f"UTF-8 bytes, per element): {error}."
        ) from None
    if len(values) != count:
        raise ValidationError(
            f"Input '{name}' has {len(values)} strings but its shape says {count}."
        )
    return values


def request_id(value: Any) -> str | None:
    """The request's ``id``, echoed in the answer: so it must be valid Unicode (422 if not)."""
    if value is None:
        return value
    if isinstance(value, str):
        return checked_unicode(value, '"id"')
    raise ValidationError(f'"id" must be a string, got {type(value).__name__}.')


def _requested_outputs(value: Any, binary_default: bool) -> dict[str, bool] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValidationError('"outputs" must be a list of {"name": ...} objects.')
    requested = {}
    for output in value:
        output = _object(output, "each requested output")
        if not isinstance(output.get("name"), str):
            raise ValidationError('Each requested output needs a "name" string.')
        parameters = _object(output.get("parameters"), "output parameters")
        requested[output["name"]] = bool(parameters.get("binary_data", binary_default))
    return requested


def tensor_bytes(output: OutputTensor) -> bytes:
    """The tensor as the binary extension and gRPC's ``raw_output_contents`` carry it."""
    if output.datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(item)) + item for item in output.data.reshape(-1))
    return np.ascontiguousarray(output.data, dtype="<f4").tobytes()


def _json_tensor(output: OutputTensor) -> list:
    """The tensor as a JSON list.

    Raises:
        BackendError: a number is NaN or infinite, which JSON cannot carry (Python's json would
            write ``Infinity``, which no client parses). The engine refuses the arguments that
            lead there; this is the last guard.
    """
    flat = output.data.reshape(-1)
    if output.datatype == "BYTES":
        return [item.decode("utf-8") for item in flat]
    if not np.isfinite(flat).all():
        raise BackendError(
            f"Output '{output.name}' holds a non-finite value ({flat[~np.isfinite(flat)][0]}), "
            "which JSON cannot carry: the request's arguments led there; please report them."
        )
    return flat.tolist()
