"""``onnx-engine ner ARTIFACT TEXT...``: the entities of each text, one line each (``--json``:
one JSON line per text, ``{"text", "entities"}``, entities as the pipeline answers them)."""

from __future__ import annotations

import argparse
import json

from engine.tasks.token_classification import (
    AGGREGATION_STRATEGIES,
    TokenClassifier,
)
from onnx_engine.commands.runtime_args import (
    add_batch_size_argument,
    add_runtime_arguments,
    add_text_arguments,
    load_for_command,
    read_texts,
)
from onnx_engine.progress_bar import chunks_with_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ner", help="find entities (token classification) with a token-classification artifact"
    )
    parser.add_argument("artifact", help="artifact folder")
    add_text_arguments(parser)
    parser.add_argument(
        "--aggregation-strategy", choices=AGGREGATION_STRATEGIES, default="simple",
        help="how tokens are grouped, as transformers' pipeline does: none (every token), "
             "simple (default), first, average, max",
    )
    parser.add_argument("--ignore-label", action="append", default=None, metavar="LABEL",
                        help="a label to leave out (repeatable; default: O)")
    parser.add_argument("--all-labels", action="store_true",
                        help="leave no label out (O tokens too)")
    parser.add_argument("--json", action="store_true",
                        help='one JSON line per text: {"text": ..., "entities": [...]}')
    add_batch_size_argument(parser, 32)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")
    add_runtime_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    texts = read_texts(args)
    ner = load_for_command(args, TokenClassifier, "ner")
    ignored = [] if args.all_labels else args.ignore_label
    for chunk in chunks_with_progress(texts, "tagging", args.quiet):
        found = ner(chunk, aggregation_strategy=args.aggregation_strategy,
                    ignore_labels=ignored, batch_size=args.batch_size)
        for text, entities in zip(chunk, found):
            if args.json:
                print(json.dumps({"text": text, "entities": entities}, ensure_ascii=False))
            else:
                print(text)
                for entity in entities:
                    print("  " + entity_line(entity))
    return 0


def entity_line(entity: dict) -> str:
    """``start-end LABEL score word`` of one entity (its label is ``entity`` per token)."""
    label = entity.get("entity_group", entity.get("entity"))
    return (f"{entity['start']:>4}-{entity['end']:<4} {label:<8} {entity['score']:.4f}  "
            f"{entity['word']}")
