"""``onnx-engine classify ARTIFACT TEXT...``: one JSON line per text on stdout."""

from __future__ import annotations

import argparse
import json

from engine.tasks.classification import Classifier
from onnx_engine.commands.runtime_args import (
    add_batch_size_argument,
    add_runtime_arguments,
    add_text_arguments,
    load_for_command,
    read_texts,
)
from onnx_engine.progress_bar import chunks_with_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("classify", help="classify texts with a classifier artifact")
    parser.add_argument("artifact", help="artifact folder")
    add_text_arguments(parser)
    parser.add_argument("--top-k", type=int, default=None,
                        help="print the k best labels per text (default: the best one)")
    parser.add_argument("--all-labels", action="store_true", help="print every label, sorted")
    add_batch_size_argument(parser, 32)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar or over-length warnings on stderr")
    add_runtime_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    texts = read_texts(args)
    classifier = load_for_command(args, Classifier, "classify")
    ranked = args.all_labels or args.top_k is not None
    top_k = None if args.all_labels else args.top_k
    for chunk in chunks_with_progress(texts, "classifying", args.quiet):
        if ranked:
            results = classifier(chunk, top_k=top_k, batch_size=args.batch_size)
            lines = [{"text": text, "labels": labels} for text, labels in zip(chunk, results)]
        else:
            results = classifier(chunk, batch_size=args.batch_size)
            lines = [{"text": text, **result} for text, result in zip(chunk, results)]
        for line in lines:
            print(json.dumps(line, ensure_ascii=False))
    return 0
