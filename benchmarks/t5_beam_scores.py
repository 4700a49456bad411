"""Are a variant's beam-search outputs worse, or only other paths? (issue 18, part 4).

Token agreement with PyTorch's beam search compares positions, so one early difference counts
every later token as a disagreement, and on a random-weight T5 beam scores are near-ties that any
rounding reorders. This scores each output the way beam search ranks it (sum of log-probs over
the length, ``length_penalty`` 1) under the PyTorch fp32 model itself: for every check-set
source, the reference's beam output against the variant's. A deficit (reference score minus the
variant output's) near 0 or below means the variant found an output PyTorch rates as likely;
a clear positive deficit is lost quality.

Run: ``python -m benchmarks.t5_beam_scores --model t5-small --variants int8,int4``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine import Seq2SeqLM
from engine.options import RuntimeOptions
from export.check_set import check_texts
from onnx_engine.bench.machine import cpu_model
from onnx_engine.bench.models import resolve_target
from onnx_engine.bench.report import write_results


def beam_scores(artifact: Path, checkpoint: str, variants: list[str], beams: int,
                new_tokens: int) -> dict[str, Any]:
    """Per variant: sources whose output is the reference's, and the score deficits."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    sources = check_texts(512, include_empty=False)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = T5ForConditionalGeneration.from_pretrained(checkpoint).eval()
    encoded = tokenizer(sources, return_tensors="pt", padding=True, truncation=True,
                        max_length=512)
    with torch.no_grad():
        reference = model.generate(**encoded, num_beams=beams, max_new_tokens=new_tokens,
                                   do_sample=False)
    start, eos = model.config.decoder_start_token_id, model.config.eos_token_id

    def trimmed(ids: list[int]) -> list[int]:
        ids = ids[1:] if ids and ids[0] == start else ids
        return ids[: ids.index(eos) + 1] if eos in ids else ids

    def score(row: int, ids: list[int]) -> float:
        labels = torch.tensor([ids])
        with torch.no_grad():
            logits = model(input_ids=encoded["input_ids"][row : row + 1],
                           attention_mask=encoded["attention_mask"][row : row + 1],
                           labels=labels).logits[0]
        log_probs = torch.log_softmax(logits.double(), -1).gather(1, labels[0][:, None])
        return float(log_probs.sum()) / len(ids)

    expected = [trimmed(ids) for ids in reference.tolist()]
    expected_scores = [score(row, ids) for row, ids in enumerate(expected)]
    results = {}
    for variant in variants:
        lm = Seq2SeqLM.load(artifact, options=RuntimeOptions(provider="cpu", variant=variant))
        outputs = lm.generate(sources, max_new_tokens=new_tokens, num_beams=beams,
                              truncation=True)
        ours = [trimmed([int(token) for token in row.token_ids]) for row in outputs]
        deficits = [expected_scores[row] - score(row, ids) for row, ids in enumerate(ours)]
        results[variant] = {
            "same_outputs": sum(a == b for a, b in zip(expected, ours)),
            "deficits_nats_per_token": [round(value, 4) for value in deficits],
            "worst_deficit": max(deficits),
        }
    return {"sources": len(sources), "beams": beams, "new_tokens": new_tokens,
            "variants": results}


def markdown(document: dict[str, Any]) -> str:
    lines = [
        f"# Beam search outputs scored by PyTorch fp32 ({document['model']}, "
        f"{document['beams']} beams, {document['new_tokens']} new tokens)", "",
        f"Measured on {document['cpu']}. Command: `{document['command']}`", "",
        "Deficit: PyTorch's score (mean log-prob per token) of its own beam output minus its "
        "score of the variant's; <= 0 means the variant's output is at least as likely.", "",
        "| variant | outputs equal to PyTorch's | worst deficit (nats/token) | "
        "deficit per source |",
        "|---|---:|---:|---|",
    ]
    for variant, result in document["variants"].items():
        deficits = ", ".join(f"{value:+.3f}" for value in result["deficits_nats_per_token"])
        lines.append(f"| {variant} | {result['same_outputs']} of {document['sources']} | "
                     f"{result['worst_deficit']:+.4f} | {deficits} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="t5-small")
    parser.add_argument("--variants", default="int8,int4")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    target = resolve_target(args.model, args.cache_dir, log=sys.stderr)
    if target.reference is None:
        parser.error(f"'{args.model}' names no local PyTorch checkpoint to score with.")
    document = {
        "model": target.name, "cpu": cpu_model(),
        "command": "python -m benchmarks.t5_beam_scores " + " ".join(argv or sys.argv[1:]),
        **beam_scores(target.artifact, target.reference, args.variants.split(","), args.beams,
                      args.new_tokens),
    }
    write_results(document, markdown(document), args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
