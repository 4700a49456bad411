"""``onnx-engine logits ARTIFACT --source TEXT --target TEXT``: teacher-forced LM-head logits.

Prints one JSON line per target position: the target token with its logit and probability, and
the ``top_k`` tokens the model ranks highest there. ``--save`` writes the full
``[target_len, vocab]`` float32 array with ``numpy.save``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.numerics import softmax
from engine.tasks.text2text import Seq2SeqLM
from engine.tokenization import TextTokenizer
from onnx_engine.commands.runtime_args import (
    add_runtime_arguments,
    load_for_command,
    save_npy,
    writable_file,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "logits", help="teacher-forced vocabulary logits of a target given a source (T5)"
    )
    parser.add_argument("artifact", help="artifact folder")
    parser.add_argument("--source", required=True, help="encoder input text")
    parser.add_argument("--target", required=True, help="decoder target text (EOS is appended)")
    parser.add_argument("--top-k", type=int, default=5, help="best tokens to list per position")
    parser.add_argument("--save", type=Path, default=None,
                        help="write the full [target_len, vocab] logits to this .npy file")
    parser.add_argument("--truncate", action="store_true",
                        help="cut source and target at the model's max length (default: whole, "
                        "as transformers)")
    add_runtime_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise InputError(f"--top-k must be a positive integer, got {args.top_k}.")
    if args.save is not None:
        writable_file(args.save, "--save")
    model = load_for_command(args, Seq2SeqLM, "logits")
    forced = model.logits([args.source], [args.target], truncation=args.truncate)
    length = int(forced.mask[0].sum())
    logits = forced.logits[0, :length]
    for position in range(length):
        line = position_line(model.tokenizer, logits[position], int(forced.target_ids[0, position]),
                             position, args.top_k)
        print(json.dumps(line, ensure_ascii=False))
    if args.save is not None:
        save_npy(args.save, logits, "--save")
    return 0


def position_line(
    tokenizer: TextTokenizer, logits: np.ndarray, target_id: int, position: int, top_k: int
) -> dict[str, Any]:
    probabilities = softmax(logits.astype(np.float64))

    def entry(token_id: int) -> dict[str, Any]:
        return {
            "token": tokenizer.token_to_text(token_id),
            "id": token_id,
            "logit": float(logits[token_id]),
            "prob": float(probabilities[token_id]),
        }

    best = np.argsort(-logits, kind="stable")[:top_k]
    top_k = [entry(int(index)) for index in best]
    return {"position": position, "target": entry(target_id), "top_k": top_k}
