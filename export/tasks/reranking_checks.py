"""The variant checker of cross-encoder rerankers: scores and rank order per query.

Every check query is scored with every check document, batched per query as ``rank`` runs
them, and compared with CrossEncoder's logits (computed once) by
``engine.tasks.ranking_figures``, the figures ``verify`` computes from the stored references.
Apart from ``export.tasks.reranking`` because the checker base lives in
``export.variant_checks``, which imports the gates that module defines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.manifest import TASK_RANKING
from engine.tasks.ranking_figures import ranking_figures
from engine.tasks.reranking import Reranker
from engine.variants import VariantFigures
from export.check_set import check_texts
from export.retrieval_set import DOCUMENTS, QUERIES
from export.tasks.reranking import (
    RerankingExporter,
    check_documents,
    check_queries,
    query_logits,
)
from export.variant_checks import VariantChecker


@dataclass(frozen=True)
class RankingGateReference:
    """CrossEncoder's logits of the gate's pairs, computed once for every variant."""

    queries: tuple[str, ...]
    documents: tuple[str, ...]
    logits: np.ndarray


class RerankerChecker(VariantChecker):
    """Every check query with every check document, batched per query as ``rank`` runs."""

    task = TASK_RANKING
    engine_class = Reranker

    def load_reference(self, model: str) -> RankingGateReference:
        reference = RerankingExporter().load_reference(model)
        queries = check_queries(reference.max_length)
        documents = check_documents(reference.max_length)
        return RankingGateReference(tuple(queries), tuple(documents),
                                    query_logits(reference, queries, documents))

    def on_cuda(self, engine: Reranker) -> bool:
        return engine.session.on_cuda

    def figures(self, engine: Reranker, reference: RankingGateReference) -> VariantFigures:
        ours = np.stack([engine.pair_logits([(query, document) for document in reference.documents])
                         for query in reference.queries])
        return ranking_figures(reference.logits, ours, engine.scores, reference.queries)

    def workloads(self, engine: Reranker) -> dict[str, Callable[[], object]]:
        short = [(QUERIES[0], DOCUMENTS[0])]
        long = [(QUERIES[0], text) for text in check_texts(engine.tokenizer.max_length)]
        return {
            "b1_short": lambda: engine.pair_logits(short),
            f"batch{len(long)}_long": lambda: engine.pair_logits(long, batch_size=len(long)),
        }
