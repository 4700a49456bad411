"""Arguments shared by the subcommands that run an artifact: provider, threads, variant, texts."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from engine.errors import InputError, OnnxEngineError
from engine.manifest import MANIFEST_NAME, ArtifactManifest
from engine.options import PROVIDER_CHOICES, RuntimeOptions
from engine.tasks.base import ArtifactModel
from engine.variants.records import VARIANT_CHOICES
from onnx_engine.tasks import TASKS

Model = TypeVar("Model", bound=ArtifactModel)


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
    parser.add_argument("--openvino-shape-buckets", type=int, default=None, metavar="N",
                        help="with OpenVINO, run one-text calls on static power-of-two lengths, "
                        "compiled on first use, at most N kept (default 0: off; see the README)")


def add_batch_size_argument(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("--batch-size", type=int, default=default, metavar="N",
                        help=f"texts per ONNX Runtime call (default {default}); larger batches "
                        "pad more, smaller ones call more often")


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    """Only what the user set: the engine class layers it over its own defaults."""
    return RuntimeOptions(
        provider=args.provider,
        threads=args.threads,
        verify_hashes=False if args.no_verify_hashes else None,
        variant=args.variant,
        device_id=args.device_id,
        openvino_shape_buckets=args.openvino_shape_buckets,
    )


def add_text_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="texts to process")
    parser.add_argument("--input", default=None,
                        help="file with one text per line, or - for standard input")


def read_texts(args: argparse.Namespace) -> list[str]:
    """Texts from the command line, or one per line from ``--input`` (a file or ``-``).

    Raises:
        InputError: no texts, both sources, or an ``--input`` that ``read_text_lines`` refuses.
    """
    if args.input is not None and args.texts:
        raise InputError("Give texts on the command line or --input, not both.")
    if args.input is None:
        if not args.texts:
            raise InputError("No texts given: pass them as arguments or with --input FILE.")
        return list(args.texts)
    return read_text_lines(args.input, "--input")


def read_text_lines(source: str | Path, flag: str) -> list[str]:
    """The lines of a text file given with ``flag``, or of standard input for ``-``.

    The one reader of every CLI text file (``--input``, ``--corpus``), so each refusal reads
    the same. Every line is a text, blank ones included (an empty text is valid input); a
    leading UTF-8 BOM is dropped. Bytes that are not UTF-8 are an error naming the line, never
    a traceback.

    Raises:
        InputError: the file is missing, a folder, unreadable, not UTF-8, or has no line.
    """
    if str(source) == "-":
        name, data = "standard input", sys.stdin.buffer.read()
    else:
        path = Path(source)
        name = f"{flag} file '{path}'"
        if path.is_dir():
            raise InputError(f"{name} is a folder; give a text file with one text per line.")
        if not path.exists():
            raise InputError(f"{name} does not exist.")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InputError(f"{name} cannot be read: {error.strerror or error}.") from None
    lines = _utf8_lines(data, name)
    if not lines:
        raise InputError(f"{name} has no texts: give one text per line.")
    return lines


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


def save_npy(path: Path, array: Any, flag: str) -> None:
    """``numpy.save`` with a failed write (a full disk, a vanished folder) as one line.

    Raises:
        InputError: the file cannot be written; a partial file is removed.
    """
    import numpy as np

    try:
        np.save(path, array)
    except OSError as error:
        if path.is_file():
            path.unlink(missing_ok=True)
        raise InputError(f"{flag} {path}: {error.strerror or error}.") from None


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


def check_artifact_folder(path: str | Path, task: str | None, command: str) -> None:
    """Refuse, in the CLI's words, a path that is not an artifact (of ``task``, where given),
    before loading.

    The engine's messages speak to Python callers (``engine.load``); here a file, a Hugging
    Face checkpoint folder and another task's artifact each get the command to run instead.
    Anything else (missing or corrupt artifacts) is left to the engine's own checks.

    Raises:
        InputError: ``path`` is a file, a checkpoint folder, or an artifact of another task.
    """
    folder = Path(path)
    if folder.is_file():
        raise InputError(
            f"'{folder}' is a file, not an artifact folder: give the folder that "
            f"'onnx-engine export' wrote (it holds {MANIFEST_NAME})."
        )
    if folder.is_dir() and not (folder / MANIFEST_NAME).exists() and (
        folder / "config.json"
    ).is_file():
        exported = f"{str(folder).rstrip('/')}-onnx"
        task_flag = f" --task {task}" if task else ""
        raise InputError(
            f"'{folder}' is a Hugging Face checkpoint, not an onnx-engine artifact. Export it "
            f"into a new folder first: 'onnx-engine export {folder} {exported}{task_flag}', "
            f"then run 'onnx-engine {command} {exported} ...'."
        )
    if task is None:
        return
    try:
        held = ArtifactManifest.read(folder).task
    except OnnxEngineError:
        return  # the engine's load reports it
    if held != task:
        entry = TASKS.get(held)
        other = entry.commands[0] if entry and entry.commands else None
        fix = (f"Run it with 'onnx-engine {other} {folder} ...'." if other
               else "No onnx-engine subcommand runs that task.")
        raise InputError(
            f"'{folder}' holds a '{held}' model; 'onnx-engine {command}' runs '{task}' "
            f"artifacts. {fix}"
        )


def load_for_command(args: argparse.Namespace, engine_class: type[Model], command: str) -> Model:
    """``engine_class`` loaded from ``args.artifact`` with the runtime flags, after the folder is
    checked in the CLI's words (:func:`check_artifact_folder`) for that class's task.

    Raises:
        InputError: the path is a file, a checkpoint folder or another task's artifact, or a
            runtime flag is invalid.
        ArtifactError, ProviderError: as the engine's ``load`` raises them.
    """
    check_artifact_folder(args.artifact, engine_class.task, command)
    return engine_class.load(args.artifact, options=runtime_options(args))
