"""Entry point of ``onnx-engine``: one subcommand per module in ``onnx_engine.commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from engine.errors import OnnxEngineError
from engine.version import __version__

# Each module defines register(subparsers), which adds its parser and sets `handler`.
COMMAND_MODULES = (
    "export", "verify", "optimize", "classify", "demo", "generate", "logits", "embed", "search",
    "bench", "serve", "loadtest",
)
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnx-engine",
        description="Export Hugging Face transformers to ONNX and run them with ONNX Runtime.",
    )
    parser.add_argument("--version", action="version", version=f"onnx-engine {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"onnx_engine.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; our errors become one ``error:`` line and exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    parser = build_parser()
    args, unparsed = parser.parse_known_args(argv)
    if unparsed:
        # argparse matches positionals only before the first option, so texts given after one
        # (`search ARTIFACT --corpus FILE QUERY...`) come back unparsed: they are texts too.
        if not hasattr(args, "texts") or any(item.startswith("-") for item in unparsed):
            parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
        args.texts = [*args.texts, *unparsed]
    try:
        return int(args.handler(args) or 0)
    except OnnxEngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
