"""``onnx-engine search ARTIFACT --corpus FILE QUERY...``: semantic search, top-k per query."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.errors import InputError
from engine.tasks.feature_extraction import Embedder
from onnx_engine.commands.embed import add_embedding_arguments, embed_texts
from onnx_engine.commands.runtime_args import (
    add_runtime_arguments,
    add_text_arguments,
    load_for_command,
    read_text_lines,
    read_texts,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search", help="rank the lines of a corpus file by similarity to each query"
    )
    parser.add_argument("artifact", help="feature-extraction artifact folder")
    parser.add_argument("--corpus", type=Path, required=True,
                        help="file with one document per line (blank lines are skipped)")
    add_text_arguments(parser)
    parser.add_argument("--top-k", type=int, default=5, help="results per query (default 5)")
    add_embedding_arguments(parser)
    add_runtime_arguments(parser)
    parser.set_defaults(handler=run)


def read_corpus(path: Path) -> tuple[list[str], list[int]]:
    """Non-blank lines of ``path`` and their 1-based line numbers.

    Raises:
        InputError: ``read_text_lines`` refuses the file, or it has no non-blank line.
    """
    lines = read_text_lines(path, "--corpus")
    kept = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not kept:
        raise InputError(f"--corpus file '{path}' has no non-blank line to search.")
    return [line for _, line in kept], [number for number, _ in kept]


def run(args: argparse.Namespace) -> int:
    queries = read_texts(args)
    documents, line_numbers = read_corpus(args.corpus)
    if isinstance(args.top_k, bool) or args.top_k < 1:
        raise InputError(f"--top-k must be a positive integer, got {args.top_k}.")
    embedder = load_for_command(args, Embedder, "search")
    corpus = embed_texts(embedder, documents, args, label="embedding corpus")
    hits = embedder.search(embed_texts(embedder, queries, args, label="embedding queries"),
                           corpus, top_k=args.top_k)
    for query, found in zip(queries, hits):
        results = [
            {"rank": rank, "score": round(hit.score, 6), "line": line_numbers[hit.corpus_id],
             "text": documents[hit.corpus_id]}
            for rank, hit in enumerate(found, start=1)
        ]
        print(json.dumps({"query": query, "results": results}, ensure_ascii=False))
    return 0
