"""``onnx-engine serve``: an ASGI inference server with dynamic batching over engine models.

Nothing is imported here: the server's dependencies (Starlette, uvicorn, prometheus-client) are an
optional extra, and importing ``onnx_engine.serving`` must not need them. Build an app with
:func:`onnx_engine.serving.app.build_app` and run it with :mod:`onnx_engine.serving.server`.
"""
