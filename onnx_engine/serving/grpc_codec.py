"""Open Inference Protocol gRPC messages to and from the V2 request and outputs of the HTTP
routes, decoded and checked by the same functions (``v2_codec``), so that a request answers
the same over either listener.

``tritonclient.grpc`` sends every input's data in ``raw_input_contents`` (a BYTES tensor laid
out as the binary extension lays it: per element a 4-byte little-endian length, then the
bytes) and reads outputs from ``raw_output_contents``; other clients may send an input's
``contents.bytes_contents`` instead. Outputs always go raw, as Triton sends them.
"""

from __future__ import annotations

from typing import Any

from onnx_engine.serving.errors import ValidationError
from onnx_engine.serving.grpc_proto import messages as pb
from onnx_engine.serving.tasks.base import MODEL_VERSION, OutputTensor
from onnx_engine.serving.v2_codec import (
    NO_INPUTS,
    V2Request,
    add_input,
    bytes_elements,
    input_count,
    model_parameters,
    request_id,
    selected_outputs,
    tensor_bytes,
)


def parse_infer_request(message: Any) -> V2Request:
    """The V2 request of a ``ModelInferRequest``.

    Raises:
        ValidationError: no inputs, non-BYTES inputs, shapes that disagree with the data, raw
            contents that are not one per input, or bytes that are not UTF-8.
    """
    raw = message.raw_input_contents
    if not message.inputs:
        raise ValidationError(NO_INPUTS)
    if raw and len(raw) != len(message.inputs):
        raise ValidationError(
            f"The request has {len(raw)} raw_input_contents for {len(message.inputs)} inputs; "
            "send one per input, in input order (or none, and each input's contents)."
        )
    inputs: dict[str, list[str]] = {}
    for index, tensor in enumerate(message.inputs):
        count = input_count(tensor.name, tensor.datatype, list(tensor.shape))
        add_input(inputs, tensor.name, bytes_elements(tensor.name, raw[index], count) if raw
                  else _content_strings(tensor, count))
    parameters = {key: _value(parameter) for key, parameter in message.parameters.items()}
    requested = {output.name: True for output in message.outputs} or None
    return V2Request(request_id(message.id or None), inputs, model_parameters(parameters),
                     requested, binary_default=True)


def infer_response(model: str, request: V2Request, outputs: list[OutputTensor]) -> Any:
    """The ``ModelInferResponse`` holding the outputs the request asked for, raw.

    Raises:
        ValidationError: the request asked for an output the model does not have.
    """
    response = pb.ModelInferResponse(model_name=model, model_version=MODEL_VERSION,
                                     id=request.id or "")
    for output, _ in selected_outputs(request, outputs):
        response.outputs.add(name=output.name, datatype=output.datatype,
                             shape=list(output.data.shape))
        response.raw_output_contents.append(tensor_bytes(output))
    return response


def model_metadata(metadata: dict[str, Any]) -> Any:
    """The ``ModelMetadataResponse`` of a handler's V2 metadata (the HTTP route's JSON)."""

    def tensors(specs: list[dict[str, Any]]) -> list[Any]:
        return [pb.ModelMetadataResponse.TensorMetadata(
            name=spec["name"], datatype=spec["datatype"], shape=spec["shape"]) for spec in specs]

    return pb.ModelMetadataResponse(
        name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"],
        inputs=tensors(metadata["inputs"]), outputs=tensors(metadata["outputs"]))


def _content_strings(tensor: Any, count: int) -> list[str]:
    elements = tensor.contents.bytes_contents
    if len(elements) != count:
        raise ValidationError(
            f"Input '{tensor.name}' has {len(elements)} strings but its shape says {count}."
        )
    try:
        return [element.decode("utf-8") for element in elements]
    except UnicodeDecodeError as error:
        raise ValidationError(f"Input '{tensor.name}' is not UTF-8 text: {error}.") from None


def _value(parameter: Any) -> Any:
    """An ``InferParameter``'s value (``None`` when none of its kinds is set)."""
    kind = parameter.WhichOneof("parameter_choice")
    return None if kind is None else getattr(parameter, kind)
