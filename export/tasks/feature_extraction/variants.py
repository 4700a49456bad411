"""Gates, figures and timed workloads of optimized variants of sentence-embedding models.

A variant is held to two things users of embeddings notice: every vector points where the
reference's does (minimum cosine over the export's check set and the retrieval set), and search
ranks documents as the reference does (top-10 overlap on a small corpus, and the top-1 document
except where the reference itself had a near-tie). The reference is ``SentenceTransformer.encode``
on PyTorch fp32, as for every other gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from engine.tasks.feature_extraction import Embedder
from engine.verification.gate_figures import compare_embeddings as engine_compare_embeddings
from engine.pooling import PoolingConfig
from engine.variants.choice import BF16, FP16, FUSED, INT8, VariantFigures, VariantGate
from export.check_set import SENTENCES, check_texts
from export.tasks.feature_extraction.exporter import EmbeddingReference, FeatureExtractionExporter
from export.retrieval_set import DOCUMENTS, QUERIES

# int8 and 16-bit floats: the minimum cosine, and a top-10 overlap that tolerates one
# swap at the edge of the top 10 for the odd query. The top-1 document may change only where
# the reference's best two were within FLIP_MARGIN of each other (cosine units).
LOSSY_MIN_COSINE = 0.99
LOSSY_RETRIEVAL_AGREEMENT = 0.9
LOSSY_TOP1_AGREEMENT = 0.9
FLIP_MARGIN = 0.02

EMBEDDING_GATES: dict[str, VariantGate] = {
    # Fusion only regroups fp32 arithmetic: as exact as the export itself.
    FUSED: VariantGate(max_abs_diff=1e-4, min_cosine=0.9999, min_agreement=1.0,
                       min_retrieval_agreement=1.0),
    INT8: VariantGate(min_cosine=LOSSY_MIN_COSINE, min_agreement=LOSSY_TOP1_AGREEMENT,
                      flip_margin=FLIP_MARGIN, min_retrieval_agreement=LOSSY_RETRIEVAL_AGREEMENT),
    FP16: VariantGate(min_cosine=LOSSY_MIN_COSINE, min_agreement=LOSSY_TOP1_AGREEMENT,
                      flip_margin=FLIP_MARGIN, min_retrieval_agreement=LOSSY_RETRIEVAL_AGREEMENT),
    # bf16 (CPUs with AMX / AVX512-BF16): the same bar as the other 16-bit float variant.
    BF16: VariantGate(min_cosine=LOSSY_MIN_COSINE, min_agreement=LOSSY_TOP1_AGREEMENT,
                        flip_margin=FLIP_MARGIN, min_retrieval_agreement=LOSSY_RETRIEVAL_AGREEMENT),
}


@dataclass
class MemoizedEmbeddingReference:
    """The sentence-transformers reference with its embeddings of the gate's texts kept, so each
    variant is compared without running PyTorch again."""

    reference: EmbeddingReference
    _cache: dict[tuple[PoolingConfig, tuple[str, ...]], np.ndarray] = field(default_factory=dict)

    def encode(self, texts: tuple[str, ...], pooling: PoolingConfig) -> np.ndarray:
        key = (pooling, texts)
        if key not in self._cache:
            self._cache[key] = self.reference.encode(list(texts), pooling)
        return self._cache[key]


def load_embedding_reference(model: str) -> MemoizedEmbeddingReference:
    return MemoizedEmbeddingReference(FeatureExtractionExporter().load_reference(model))


def gate_texts(max_length: int, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """``extra`` texts (calibration), the export's check set, the retrieval documents, then the
    queries (:func:`compare_embeddings` finds documents and queries at the end)."""
    return (*extra, *check_texts(max_length), *DOCUMENTS, *QUERIES)


def embedding_figures(
    engine: Embedder, reference: MemoizedEmbeddingReference, extra: Sequence[str] = ()
) -> VariantFigures:
    """The variant's embeddings and rankings against the reference's; the minimum cosine also
    covers the ``extra`` (calibration) texts."""
    texts = gate_texts(engine.max_length, tuple(dict.fromkeys(extra)))
    ours = engine.embed(list(texts))
    theirs = reference.encode(texts, engine.pooling)
    return compare_embeddings(ours, theirs, texts, engine.pooling.similarity)


def compare_embeddings(
    ours: np.ndarray, theirs: np.ndarray, texts: tuple[str, ...], similarity: str
) -> VariantFigures:
    """Figures of ``ours`` vs ``theirs`` (rows in the order of :func:`gate_texts`)."""
    return engine_compare_embeddings(ours, theirs, texts, similarity, len(DOCUMENTS), len(QUERIES))


def embedding_workloads(engine: Embedder) -> dict[str, Callable[[], object]]:
    """A short text alone and the long check-set batch, as for the classifier."""
    short = [SENTENCES[1]]
    long = check_texts(engine.max_length)
    return {
        "b1_short": lambda: engine.embed(short),
        f"batch{len(long)}_long": lambda: engine.embed(long, batch_size=len(long)),
    }
