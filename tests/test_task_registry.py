"""The three task tables (engine, export, top layer) name the same tasks.

A task is one module per layer and one line in each layer's table; a task missing from one table
would load but not export (or export but not serve), which this catches.
"""

from __future__ import annotations

from engine.tasks import TASK_CLASSES
from export.tasks import EXPORT_TASKS
from onnx_engine.tasks import TASKS


def test_every_layer_lists_the_same_tasks() -> None:
    assert set(TASK_CLASSES) == set(EXPORT_TASKS) == set(TASKS)


def test_each_export_task_checks_the_engine_class_that_serves_it() -> None:
    for task, spec in EXPORT_TASKS.items():
        assert spec.task == task
        assert TASK_CLASSES[task].task == task
