"""``onnx-engine loadtest``: closed-loop clients against a running server, every answer checked
against the same model run in-process. Needs the ``serve`` extra (httpx)."""
