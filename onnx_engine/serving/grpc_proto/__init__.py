"""The Open Inference Protocol's gRPC messages and service, generated from
``grpc_predict_v2.proto`` by ``make grpc-stubs`` (grpcio-tools); never edited by hand.

Their messages live in protobuf's default descriptor pool as ``inference.*``, as do
``tritonclient.grpc``'s: the two cannot be imported into one process (protobuf refuses the
duplicate symbols), so a gRPC client of this server runs in a process of its own.
"""
