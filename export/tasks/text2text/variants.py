"""What checking a T5 variant against PyTorch fp32 means: logits where they must match, tokens
where only the decisions must.

Every variant runs the export's parity set (first step, teacher-forced and KV-cached logits; see
:func:`export.tasks.text2text.exporter.check_set_outputs`) and greedy decoding of the check set
along PyTorch's own greedy path: PyTorch generates, then both models are teacher-forced through
that path (the variant through its KV cache, as generation runs it), so every position compares
one token decision without the drift that follows a first difference. Each decoder position is
one prediction; the gate (``export.variants.gates``) holds fused fp32 to the logits and int8 /
fp16 to the tokens.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from engine.numerics import softmax
from engine.seq2seq.model import Seq2SeqLM
from engine.variants.choice import VariantFigures
from export.check_set import SENTENCES, check_texts
from export.variants.gates import TIE_TOLERANCE, measure_figures
from export.parity import OutputPair, argmax_agrees
from export.tasks.text2text.exporter import (
    GREEDY_TOKENS,
    PARITY_TARGETS,
    Seq2SeqReference,
    check_set_outputs,
)

# Parity pairs of encoder states, named so by check_set_outputs: hidden states, not predictions.
_ENCODER_PAIRS = "encoder"


class MemoizedReference:
    """A PyTorch reference with the outputs of its ``kept`` methods kept per input.

    Every variant is checked on the same inputs, so PyTorch runs them once per ``optimize``, not
    once per variant or per trial of the int8 search (on a tiny T5 it is most of a check's
    time). Calls are keyed by their
    pickled arguments; the arrays returned are shared, so callers must not modify them.
    """

    SEQ2SEQ = ("encoder_states", "target_logits", "decoder_logits", "generate")

    def __init__(self, reference: Any, kept: tuple[str, ...] = SEQ2SEQ) -> None:
        self.reference = reference
        self.max_length = reference.max_length
        self._kept = kept
        self._outputs: dict[bytes, Any] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name not in self._kept:
            raise AttributeError(name)
        method = getattr(self.reference, name)

        def kept(*args: Any, **kwargs: Any) -> Any:
            key = pickle.dumps((name, args, sorted(kwargs.items())))
            if key not in self._outputs:
                self._outputs[key] = method(*args, **kwargs)
            return self._outputs[key]

        return kept


def seq2seq_figures(lm: Seq2SeqLM, reference: Seq2SeqReference) -> VariantFigures:
    """The variant's logits and tokens vs PyTorch fp32 on the parity set and the greedy path."""
    parity = [
        pair for pair in check_set_outputs(lm, reference)
        if not pair.name.startswith(_ENCODER_PAIRS)
    ]
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
        sources = check_texts(reference.max_length, include_empty=False)
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
    """Decoding a fixed target through the KV cache at batch 1 and 4.

    Teacher-forced, so every variant runs the same number of steps: a variant whose tokens
    differ would otherwise be timed on a different (EOS-shortened) generation.
    """
    batch = list(SENTENCES)
    targets = [PARITY_TARGETS[index % len(PARITY_TARGETS)] for index in range(len(batch))]
    return {
        "b1_decode": lambda: lm.logits(batch[:1], targets[:1], use_cache=True),
        f"batch{len(batch)}_decode": lambda: lm.logits(batch, targets, use_cache=True),
    }
