"""The Open Inference Protocol's gRPC messages, from ``grpc_predict_v2.proto`` compiled by
``make grpc-stubs`` (grpcio-tools) into the descriptor set ``grpc_predict_v2.desc``; never
edited by hand.

``tritonclient.grpc``'s generated stubs register the same ``inference.*`` names in protobuf's
default descriptor pool, which refuses a name twice; so :mod:`.messages` builds ours in a pool of
their own, and the two can be imported into one process in either order.
"""
