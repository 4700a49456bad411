"""Contenders by task and name, and loading one for a target."""

from __future__ import annotations

from pathlib import Path

from onnx_engine.bench.contenders.base import Contender, ContenderSettings
from onnx_engine.bench.errors import BenchError, ContenderUnavailable
from onnx_engine.bench.models import BenchTarget
from onnx_engine.bench.variants import chosen_record
from onnx_engine.tasks import TASKS

# The default run: the ways of running a classifier or a generator (each task runs those of
# them it has; embedding models have their own, asked for by name).
CONTENDER_NAMES = (
    "engine", "ort-raw", "openvino-raw", "pytorch", "pytorch-bf16", "pipeline", "optimum",
    "ctranslate2",
)


def contenders_by_name(task: str) -> dict[str, type[Contender]]:
    """The contenders of ``task`` by name, in the task's order.

    Raises:
        BenchError: no contenders for ``task``.
    """
    if task not in TASKS:
        raise BenchError(f"The benchmark has no contenders for task {task!r}.")
    return {cls.name: cls for cls in TASKS[task].contender_classes()}


def known_contender_names() -> tuple[str, ...]:
    """Every contender name of every task (defaults first)."""
    every = (name for task in TASKS for name in contenders_by_name(task))
    return tuple(dict.fromkeys((*CONTENDER_NAMES, *every)))


def check_contender_names(names: tuple[str, ...]) -> tuple[str, ...]:
    known = known_contender_names()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BenchError(f"Unknown contender(s) {unknown}. Choose from: {', '.join(known)}.")
    return names


def contender_class(task: str, name: str) -> type[Contender]:
    """The contender ``name`` for ``task``.

    Raises:
        BenchError: unknown task or contender name.
        ContenderUnavailable: the contender exists, but not for this task.
    """
    by_name = contenders_by_name(task)
    check_contender_names((name,))
    if name not in by_name:
        raise ContenderUnavailable(
            f"{name} does not run {task} models (contenders for them: {', '.join(by_name)})."
        )
    return by_name[name]


def load_contender(target: BenchTarget, name: str, variant: str, threads: int,
                   new_tokens: int, beams: int = 1,
                   cache_dir: Path = ContenderSettings.cache_dir) -> Contender:
    """Check, create and load contender ``name`` on ``variant`` of ``target``.

    Raises:
        ContenderUnavailable: it cannot run here (missing library, checkpoint or variant).
    """
    record = chosen_record(target.artifact, variant)
    graphs = {role: target.artifact / name for role, name in record.graphs.items()}
    settings = ContenderSettings(target.artifact, target.reference, variant, graphs, threads,
                                 new_tokens, runtime=record.runtime, beams=beams,
                                 cache_dir=cache_dir)
    cls = contender_class(target.task, name)
    cls.check_available(settings)
    contender = cls(settings)
    contender.load()
    return contender
