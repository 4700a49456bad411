"""``onnx-engine embed ARTIFACT TEXT...``: sentence embeddings as JSON lines or one ``.npy``
file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.tasks.feature_extraction import Embedder
from onnx_engine.commands.runtime_args import (
    add_batch_size_argument,
    add_runtime_arguments,
    add_text_arguments,
    load_for_command,
    read_texts,
    save_npy,
)
from onnx_engine.progress_bar import chunks_with_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed", help="sentence embeddings from a feature-extraction artifact"
    )
    parser.add_argument("artifact", help="artifact folder")
    add_text_arguments(parser)
    parser.add_argument("--save", type=Path, default=None, metavar="OUT.npy",
                        help="write all embeddings as one float32 [N, D] .npy file instead of "
                        "JSON lines")
    add_embedding_arguments(parser)
    add_runtime_arguments(parser)
    parser.set_defaults(handler=run)


def add_embedding_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``embed`` and ``search``."""
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                        help="L2-normalize the embeddings (default: as the model does)")
    add_batch_size_argument(parser, 32)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar or over-length warnings on stderr")


def embed_texts(embedder: Embedder, texts: list[str], args: argparse.Namespace,
                label: str = "embedding") -> np.ndarray:
    """Embeddings of ``texts`` in chunks, with a progress bar for long inputs."""
    if not texts:
        raise InputError("No texts to embed: the input is empty.")
    parts = [
        embedder.embed(chunk, batch_size=args.batch_size, normalize=args.normalize)
        for chunk in chunks_with_progress(texts, label, args.quiet)
    ]
    return np.concatenate(parts)


def run(args: argparse.Namespace) -> int:
    texts = read_texts(args)
    if args.save is not None and not args.save.parent.is_dir():
        raise InputError(f"--save: the folder '{args.save.parent}' does not exist.")
    embedder = load_for_command(args, Embedder, "embed")
    embeddings = embed_texts(embedder, texts, args)
    if args.save is not None:
        save_npy(args.save, embeddings, "--save")
        print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} float32 embeddings to "
              f"{args.save}", file=sys.stderr)
        return 0
    for text, vector in zip(texts, embeddings):
        print(json.dumps({"text": text, "embedding": vector.tolist()}, ensure_ascii=False))
    return 0
