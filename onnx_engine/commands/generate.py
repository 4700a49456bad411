"""``onnx-engine generate ARTIFACT TEXT...``: one JSON line per text with the generated text."""

from __future__ import annotations

import argparse
import json
from typing import Any

from engine.seq2seq.outputs import GeneratedSequence
from engine.tasks.text2text import Seq2SeqLM
from onnx_engine.commands.runtime_args import (
    add_batch_size_argument,
    add_runtime_arguments,
    add_text_arguments,
    load_for_command,
    read_texts,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate text with a text2text-generation (T5) artifact"
    )
    parser.add_argument("artifact", help="artifact folder")
    add_text_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="tokens to generate at most (default: the model's max_length - 1)")
    parser.add_argument("--num-beams", type=int, default=1, help="beam width (1 = greedy)")
    parser.add_argument("--length-penalty", type=float, default=1.0,
                        help="beam scores are divided by length ** this (default 1.0); its "
                        "range narrows as --max-new-tokens grows, and the error names it")
    parser.add_argument("--early-stopping", choices=("true", "false", "never"), default="false",
                        help="beam search stopping rule, as in transformers (default false)")
    parser.add_argument("--scores", action="store_true",
                        help="add the sequence score and each token's log-probability and logit")
    add_batch_size_argument(parser, 16)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no over-length warnings on stderr")
    parser.add_argument("--truncate", action="store_true",
                        help="cut sources at the model's max length (default: whole, as "
                        "transformers)")
    add_runtime_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    texts = read_texts(args)
    model = load_for_command(args, Seq2SeqLM, "generate")
    early_stopping = {"true": True, "false": False, "never": "never"}[args.early_stopping]
    results = model.generate(
        texts,
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        early_stopping=early_stopping,
        output_scores=args.scores,
        batch_size=args.batch_size,
        truncation=args.truncate,
    )
    for source, result in zip(texts, results):
        print(json.dumps(generation_line(source, result, args.scores), ensure_ascii=False))
    return 0


def generation_line(source: str, result: GeneratedSequence, scores: bool) -> dict[str, Any]:
    line: dict[str, Any] = {
        "source": source, "text": result.text, "token_ids": result.token_ids.tolist()
    }
    if scores:
        line["score"] = result.score
        line["token_logprobs"] = result.token_logprobs.tolist()
        line["token_logits"] = result.token_logits.tolist()
    return line
