"""Contenders by task and name."""

from __future__ import annotations

from engine.manifest import TASK_CLASSIFICATION, TASK_TEXT2TEXT
from onnx_engine.bench.contenders.base import Contender
from onnx_engine.bench.contenders.classification import CLASSIFIER_CONTENDERS
from onnx_engine.bench.contenders.seq2seq import SEQ2SEQ_CONTENDERS
from onnx_engine.bench.errors import BenchError

CONTENDER_NAMES = ("engine", "ort-raw", "pytorch", "pipeline", "optimum")
_BY_TASK = {
    TASK_CLASSIFICATION: {cls.name: cls for cls in CLASSIFIER_CONTENDERS},
    TASK_TEXT2TEXT: {cls.name: cls for cls in SEQ2SEQ_CONTENDERS},
}


def check_contender_names(names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [name for name in names if name not in CONTENDER_NAMES]
    if unknown:
        raise BenchError(f"Unknown contender(s) {unknown}. Choose from: {', '.join(CONTENDER_NAMES)}.")
    return names


def contender_class(task: str, name: str) -> type[Contender]:
    """The contender ``name`` for ``task``.

    Raises:
        BenchError: unknown task or contender name.
    """
    if task not in _BY_TASK:
        raise BenchError(f"The benchmark has no contenders for task {task!r}.")
    check_contender_names((name,))
    return _BY_TASK[task][name]
