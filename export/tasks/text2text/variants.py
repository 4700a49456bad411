"""What checking a T5 variant against PyTorch fp32 means: logits where they must match, tokens
where only the decisions must.

Every variant runs the decoder half of the export's parity set (first step, teacher-forced and
KV-cached logits; see :func:`export.tasks.text2text.exporter.decoder_pairs`) and greedy decoding
of the check set along PyTorch's own greedy path: PyTorch generates, then both models are
teacher-forced through that path (the variant through its KV cache, as generation runs it), so
every position compares one token decision without the drift that follows a first difference.
Each decoder position is one prediction; the gates (``T5_GATES``) hold fused fp32 to the logits
and int8 / fp16 to the tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from engine.numerics import softmax
from engine.tasks.text2text import BATCH_ROWS, BATCH_WORKLOAD, Seq2SeqLM
from engine.variants.records import (
    BF16,
    FP16,
    FUSED,
    INT4,
    INT8,
    INT8_OPENVINO,
    VariantFigures,
    VariantGate,
)
from engine.verification.gate_figures import TIE_TOLERANCE, measure_figures
from export.check_set import SENTENCES
from export.parity import OutputPair, argmax_agrees
from export.tasks.text2text.exporter import (
    GREEDY_TOKENS,
    PARITY_TARGETS,
    Seq2SeqExporter,
    Seq2SeqReference,
    decoder_pairs,
)
from export.variants.checks import VariantChecker
from export.variants.memoized import MemoizedReference

# The reference's methods whose outputs every variant's check reuses (``MemoizedReference``).
_KEPT = ("check_sources", "target_logits", "decoder_logits", "generate")

# T5 token gates, in nats of log-probability between fp32's choice and the variant's. Seen on the
# check set: int8 (per-channel) flipped tokens at fp32 margins up to 0.31 on the tiny T5 v1.1,
# 0.006 on full-size random t5-small; fp16 up to 0.015 (tiny v1.1), none at full size; variants
# with a negated last projection flip at margins of 3.9-44. Token agreement seen: int8 95-99.6%.
T5_MIN_AGREEMENT = 0.9
T5_INT8_FLIP_MARGIN = 0.5
T5_FP16_FLIP_MARGIN = 0.25

# Every logit row of the export's parity set plus greedy decoding along PyTorch's path; one row
# is one token prediction.
T5_GATES: dict[str, VariantGate] = {
    FUSED: VariantGate(max_abs_diff=1e-4, min_agreement=1.0),
    # int8 / fp16 are judged on tokens, not logits: a changed token fails only where fp32
    # had clearly decided (its logit margin above flip_margin); random-weight T5 is full of
    # near-ties that any rounding flips. The agreement floor catches a variant that flips
    # near-ties wholesale.
    INT8: VariantGate(min_agreement=T5_MIN_AGREEMENT, flip_margin=T5_INT8_FLIP_MARGIN),
    FP16: VariantGate(min_agreement=T5_MIN_AGREEMENT, flip_margin=T5_FP16_FLIP_MARGIN),
    # bf16 rounds coarser than fp16 (8 vs 11 mantissa bits): int8's flip margin.
    BF16: VariantGate(min_agreement=T5_MIN_AGREEMENT, flip_margin=T5_INT8_FLIP_MARGIN),
    # Not built for seq2seq (its three graphs have no search probe); int8's bar, should it be.
    INT8_OPENVINO: VariantGate(min_agreement=T5_MIN_AGREEMENT, flip_margin=T5_INT8_FLIP_MARGIN),
    # 4-bit decoder weights: int8's bar, so the token gate, not the bit count, decides whether a
    # model may run them.
    INT4: VariantGate(min_agreement=T5_MIN_AGREEMENT, flip_margin=T5_INT8_FLIP_MARGIN),
}


def seq2seq_figures(lm: Seq2SeqLM, reference: Seq2SeqReference) -> VariantFigures:
    """The variant's logits and tokens vs PyTorch fp32 on the parity set and the greedy path."""
    parity = decoder_pairs(lm, reference)  # encoder states are not predictions
    path = greedy_path_pairs(lm, reference)
    figures = measure_figures(position_pairs([*parity, *path]), softmax)
    same_sequence = [
        bool(np.isfinite(pair.candidate).all())
        and argmax_agrees(pair.reference, pair.candidate, TIE_TOLERANCE)
        for pair in path
    ]
    return replace(figures, sequence_agreement=sum(same_sequence) / len(same_sequence))


def greedy_path_pairs(
    lm: Seq2SeqLM,
    reference: Seq2SeqReference,
    sources: Sequence[str] | None = None,
    max_new_tokens: int = GREEDY_TOKENS,
) -> list[OutputPair]:
    """PyTorch's and the engine's logits ``[steps, vocab]`` along PyTorch's greedy output.

    One pair per source (default: the check set without the empty text, which the engine
    refuses), covering the generated tokens up to and including EOS.
    """
    if sources is None:
        sources = reference.check_sources(include_empty=False)
    sources = list(sources)
    generated = reference.generate(sources, max_new_tokens=max_new_tokens).token_ids
    decoder_inputs = np.full(
        (len(sources), max(len(tokens) for tokens in generated)),
        lm.settings.pad_token_id,
        dtype=np.int64,
    )
    decoder_inputs[:, 0] = lm.settings.decoder_start_token_id
    for row, tokens in enumerate(generated):
        decoder_inputs[row, 1 : len(tokens)] = tokens[:-1]
    expected = reference.decoder_logits(sources, decoder_inputs)
    ours = lm.decoder_logits(sources, decoder_inputs, use_cache=True)
    return [
        OutputPair(f"greedy path[{row}]", text, expected[row, :length], ours[row, :length])
        for row, (text, length) in enumerate(zip(sources, map(len, generated)))
    ]


def position_pairs(pairs: Sequence[OutputPair]) -> list[OutputPair]:
    """One pair per decoder position of ``[positions, vocab]`` (or ``[vocab]``) pairs.

    Each position is one prediction. A candidate of another shape (the engine tokenized
    differently) stays whole, so its comparison fails instead of being cut to fit.
    """
    rows = []
    for pair in pairs:
        reference, candidate = np.atleast_2d(pair.reference), np.atleast_2d(pair.candidate)
        if reference.shape != candidate.shape:
            rows.append(pair)
            continue
        rows += [
            OutputPair(f"{pair.name} pos {position}", pair.text, expected, ours)
            for position, (expected, ours) in enumerate(zip(reference, candidate))
        ]
    return rows


def seq2seq_workloads(lm: Seq2SeqLM) -> dict[str, Callable[[], object]]:
    """Decoding a fixed target through the KV cache at batch 1 and ``BATCH_ROWS``.

    Teacher-forced, so every variant runs the same number of steps: a variant whose tokens
    differ would otherwise be timed on a different (EOS-shortened) generation.
    """
    # the engine's BATCH_WORKLOAD, which ranks variants for batched calls
    batch = [SENTENCES[index % len(SENTENCES)] for index in range(BATCH_ROWS)]
    targets = [PARITY_TARGETS[index % len(PARITY_TARGETS)] for index in range(len(batch))]
    return {
        "b1_decode": lambda: lm.logits(batch[:1], targets[:1], use_cache=True),
        BATCH_WORKLOAD: lambda: lm.logits(batch, targets, use_cache=True),
    }


class Seq2SeqChecker(VariantChecker):
    """T5: the export's parity set plus greedy decoding along PyTorch's path, per token."""

    engine_class = Seq2SeqLM

    def load_reference(self, model: str) -> MemoizedReference:
        return MemoizedReference(Seq2SeqExporter().load_reference(model), kept=_KEPT)

    def on_cuda(self, engine: Seq2SeqLM) -> bool:
        return engine.graphs.on_cuda

    def figures(self, engine: Seq2SeqLM, reference: MemoizedReference) -> VariantFigures:
        return seq2seq_figures(engine, reference)

    def workloads(self, engine: Seq2SeqLM) -> dict[str, Callable[[], object]]:
        return seq2seq_workloads(engine)
