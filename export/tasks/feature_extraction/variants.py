"""Gates, figures and timed workloads of optimized variants of sentence-embedding models.

A variant is held to two things users of embeddings notice: every vector points where the
reference's does (minimum cosine over the export's check set and the retrieval set), and search
ranks documents as the reference does (top-10 overlap on a small corpus, and the top-1 document
except where the reference itself had a near-tie). The reference is ``SentenceTransformer.encode``
on PyTorch fp32, as for every other gate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from engine.artifact import Artifact
from engine.pooling import l2_normalize
from engine.tasks.feature_extraction import Embedder
from engine.variants.records import (
    BF16,
    FP16,
    FUSED,
    INT8,
    INT8_OPENVINO,
    VariantFigures,
    VariantGate,
)
from engine.verification.gate_figures import compare_embeddings as engine_compare_embeddings
from export.check_set import SENTENCES, check_texts
from export.retrieval_set import DOCUMENTS, QUERIES
from export.tasks.feature_extraction.exporter import FeatureExtractionExporter, reference_texts
from export.variants.checks import VariantChecker
from export.variants.int8_search import SearchProbe
from export.variants.memoized import MemoizedReference

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
    # Calibrated int8 through OpenVINO: int8's bar.
    INT8_OPENVINO: VariantGate(min_cosine=LOSSY_MIN_COSINE, min_agreement=LOSSY_TOP1_AGREEMENT,
                               flip_margin=FLIP_MARGIN,
                               min_retrieval_agreement=LOSSY_RETRIEVAL_AGREEMENT),
}


def gate_texts(max_length: int, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """``extra`` texts (calibration), then the stored :func:`reference_texts` (check set,
    retrieval documents, queries: :func:`compare_embeddings` finds the last two at the end)."""
    return (*extra, *reference_texts(max_length))


def embedding_figures(
    engine: Embedder, reference: MemoizedReference, extra: Sequence[str] = ()
) -> VariantFigures:
    """The variant's embeddings and rankings against the reference's; the minimum cosine also
    covers the ``extra`` (calibration) texts.

    The texts ``references.npz`` stores are embedded in one call of their own, as torch-free
    ``verify`` embeds them: dynamic int8 scales each activation by the range of its whole padded
    batch, so their outputs depend on which texts share a batch, and a variant that passed here
    must pass ``verify`` on the machine that made it."""
    extra = tuple(dict.fromkeys(extra))
    calls = ([list(extra)] if extra else []) + [list(reference_texts(engine.max_length))]
    ours = np.concatenate([engine.embed(texts) for texts in calls])
    texts = gate_texts(engine.max_length, extra)
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


class EmbeddingChecker(VariantChecker):
    """Sentence embeddings: cosine to sentence-transformers on the check set, the retrieval set
    and the calibration texts, and retrieval ranking."""

    engine_class = Embedder

    def load_reference(self, model: str) -> MemoizedReference:
        reference = FeatureExtractionExporter().load_reference(model)
        return MemoizedReference(reference, kept=("encode",))

    def on_cuda(self, engine: Embedder) -> bool:
        return engine.session.on_cuda

    def figures(self, engine: Embedder, reference: MemoizedReference) -> VariantFigures:
        return embedding_figures(engine, reference, self.calibration)

    def search_probe(
        self,
        artifact: Artifact,
        reference: MemoizedReference,
    ) -> SearchProbe:
        """A matmul's error is measured on the token embeddings scaled to unit length (their
        direction is what the pooled, normalized sentence vector and its cosine are made of),
        one row of all its tokens per text, so the search takes each text's largest change."""
        return self.text_search_probe(
            artifact, reference, lambda fp32: _unit_tokens_per_text
        )

    def workloads(self, engine: Embedder) -> dict[str, Callable[[], object]]:
        return embedding_workloads(engine)


def _unit_tokens_per_text(hidden: np.ndarray) -> np.ndarray:
    """``[batch, seq, hidden]`` token embeddings as ``[batch, seq * hidden]`` unit vectors."""
    return l2_normalize(hidden).reshape(len(hidden), -1)
