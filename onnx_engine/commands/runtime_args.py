"""Arguments shared by the subcommands that run an artifact: provider, threads, variant, texts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import InputError
from engine.session import PROVIDER_CHOICES, RuntimeOptions
from engine.variants import VARIANT_CHOICES


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", default="auto", choices=PROVIDER_CHOICES,
                        help="execution provider (default: auto = CUDA if usable, else CPU)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument("--no-verify-hashes", action="store_true",
                        help="skip the sha256 check of the artifact files at load")
    parser.add_argument("--variant", default="auto", choices=VARIANT_CHOICES,
                        help="graphs to run (default: auto = fastest variant that passed its "
                        "accuracy gate for the provider; see 'onnx-engine optimize')")


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    return RuntimeOptions(
        provider=args.provider,
        threads=args.threads,
        verify_hashes=not args.no_verify_hashes,
        variant=args.variant,
    )


def add_text_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="texts to process")
    parser.add_argument("--input", default=None,
                        help="file with one text per line, or - for standard input")


def read_texts(args: argparse.Namespace) -> list[str]:
    """Texts from the command line, or one per line from ``--input`` (a file or ``-``)."""
    if args.input is not None and args.texts:
        raise InputError("Give texts on the command line or --input, not both.")
    if args.input is None:
        if not args.texts:
            raise InputError("No texts given: pass them as arguments or with --input FILE.")
        return list(args.texts)
    if args.input == "-":
        return [line.rstrip("\n") for line in sys.stdin]
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"--input file '{path}' does not exist.")
    return path.read_text(encoding="utf-8").splitlines()
