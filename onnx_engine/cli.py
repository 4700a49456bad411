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
from onnx_engine.tasks import task_commands

# Each module defines register(subparsers), which adds its parser and sets `handler`. These run
# any task; each task's own commands are listed in its onnx_engine.tasks entry.
COMMAND_MODULES = ("export", "verify", "optimize", "demo", "bench", "serve", "loadtest", "pack")
EXIT_ERROR = 2
# Commands whose engine runs are on the built-in check set, one text of which is over the
# model's max length on purpose: a warning per run about it would only be noise.
_CHECK_SET_COMMANDS = frozenset({"export", "optimize", "verify", "demo"})
# The same commands run PyTorch references between ONNX Runtime calls in one process; torch's
# OpenMP threads spinning after each call steal the cores from the next ORT call (a tiny model's
# reference forward took 29 ms instead of 1.4 ms on 2 busy cores). libgomp reads the policy
# once, when torch loads, which these commands do only inside their handler.
_PASSIVE_OPENMP_COMMANDS = _CHECK_SET_COMMANDS
# What the CLI says for an option the engine names in Python (``variant='auto'``,
# ``batch_size must be``): its flag, and whether the flag takes a value.
Flag = tuple[str, bool]
_SECOND_VARIANT = re.compile(r"(--variant [\w-]+) or '([\w-]+)'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnx-engine",
        description="Export Hugging Face transformers to ONNX and run them with ONNX Runtime.",
    )
    parser.add_argument("--version", action="version", version=f"onnx-engine {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (*COMMAND_MODULES, *task_commands()):
        importlib.import_module(f"onnx_engine.commands.{name}").register(subparsers)
    return parser


def cli_flags(parser: argparse.ArgumentParser) -> dict[str, Flag]:
    """Python name -> (flag, takes a value) for every option of ``parser`` and its subcommands:
    ``batch_size`` -> ``("--batch-size", True)``, ``force`` -> ``("--force", False)``."""
    flags: dict[str, Flag] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                flags.update(cli_flags(subparser))
        elif action.option_strings and action.dest != "help":
            long = next((o for o in action.option_strings if o.startswith("--")),
                        action.option_strings[0])
            flags[action.dest] = (long, action.nargs != 0)
    return flags


def in_cli_words(message: str, flags: dict[str, Flag] | None = None) -> str:
    """``message`` with the Python spellings of options replaced by the CLI's flags (those of
    the running subcommand, or of the whole CLI): ``variant='auto'`` -> ``--variant auto``,
    ``batch_size must`` -> ``--batch-size must``, ``force=True`` -> ``--force``."""
    flags = cli_flags(build_parser()) if flags is None else flags
    if not flags:
        return message
    names = "|".join(map(re.escape, sorted(flags, key=len, reverse=True)))
    assignment = re.compile(rf"(?<![\w.-])({names})=(?:'([^']*)'|([\w.+-]+))")
    subject = re.compile(rf"(?<![\w.-])({names})(?= must\b)")

    def as_flag(match: re.Match[str]) -> str:
        flag, takes_value = flags[match[1]]
        value = match[2] if match[2] is not None else match[3]
        if not takes_value:
            return flag if value == "True" else match[0]
        return f"{flag} {value}"

    message = _SECOND_VARIANT.sub(r"\1 or --variant \2", assignment.sub(as_flag, message))
    return subject.sub(lambda match: flags[match[1]][0], message)


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
    flags = cli_flags(_subcommand_parser(parser, args.command))
    try:
        quiet = getattr(args, "quiet", False) or args.command in _CHECK_SET_COMMANDS
        with _quiet_warnings(quiet, args.command in _CHECK_SET_COMMANDS), _logs_in_cli_words(flags):
            return int(args.handler(args) or 0)
    except OnnxEngineError as error:
        print(f"error: {in_cli_words(str(error), flags)}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `onnx-engine ... | head`: the reader left, nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit
        return 141
    except OSError as error:  # a user's path that cannot be read or written
        print(f"error: {os_error_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


# Loggers of per-text over-length warnings: the engine's, and transformers' tokenizer's (which
# export's parity check calls on the check set's deliberately over-long text).
_OVER_LENGTH_LOGGERS = ("engine.tokenization",)
_CHECK_SET_LOGGERS = ("transformers.tokenization_utils_base",)


@contextlib.contextmanager
def _quiet_warnings(quiet: bool, check_set: bool) -> Iterator[None]:
    """With ``quiet``, no per-text over-length warnings; on the check set, not transformers'
    either (levels are restored after, for callers that run ``main`` in-process)."""
    names = (_OVER_LENGTH_LOGGERS if quiet else ()) + (_CHECK_SET_LOGGERS if check_set else ())
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class _CliWordsFilter(logging.Filter):
    """Rewrites log messages in the CLI's words, as errors are (a warning that says
    ``variant='fp32'`` to a CLI user says ``--variant fp32``)."""

    def __init__(self, flags: dict[str, Flag]) -> None:
        super().__init__()
        self.flags = flags

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = in_cli_words(record.getMessage(), self.flags), None
        return True


@contextlib.contextmanager
def _logs_in_cli_words(flags: dict[str, Flag]) -> Iterator[None]:
    handlers = logging.getLogger().handlers
    log_filter = _CliWordsFilter(flags)
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(log_filter)


def _subcommand_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser
