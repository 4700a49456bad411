"""``onnx-engine rerank ARTIFACT QUERY DOC...``: the documents best first, as CrossEncoder.rank."""

from __future__ import annotations

import argparse
import json

from engine.tasks.reranking import Reranker
from onnx_engine.commands.runtime_args import (
    add_batch_size_argument,
    add_runtime_arguments,
    add_text_arguments,
    load_for_command,
    read_texts,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rerank", help="rank documents by relevance to a query with a text-ranking artifact"
    )
    parser.add_argument("artifact", help="artifact folder (exported with --task text-ranking)")
    parser.add_argument("query", help="the query the documents are scored against")
    add_text_arguments(parser)  # the documents: arguments, or one per line from --input
    parser.add_argument("--top-k", type=int, default=None, metavar="K",
                        help="print only the K best documents (default: all)")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON list of {"corpus_id", "score", "text"}, best first')
    add_batch_size_argument(parser, 32)
    add_runtime_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    documents = read_texts(args)
    reranker = load_for_command(args, Reranker, "rerank")
    ranking = reranker.rank(args.query, documents, top_k=args.top_k, return_documents=True,
                            batch_size=args.batch_size)
    if args.json:
        print(json.dumps(ranking, ensure_ascii=False))
        return 0
    for entry in ranking:
        print(f"{entry['score']:.6f}\t{entry['corpus_id']}\t{entry['text']}")
    return 0
