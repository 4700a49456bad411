"""Arguments shared by the subcommands that run an artifact: provider, threads, variant, texts."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.errors import InputError
from engine.session import PROVIDER_CHOICES, RuntimeOptions
from engine.variants import VARIANT_CHOICES


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", default=None, choices=PROVIDER_CHOICES,
                        help="execution provider (default: auto = CUDA if usable, else CPU)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument("--no-verify-hashes", action="store_true",
                        help="skip the sha256 check of the artifact files at load")
    parser.add_argument("--variant", default=None, choices=VARIANT_CHOICES,
                        help="graphs to run (default: auto = fastest variant that passed its "
                        "accuracy gate for the provider; see 'onnx-engine optimize')")
    parser.add_argument("--device-id", type=int, default=None, metavar="N",
                        help="GPU to run on with CUDA (CUDA ordinal, default 0; ignored on CPU)")


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    """Only what the user set: the engine class layers it over its own defaults."""
    return RuntimeOptions(
        provider=args.provider,
        threads=args.threads,
        verify_hashes=False if args.no_verify_hashes else None,
        variant=args.variant,
        device_id=args.device_id,
    )


def add_text_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="texts to process")
    parser.add_argument("--input", default=None,
                        help="file with one text per line, or - for standard input")


def read_texts(args: argparse.Namespace) -> list[str]:
    """Texts from the command line, or one per line from ``--input`` (a file or ``-``).

    Every line is a text, blank ones included (an empty text is valid input). Files are read as
    UTF-8; bytes that are not UTF-8 are an error naming the line, never a traceback.

    Raises:
        InputError: no texts, both sources, a missing file, or bytes that are not UTF-8.
    """
    if args.input is not None and args.texts:
        raise InputError("Give texts on the command line or --input, not both.")
    if args.input is None:
        if not args.texts:
            raise InputError("No texts given: pass them as arguments or with --input FILE.")
        return list(args.texts)
    if args.input == "-":
        return _utf8_lines(sys.stdin.buffer.read(), "standard input")
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"--input file '{path}' does not exist.")
    return _utf8_lines(path.read_bytes(), f"--input file '{path}'")


def _utf8_lines(data: bytes, source: str) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(
            f"{source} is not UTF-8: byte {data[error.start]:#04x} at offset {error.start} "
            f"(line {line}) cannot be decoded. Convert the file to UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)."
        ) from None
    return text.removeprefix("\ufeff").splitlines()


def writable_file(path: Path, flag: str) -> Path:
    """``path`` if a file can be written there; checked before any work is done.

    Raises:
        InputError: the folder does not exist, is not writable, or ``path`` is a folder.
    """
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file name such as {path / 'out.npy'}.")
    if not folder.is_dir():
        raise InputError(f"{flag} {path}: folder '{folder}' does not exist. Create it first.")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{flag} {path}: folder '{folder}' is not writable.")
    return path
