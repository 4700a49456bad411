"""The export task table: every task's exporter, checker and gates agree on the task, and a
task the table does not know is refused with the known ones named."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.manifest import TASK_CLASSIFICATION, TASK_FEATURE_EXTRACTION, TASK_TEXT2TEXT
from engine.variants.records import INT4
from export.errors import ExportError
from export.tasks import EXPORT_TASKS, export_task
from export.variants.gates import default_gate
from export.variants.optimize import MAKEABLE_VARIANTS


def test_table_holds_the_three_tasks_under_their_manifest_names() -> None:
    # the first three; tasks added later each bring their line (tests/test_task_registry.py)
    assert {TASK_CLASSIFICATION, TASK_FEATURE_EXTRACTION, TASK_TEXT2TEXT} <= set(EXPORT_TASKS)
    for name, spec in EXPORT_TASKS.items():
        assert export_task(name) is spec
        assert spec.exporter.task == name
        assert spec.checker.engine_class.task == name


@pytest.mark.parametrize("task", sorted(EXPORT_TASKS))
def test_every_makeable_variant_has_a_default_gate(task: str) -> None:
    # int4 (4-bit decoder weights) is T5's alone
    for variant in MAKEABLE_VARIANTS:
        if variant == INT4 and task != TASK_TEXT2TEXT:
            with pytest.raises(InputError, match=f"'int4' variant is not made for '{task}'"):
                default_gate(task, variant)
        else:
            assert default_gate(task, variant) is EXPORT_TASKS[task].gates[variant]


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ExportError, match="Unknown task 'summarization'") as caught:
        export_task("summarization")
    for name in EXPORT_TASKS:
        assert name in str(caught.value)
