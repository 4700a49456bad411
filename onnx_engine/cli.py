"""Entry point of ``onnx-engine``: one subcommand per module in ``onnx_engine.commands``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import sys
from collections.abc import Iterator

from engine.errors import OnnxEngineError
from engine.version import __version__

# Each module defines register(subparsers), which adds its parser and sets `handler`.
COMMAND_MODULES = (
    "export", "verify", "optimize", "classify", "demo", "generate", "logits", "embed", "search",
    "bench", "serve", "loadtest", "pack",
)
EXIT_ERROR = 2
# Commands whose engine runs are on the built-in check set, one text of which is over the
# model's max length on purpose: a warning per run about it would only be noise.
_CHECK_SET_COMMANDS = frozenset({"export", "optimize", "verify", "demo"})
# The same commands run PyTorch references between ONNX Runtime calls in one process; torch's
# OpenMP threads spinning after each call steal the cores from the next ORT call (a tiny model's
# reference forward took 29 ms instead of 1.4 ms on 2 busy cores). libgomp reads the policy
# once, when torch loads, which these commands do only inside their handler.
_PASSIVE_OPENMP_COMMANDS = _CHECK_SET_COMMANDS
# Engine options that the CLI spells as flags. Engine messages name the Python argument
# (``variant='auto'``, ``batch_size must be``); the CLI says the flag instead.
_FLAGS = {
    "variant": "--variant", "provider": "--provider", "threads": "--threads",
    "device_id": "--device-id", "batch_size": "--batch-size", "top_k": "--top-k",
    "num_beams": "--num-beams", "max_new_tokens": "--max-new-tokens",
    "length_penalty": "--length-penalty",
}
_OPTION_NAMES = "|".join(_FLAGS)
_PYTHON_ASSIGNMENT = re.compile(rf"(?<![\w.-])({_OPTION_NAMES})=(?:'([^']*)'|([\w.+-]+))")
_PYTHON_SUBJECT = re.compile(rf"(?<![\w.-])({_OPTION_NAMES})(?= must\b)")
_SECOND_VARIANT = re.compile(r"(--variant [\w-]+) or '([\w-]+)'")


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


def in_cli_words(message: str) -> str:
    """``message`` with the engine's Python spellings of options replaced by the CLI's flags:
    ``variant='auto'`` -> ``--variant auto``, ``batch_size must`` -> ``--batch-size must``."""
    message = _PYTHON_ASSIGNMENT.sub(
        lambda match: f"{_FLAGS[match[1]]} {match[2] if match[2] is not None else match[3]}",
        message,
    )
    message = _SECOND_VARIANT.sub(r"\1 or --variant \2", message)
    return _PYTHON_SUBJECT.sub(lambda match: _FLAGS[match[1]], message)


def os_error_line(error: OSError) -> str:
    """One line for an I/O failure on a user's path: the path and what the errno means."""
    meaning = error.strerror or str(error) or type(error).__name__
    return f"{error.filename}: {meaning}" if error.filename else meaning


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; our errors become one ``error:`` line and exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    parser = build_parser()
    args, unparsed = parser.parse_known_args(argv)
    if unparsed:
        # argparse matches positionals only before the first option, so texts given after one
        # (`search ARTIFACT --corpus FILE QUERY...`) come back unparsed: they are texts too.
        if not hasattr(args, "texts") or any(item.startswith("-") for item in unparsed):
            # The subcommand's own usage, not the top-level one: the mistake is in its flags.
            _subcommand_parser(parser, args.command).error(
                f"unrecognized arguments: {' '.join(unparsed)}"
            )
        args.texts = [*args.texts, *unparsed]
    if args.command in _PASSIVE_OPENMP_COMMANDS:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        quiet = getattr(args, "quiet", False) or args.command in _CHECK_SET_COMMANDS
        with _quiet_warnings(quiet):
            return int(args.handler(args) or 0)
    except OnnxEngineError as error:
        print(f"error: {in_cli_words(str(error))}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `onnx-engine ... | head`: the reader left, nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit
        return 141
    except OSError as error:  # a user's path that cannot be read or written
        print(f"error: {os_error_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


@contextlib.contextmanager
def _quiet_warnings(quiet: bool) -> Iterator[None]:
    """With ``quiet``, no per-text over-length warnings (the level is restored after, for
    callers that run ``main`` in-process)."""
    logger = logging.getLogger("engine.tokenization")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _subcommand_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser
