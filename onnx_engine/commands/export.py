"""``onnx-engine export MODEL OUT``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.pooling import POOLING_MODES
from onnx_engine.commands.optimize import (
    add_variant_arguments,
    optimize_and_report,
    requested_variants,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from export.tasks import EXPORT_TASKS

    parser = subparsers.add_parser(
        "export", help="export a Hugging Face model to a checked ONNX artifact folder"
    )
    parser.add_argument("model", help="hub id (needs internet) or local checkpoint folder")
    parser.add_argument("output", type=Path, help="artifact folder to write")
    parser.add_argument("--task", default=None,
                        choices=tuple(EXPORT_TASKS),
                        help="what to export the model for (default: inferred from its config, "
                        "as optimum-cli does: *ForSequenceClassification -> text-classification, "
                        "*ForTokenClassification -> token-classification, "
                        "T5 -> text2text-generation, a saved CrossEncoder -> text-ranking, "
                        "sentence-transformers or a bare encoder -> feature-extraction)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: Optimum's)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--atol", type=float, default=None,
                        help="parity tolerance (default 1e-4; 1e-5 for feature-extraction)")
    parser.add_argument("--pooling", default=None, choices=POOLING_MODES,
                        help="feature-extraction of a plain encoder: how token embeddings become "
                        "one vector (a sentence-transformers folder brings its own)")
    parser.add_argument("--normalize", action="store_true", default=None,
                        help="feature-extraction of a plain encoder: L2-normalize the embeddings")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_variant_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from export.exporter import ExportSettings, export_model

    settings = ExportSettings(
        model=args.model,
        output=args.output,
        task=args.task,
        opset=args.opset,
        force=args.force,
        quiet=args.quiet,
        atol=args.atol,
        task_options={"pooling": args.pooling, "normalize": args.normalize},
    )
    manifest = export_model(settings)
    if not args.quiet:
        parity = manifest.parity
        print(
            f"exported {args.model} -> {args.output} ({manifest.task}, opset {manifest.opset}); "
            f"parity passed, max |Δ| = {parity['max_abs_diff']:.2e}",
            file=sys.stderr,
        )
    if requested_variants(args):
        return optimize_and_report(args, args.output, reference=args.model)
    return 0
