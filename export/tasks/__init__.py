"""The export tasks: the one table from a manifest's task name to its ``ExportTask``.

Each task is one module (or package, where one module would pass 400 lines) under
``export/tasks/`` defining its exporter, its variant checker and its gates; adding a task is
that module, its import here and its line in ``EXPORT_TASKS``.
"""

from __future__ import annotations

from export.errors import ExportError
from export.tasks.classification import CLASSIFICATION_EXPORT
from export.tasks.feature_extraction import FEATURE_EXTRACTION_EXPORT
from export.tasks.reranking import RANKING_EXPORT
from export.tasks.spec import ExportTask
from export.tasks.text2text import TEXT2TEXT_EXPORT
from export.tasks.token_classification import TOKEN_CLASSIFICATION_EXPORT

EXPORT_TASKS: dict[str, ExportTask] = {
    spec.task: spec
    for spec in (
        CLASSIFICATION_EXPORT,
        TEXT2TEXT_EXPORT,
        FEATURE_EXTRACTION_EXPORT,
        TOKEN_CLASSIFICATION_EXPORT,
        RANKING_EXPORT,
    )
}


def export_task(task: str) -> ExportTask:
    """The exporter, variant checker and gates of ``task`` (a manifest task name).

    Raises:
        ExportError: no task of that name is known; the message lists the known ones.
    """
    try:
        return EXPORT_TASKS[task]
    except KeyError:
        raise ExportError(
            f"Unknown task {task!r}. Choose one of: {', '.join(EXPORT_TASKS)}."
        ) from None
