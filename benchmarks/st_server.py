"""The embedding serving contender: FastAPI + ``sentence-transformers`` on PyTorch.

The server a PyTorch user writes for an OpenAI-compatible embeddings endpoint, with the settings
such a user would pick: the model loaded once, every intra-op thread (``torch.set_num_threads``),
``torch.inference_mode``, optionally ``torch.autocast("cpu", dtype=torch.bfloat16)`` (``--bf16``;
faster only on CPUs with bf16 instructions), and ``encode`` called on the event loop, one request
at a time: with all cores busy in one PyTorch call, running requests side by side from a thread
pool only makes them contend. It answers ``POST /v1/embeddings`` exactly as ``onnx-engine serve``
does (the same request parsing and answer shaping, ``onnx_engine.embedding_protocols``), so
``onnx-engine loadtest --protocol openai`` measures both the same way. Started by
``benchmarks/serve_bench.py``; listens on 127.0.0.1 only.

    python benchmarks/st_server.py CHECKPOINT --name NAME [--bf16] [--port 0]
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from sentence_transformers import SentenceTransformer

from engine.errors import InputError
from onnx_engine.embedding_protocols import openai_response, parse_openai
from onnx_engine.serving.server import Listener, bind


def build_app(checkpoint: str, name: str, bf16: bool) -> FastAPI:
    model = SentenceTransformer(checkpoint, device="cpu")
    tokenizer, max_length = model.tokenizer, model.max_seq_length
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    async def embeddings(body: dict[str, Any]) -> Any:
        try:
            request = parse_openai(body)
        except InputError as error:
            raise HTTPException(422, str(error)) from error
        if request.model != name:
            raise HTTPException(404, f"no model {request.model}")
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            vectors = model.encode(request.texts, batch_size=len(request.texts),
                                   convert_to_numpy=True, show_progress_bar=False)
        # usage: the tokens the model saw, as an OpenAI-compatible server reports them
        tokens = [len(ids) for ids in tokenizer(request.texts, truncation=True,
                                                max_length=max_length)["input_ids"]]
        return openai_response(vectors, tokens, request.model, request.encoding_format)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a sentence-transformers model folder")
    parser.add_argument("--name", required=True, help="the model name clients send")
    parser.add_argument("--bf16", action="store_true", help="run under bf16 autocast")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    app = build_app(args.checkpoint, args.name, args.bf16)
    sock = bind(Listener(port=args.port))  # 127.0.0.1, TCP_NODELAY as the engine's server
    print(f"sentence-transformers server: {args.name} on http://127.0.0.1:{sock.getsockname()[1]}",
          flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
