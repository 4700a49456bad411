"""The ``feature-extraction`` task: sentence-embedding models.

``exporter`` exports them and checks parity with ``SentenceTransformer.encode``; ``variants``
gates their optimized variants on cosine and retrieval ranking.
"""

from __future__ import annotations

from export.tasks.feature_extraction.exporter import FeatureExtractionExporter
from export.tasks.feature_extraction.variants import EMBEDDING_GATES, EmbeddingChecker
from export.tasks.spec import ExportTask

FEATURE_EXTRACTION_EXPORT = ExportTask(
    exporter=FeatureExtractionExporter,
    checker=EmbeddingChecker,
    gates=EMBEDDING_GATES,
    # A gate's max_abs_diff is on the vectors' elements, max_prob_diff on similarity scores.
    figure_names=("|Δemb|", "|Δsim|"),
)
