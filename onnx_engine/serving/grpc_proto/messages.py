"""The message classes of ``inference.GRPCInferenceService``, built from the committed
descriptor set in a private descriptor pool (see the package's docstring for why not protobuf's
default pool, where generated ``*_pb2`` modules register theirs).

The classes are protobuf's own, made by ``message_factory`` from the compiled descriptors, so
the wire format is protobuf's; only the pool differs. Their fields are the .proto's, hence
``Any`` to type checkers.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"
_DESCRIPTORS = files(__package__).joinpath("grpc_predict_v2.desc")


def _service() -> Any:
    """The service's descriptor, in a pool of its own holding the compiled .proto."""
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(_DESCRIPTORS.read_bytes()).file:
        pool.Add(file)
    return pool.FindServiceByName(SERVICE)


def _rpc_messages() -> dict[str, tuple[Any, Any]]:
    """Each RPC of the service: name -> (request class, response class)."""
    return {method.name: (message_factory.GetMessageClass(method.input_type),
                          message_factory.GetMessageClass(method.output_type))
            for method in _service().methods}


RPCS = _rpc_messages()
ServerLiveRequest, ServerLiveResponse = RPCS["ServerLive"]
ServerReadyRequest, ServerReadyResponse = RPCS["ServerReady"]
ModelReadyRequest, ModelReadyResponse = RPCS["ModelReady"]
ServerMetadataRequest, ServerMetadataResponse = RPCS["ServerMetadata"]
ModelMetadataRequest, ModelMetadataResponse = RPCS["ModelMetadata"]
ModelInferRequest, ModelInferResponse = RPCS["ModelInfer"]
