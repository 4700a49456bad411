"""Accuracy gates of the optimized variants: default limits, overrides, and the measured figures.

Every variant is compared with the PyTorch fp32 model on the export's check set; the figures are
stored in the manifest next to the limits they were held to, so a reader sees both. The figures
themselves are computed torch-free in ``engine.gate_figures``, so ``onnx-engine verify`` measures
a variant against the artifact's stored references exactly as ``optimize`` did against PyTorch.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Sequence

from engine.errors import InputError
from engine.gate_figures import TIE_TOLERANCE, measure_figures  # noqa: F401  (shared with verify)
from engine.manifest import (
    TASK_CLASSIFICATION,
    TASK_FEATURE_EXTRACTION,
    TASK_RANKING,
    TASK_TEXT2TEXT,
)
from engine.variants import BF16, FP16, FUSED, INT8, VariantFigures, VariantGate
from export.embedding_variants import EMBEDDING_GATES
from export.tasks.reranking import RANKING_GATES

# T5 token gates, in nats of log-probability between fp32's choice and the variant's. Seen on the
# check set: int8 (per-channel) flipped tokens at fp32 margins up to 0.31 on the tiny T5 v1.1,
# 0.006 on full-size random t5-small; fp16 up to 0.015 (tiny v1.1), none at full size; variants
# with a negated last projection flip at margins of 3.9-44. Token agreement seen: int8 95-99.6%.
T5_MIN_AGREEMENT = 0.9
T5_INT8_FLIP_MARGIN = 0.5
T5_FP16_FLIP_MARGIN = 0.25

DEFAULT_GATES: dict[str, dict[str, VariantGate]] = {
    TASK_CLASSIFICATION: {
        # Fusion only regroups fp32 arithmetic: it must be as exact as the export itself.
        FUSED: VariantGate(max_abs_diff=1e-4, min_agreement=1.0),
        # int8 / fp16 are judged on scores, and a flip only where it breaks them: with every
        # score within b of the reference, only a top-2 gap below 2b can close, so a changed
        # label there is a near-tie within the variant's own bound (every flip is still
        # reported); a flip at a wider gap fails. A 100% agreement demand would fail a variant
        # for a flip at a gap of 0.002 that its |Δprob| bound allows.
        # int8 moves logits by ~0.07 on random weights (probabilities <= 0.023).
        INT8: VariantGate(max_prob_diff=0.03, min_agreement=0.0),
        # fp16 keeps ~3 significant digits; 0.01 in probability leaves room for that, not for
        # an overflowing layer.
        FP16: VariantGate(max_prob_diff=0.01, min_agreement=0.0),
        # bf16 keeps 8 mantissa bits (~2-3 significant digits): real MiniLM weights moved logits
        # by <= 0.008 here; 0.02 in probability leaves room for that, not for a broken layer.
        BF16: VariantGate(max_prob_diff=0.02, min_agreement=0.0),
    },
    # T5: every logit row of the export's parity set plus greedy decoding along PyTorch's path
    # (export/seq2seq_variants.py); one row is one token prediction.
    TASK_TEXT2TEXT: {
        FUSED: VariantGate(max_abs_diff=1e-4, min_agreement=1.0),
        # int8 / fp16 are judged on tokens, not logits: a changed token fails only where fp32
        # had clearly decided (its logit margin above flip_margin); random-weight T5 is full of
        # near-ties that any rounding flips. The agreement floor catches a variant that flips
        # near-ties wholesale.
        INT8: VariantGate(min_agreement=T5_MIN_AGREEMENT, flip_margin=T5_INT8_FLIP_MARGIN),
        FP16: VariantGate(min_agreement=T5_MIN_AGREEMENT, flip_margin=T5_FP16_FLIP_MARGIN),
        # bf16 rounds coarser than fp16 (8 vs 11 mantissa bits): int8's flip margin.
        BF16: VariantGate(min_agreement=T5_MIN_AGREEMENT, flip_margin=T5_INT8_FLIP_MARGIN),
    },
    # Sentence embeddings: cosine to sentence-transformers and retrieval ranking
    # (export/embedding_variants.py).
    TASK_FEATURE_EXTRACTION: EMBEDDING_GATES,
    TASK_RANKING: RANKING_GATES,
}


def default_gate(task: str, variant: str) -> VariantGate:
    """The gate a variant of ``task`` must pass unless the caller overrides it.

    Raises:
        InputError: no gate is defined for this task and variant.
    """
    gate = DEFAULT_GATES.get(task, {}).get(variant)
    if gate is None:
        raise InputError(f"No accuracy gate is defined for the '{variant}' variant of '{task}'.")
    return gate


def parse_gate_override(text: str) -> tuple[str, str, float | None]:
    """Parse ``VARIANT.FIELD=VALUE`` (e.g. ``int8.max_prob_diff=0.05``; ``none`` drops a limit).

    Raises:
        InputError: the text is not of that form, or names an unknown field.
    """
    names = [item.name for item in fields(VariantGate)]
    head, equals, value = text.partition("=")
    variant, dot, field_name = head.partition(".")
    if not (equals and dot and variant and field_name in names):
        raise InputError(
            f"Gate override {text!r} is not VARIANT.FIELD=VALUE with FIELD one of "
            f"{', '.join(names)} (e.g. int8.max_prob_diff=0.05)."
        )
    if value.strip().lower() == "none":
        return variant, field_name, None
    try:
        return variant, field_name, float(value)
    except ValueError as error:
        raise InputError(f"Gate override {text!r}: {value!r} is not a number.") from error


def gates_with_overrides(
    task: str, variants: Sequence[str], overrides: Sequence[str]
) -> dict[str, VariantGate]:
    """Default gates of ``variants`` with ``VARIANT.FIELD=VALUE`` overrides applied.

    Raises:
        InputError: an override is malformed or names a variant that is not being made.
    """
    gates = {variant: default_gate(task, variant) for variant in variants}
    for text in overrides:
        variant, field_name, value = parse_gate_override(text)
        if variant not in gates:
            raise InputError(
                f"Gate override {text!r} is for '{variant}', which is not being made "
                f"(making: {', '.join(variants) or 'nothing'})."
            )
        if field_name == "min_agreement" and value is None:
            value = 0.0
        gates[variant] = replace(gates[variant], **{field_name: value})
    return gates


def gate_verdict(gate: VariantGate, figures: VariantFigures) -> tuple[bool, str]:
    """``(passed, reason)``: the reason lists every broken limit, empty when the gate passed."""
    problems = gate.violations(figures)
    return not problems, "; ".join(problems)
