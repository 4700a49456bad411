"""Accuracy gates of the optimized variants: each task's default limits, overrides, verdicts.

The default limits are the task's (``export.tasks``; e.g. ``export/tasks/classification.py``).
Every variant is compared with the PyTorch fp32 model on the export's check set; the figures are
stored in the manifest next to the limits they were held to, so a reader sees both. The figures
themselves are computed torch-free in ``engine.verification.gate_figures``, so ``onnx-engine
verify`` measures a variant against the artifact's stored references exactly as ``optimize`` did
against PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace

from engine.errors import InputError
from engine.variants.records import VariantFigures, VariantGate
from export.tasks import export_task


def default_gate(task: str, variant: str) -> VariantGate:
    """The gate a variant of ``task`` must pass unless the caller overrides it.

    Raises:
        ExportError: the task is unknown.
        InputError: no gate is defined for this task and variant.
    """
    gates = export_task(task).gates
    if variant not in gates:
        raise InputError(
            f"The '{variant}' variant is not made for '{task}' models (no accuracy gate is "
            f"defined for it); their variants: {', '.join(gates)}."
        )
    return gates[variant]


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
