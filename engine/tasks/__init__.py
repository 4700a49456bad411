"""The task table: which engine class serves each task an artifact's manifest names.

One engine class per task, one line here; ``engine.load`` finds the class for an artifact here.
The classes live in this package (one module per task), on :mod:`engine.tasks.base`;
``Seq2SeqLM`` (text2text) runs on the decoding machinery of :mod:`engine.seq2seq`.
"""

from __future__ import annotations

from engine.errors import TaskMismatchError
from engine.manifest import TASK_CLASSIFICATION, TASK_FEATURE_EXTRACTION, TASK_TEXT2TEXT
from engine.tasks.base import ArtifactModel
from engine.tasks.classification import Classifier
from engine.tasks.feature_extraction import Embedder
from engine.tasks.reranking import Reranker
from engine.tasks.text2text import Seq2SeqLM
from engine.tasks.token_classification import TokenClassifier

TASK_CLASSES: dict[str, type[ArtifactModel]] = {
    TASK_CLASSIFICATION: Classifier,
    TASK_TEXT2TEXT: Seq2SeqLM,
    TASK_FEATURE_EXTRACTION: Embedder,
    TokenClassifier.task: TokenClassifier,
    Reranker.task: Reranker,
}


def engine_class_for(task: str) -> type[ArtifactModel]:
    """The engine class that serves ``task``.

    Raises:
        TaskMismatchError: this engine serves no such task.
    """
    engine_class = TASK_CLASSES.get(task)
    if engine_class is None:
        raise TaskMismatchError(
            f"'{task}' artifacts cannot be served; this engine serves: "
            f"{', '.join(sorted(TASK_CLASSES))}."
        )
    return engine_class
