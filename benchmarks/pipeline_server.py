"""The serving contender: the server users write today, FastAPI + ``transformers.pipeline``.

One request at a time (the endpoint calls the pipeline on the event loop, as the usual tutorial
does), on PyTorch, speaking the same Hugging Face shape as ``onnx-engine serve``
(``POST /models/NAME`` with ``{"inputs", "parameters"}``), so ``onnx-engine loadtest --protocol hf``
measures both the same way. Started by ``benchmarks/serve_bench.py``; listens on 127.0.0.1 only.

    python benchmarks/pipeline_server.py CHECKPOINT --name NAME [--port 0]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch
import transformers
import uvicorn
from fastapi import FastAPI, HTTPException

from onnx_engine.serving.server import Listener, bind


def build_app(checkpoint: str, name: str) -> FastAPI:
    classifier = transformers.pipeline("text-classification", model=checkpoint, device="cpu")
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/models/{model}")
    async def classify(model: str, body: dict[str, Any]) -> Any:
        if model != name:
            raise HTTPException(404, f"no model {model}")
        inputs = body["inputs"]
        texts = inputs if isinstance(inputs, list) else [inputs]
        parameters = body.get("parameters") or {}
        return classifier(texts, top_k=parameters.get("top_k"),
                          function_to_apply=parameters.get("function_to_apply"))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    app = build_app(args.checkpoint, args.name)
    sock = bind(Listener(port=args.port))  # 127.0.0.1, TCP_NODELAY as the engine's server
    print(f"pipeline server: {args.name} on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
