"""Accuracy gates of the optimized variants: default limits, overrides, and the measured figures.

Every variant is compared with the PyTorch fp32 model on the export's check set; the figures are
stored in the manifest next to the limits they were held to, so a reader sees both.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Callable, Sequence

import numpy as np

from engine.errors import InputError
from engine.manifest import TASK_CLASSIFICATION
from engine.variants import FP16, FUSED, INT8, VariantFigures, VariantGate
from export.parity import OutputPair, argmax_agrees

# Differences below this are float32 noise between two fp32 runtimes (~1e-6 measured): where the
# reference's own top two are this close, either label is the same prediction.
TIE_TOLERANCE = 1e-5

DEFAULT_GATES: dict[str, dict[str, VariantGate]] = {
    TASK_CLASSIFICATION: {
        # Fusion only regroups fp32 arithmetic: it must be as exact as the export itself.
        FUSED: VariantGate(max_abs_diff=1e-4, min_agreement=1.0),
        # int8 moves logits by ~0.07 on random weights (probabilities <= 0.023): judged on scores.
        INT8: VariantGate(max_prob_diff=0.03, min_agreement=1.0),
        # fp16 keeps ~3 significant digits; 0.01 in probability leaves room for that, not for
        # an overflowing layer.
        FP16: VariantGate(max_prob_diff=0.01, min_agreement=1.0),
    },
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


def measure_figures(
    pairs: Sequence[OutputPair],
    activate: Callable[[np.ndarray], np.ndarray],
    multi_label: bool = False,
) -> VariantFigures:
    """Worst |Δ| of raw outputs and of scores, and the share of inputs whose prediction agrees.

    ``activate`` turns raw outputs into scores (the model's softmax or sigmoid). A single-label
    prediction is the argmax; a multi-label one is the set of labels scored above 0.5, so it
    agrees when every label is on the same side of the threshold (or within the tie tolerance).
    """
    rows = []  # (|Δprob|, |Δ|, agrees, label) per input; a non-finite output is infinitely off
    for pair in pairs:
        reference = np.asarray(pair.reference, dtype=np.float64)
        candidate = np.asarray(pair.candidate, dtype=np.float64)
        label = f"{pair.name} {pair.text[:32]!r}"
        if not np.isfinite(candidate).all():
            rows.append((float("inf"), float("inf"), False, label))
            continue
        prob_diff = float(np.max(np.abs(activate(reference) - activate(candidate))))
        abs_diff = float(np.max(np.abs(reference - candidate)))
        agrees = _prediction_agrees(reference, candidate, multi_label)
        rows.append((prob_diff, abs_diff, agrees, label))
    if not rows:
        raise InputError("No outputs to measure: the check set is empty.")
    worst = max(rows, key=lambda row: (not row[2], row[0], row[1]))  # a flipped label first
    return VariantFigures(
        max_abs_diff=max(row[1] for row in rows),
        max_prob_diff=max(row[0] for row in rows),
        agreement=sum(row[2] for row in rows) / len(rows),
        inputs=len(rows),
        finite=all(row[0] != float("inf") for row in rows),
        worst_input=worst[3],
    )


def _prediction_agrees(reference: np.ndarray, candidate: np.ndarray, multi_label: bool) -> bool:
    if not multi_label:
        return argmax_agrees(reference, candidate, TIE_TOLERANCE)
    same_side = (reference > 0) == (candidate > 0)
    return bool(np.all(same_side | (np.abs(reference) <= TIE_TOLERANCE)))


def gate_verdict(gate: VariantGate, figures: VariantFigures) -> tuple[bool, str]:
    """``(passed, reason)``: the reason lists every broken limit, empty when the gate passed."""
    problems = gate.violations(figures)
    return not problems, "; ".join(problems)
