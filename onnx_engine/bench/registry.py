"""Contenders by task and name, and loading one for a target."""

from __future__ import annotations

from engine.manifest import (
    TASK_CLASSIFICATION,
    TASK_FEATURE_EXTRACTION,
    TASK_RANKING,
    TASK_TEXT2TEXT,
)
from onnx_engine.bench.contenders.base import Contender, ContenderSettings
from onnx_engine.bench.contenders.classification import CLASSIFIER_CONTENDERS
from onnx_engine.bench.contenders.embedding import EMBEDDING_CONTENDERS
from onnx_engine.bench.contenders.reranking import RERANKING_CONTENDERS
from onnx_engine.bench.contenders.seq2seq import SEQ2SEQ_CONTENDERS
from onnx_engine.bench.errors import BenchError, ContenderUnavailable
from onnx_engine.bench.models import BenchTarget
from onnx_engine.bench.variants import chosen_record

CONTENDER_NAMES = (
    "engine", "ort-raw", "openvino-raw", "pytorch", "pytorch-bf16", "pipeline", "optimum",
)
EMBEDDING_CONTENDER_NAMES = tuple(cls.name for cls in EMBEDDING_CONTENDERS)
_BY_TASK = {
    TASK_CLASSIFICATION: {cls.name: cls for cls in CLASSIFIER_CONTENDERS},
    TASK_TEXT2TEXT: {cls.name: cls for cls in SEQ2SEQ_CONTENDERS},
    TASK_FEATURE_EXTRACTION: {cls.name: cls for cls in EMBEDDING_CONTENDERS},
    TASK_RANKING: {cls.name: cls for cls in RERANKING_CONTENDERS},
}
_KNOWN = tuple(dict.fromkeys((*CONTENDER_NAMES, *EMBEDDING_CONTENDER_NAMES)))


def check_contender_names(names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [name for name in names if name not in _KNOWN]
    if unknown:
        raise BenchError(f"Unknown contender(s) {unknown}. Choose from: {', '.join(_KNOWN)}.")
    return names


def contender_class(task: str, name: str) -> type[Contender]:
    """The contender ``name`` for ``task``.

    Raises:
        BenchError: unknown task or contender name.
        ContenderUnavailable: the contender exists, but not for this task.
    """
    if task not in _BY_TASK:
        raise BenchError(f"The benchmark has no contenders for task {task!r}.")
    check_contender_names((name,))
    if name not in _BY_TASK[task]:
        raise ContenderUnavailable(
            f"{name} does not run {task} models (contenders for them: {', '.join(_BY_TASK[task])})."
        )
    return _BY_TASK[task][name]


def load_contender(target: BenchTarget, name: str, variant: str, threads: int,
                   new_tokens: int) -> Contender:
    """Check, create and load contender ``name`` on ``variant`` of ``target``.

    Raises:
        ContenderUnavailable: it cannot run here (missing library, checkpoint or variant).
    """
    record = chosen_record(target.artifact, variant)
    graphs = {role: target.artifact / name for role, name in record.graphs.items()}
    settings = ContenderSettings(target.artifact, target.reference, variant, graphs, threads,
                                 new_tokens, runtime=record.runtime)
    cls = contender_class(target.task, name)
    cls.check_available(settings)
    contender = cls(settings)
    contender.load()
    return contender
