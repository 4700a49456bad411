"""What one task is at export time, as the task table (``export.tasks``) lists it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.variants.records import VariantGate
from export.tasks.base import TaskExporter
from export.variants.checks import VariantChecker

# What a gate's max_abs_diff and max_prob_diff measure, unless a task says otherwise.
LOGIT_FIGURES = ("|Δlogit|", "|Δprob|")


@dataclass(frozen=True)
class ExportTask:
    """A task's exporter (its parity check included), its variant checker and its gates.

    ``gates`` are the default accuracy limits per variant name (``engine.variants.choice``), which
    ``optimize`` overrides where the user asks; ``figure_names`` say what the gate's
    ``max_abs_diff`` and ``max_prob_diff`` measure for this task, in the variant table.
    """

    exporter: type[TaskExporter]
    checker: type[VariantChecker]
    gates: Mapping[str, VariantGate]
    figure_names: tuple[str, str] = LOGIT_FIGURES

    @property
    def task(self) -> str:
        """The manifest's task name, e.g. ``text-classification``."""
        return self.exporter.task
