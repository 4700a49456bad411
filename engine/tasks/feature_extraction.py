"""Sentence embeddings from an exported encoder, identical to ``SentenceTransformer.encode``.

The graph returns token embeddings; pooling and normalization run here in NumPy
(:mod:`engine.pooling`) with the settings the export read from the model folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from engine.errors import CorruptArtifactError, InputError
from engine.manifest import TASK_FEATURE_EXTRACTION
from engine.options import RuntimeOptions
from engine.pooling import PoolingConfig, l2_normalize, pool
from engine.similarity import SearchHit, best_hits, similarity_matrix
from engine.tasks.base import TextGraphModel, text_timing_calls
from engine.tokenization import EncodedBatch, EncodedRow, as_text_list, check_batch_size

TOKEN_EMBEDDINGS = "last_hidden_state"
Texts = str | Sequence[str]
TextsOrEmbeddings = str | Sequence[str] | np.ndarray


class Embedder(TextGraphModel):
    """A sentence-embedding model running on ONNX Runtime with tokenizers and NumPy only.

    ``embed(texts)`` returns what ``SentenceTransformer.encode(texts)`` returns (within 1e-5;
    the export checks it), as ``float32 [len(texts), dimension]``. Texts longer than the model's
    ``max_seq_length`` are truncated, as sentence-transformers does; the empty string is valid.
    """

    task = TASK_FEATURE_EXTRACTION

    def _assemble(self, options: RuntimeOptions) -> None:
        self.pooling = PoolingConfig.from_artifact(self.artifact)
        super()._assemble(options)
        if TOKEN_EMBEDDINGS not in self.session.output_names:
            raise CorruptArtifactError(
                f"'{self.session.path.name}' has no '{TOKEN_EMBEDDINGS}' output (it has "
                f"{list(self.session.output_names)}). Re-export with --task feature-extraction."
            )

    def timing_calls(self) -> dict[str, Callable[[], object]]:
        return text_timing_calls(self.embed)

    @property
    def dimension(self) -> int:
        return self.pooling.dimension

    @property
    def max_length(self) -> int:
        """Tokens per text (special tokens included) beyond which texts are truncated."""
        return self.tokenizer.max_length

    def embed(
        self, texts: Texts, batch_size: int = 32, normalize: bool | None = None
    ) -> np.ndarray:
        """Sentence embeddings ``float32 [len(texts), dimension]``, in the order of ``texts``.

        One string gives one row. Texts are grouped by length before batching, so a short text
        is never padded to a long one's length.

        Args:
            texts: a string or a non-empty list of strings (the empty string is valid).
            batch_size: texts per ONNX Runtime call.
            normalize: L2-normalize each row; ``None`` does what the model does (its
                sentence-transformers ``Normalize`` module, or the export's ``--normalize``).

        Raises:
            InputError: ``texts`` is not a string or a non-empty list of strings, or
                ``batch_size``/``normalize`` has a wrong type or value.
        """
        return self.embed_with_token_counts(texts, batch_size, normalize)[0]

    def embed_with_token_counts(
        self, texts: Texts, batch_size: int = 32, normalize: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`embed`, plus how many tokens the model saw for each text (after truncation,
        special tokens included): what embedding APIs bill as usage."""
        items, _ = as_text_list(texts)
        batch_size = check_batch_size(batch_size)
        return self._pooled(self.run_batches(items, batch_size, TOKEN_EMBEDDINGS), len(items),
                            check_normalize(normalize))

    def embed_encoded(
        self, rows: Sequence[EncodedRow], batch_size: int = 32, normalize: bool | None = None
    ) -> np.ndarray:
        """:meth:`embed` of texts already encoded (``tokenizer.encode_rows``, or a server's
        queue, which tokenizes each text once; each row's ``tokens`` is its usage count)."""
        batches = self.run_encoded(rows, check_batch_size(batch_size), TOKEN_EMBEDDINGS)
        return self._pooled(batches, len(rows), check_normalize(normalize))[0]

    def _pooled(
        self, batches: Iterable[tuple[list[int], EncodedBatch, np.ndarray]], count: int,
        normalize: bool | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        embeddings = np.empty((count, self.dimension), dtype=np.float32)
        counts = np.empty(count, dtype=np.int64)
        for chunk, encoded, hidden in batches:
            embeddings[chunk] = pool(hidden, encoded.attention_mask, self.pooling.modes)
            counts[chunk] = encoded.attention_mask.sum(axis=1)
        if self.pooling.normalize if normalize is None else normalize:
            embeddings = l2_normalize(embeddings)
        return embeddings, counts

    def similarity(self, a: TextsOrEmbeddings, b: TextsOrEmbeddings) -> np.ndarray:
        """Scores ``[len(a), len(b)]`` with the model's similarity function (cosine unless its
        sentence-transformers config names another), like ``SentenceTransformer.similarity``.

        ``a`` and ``b`` are texts (embedded here) or embeddings from :meth:`embed`.

        Raises:
            InputError: bad texts, or embeddings of another width than this model's.
        """
        return similarity_matrix(self._vectors(a), self._vectors(b), self.pooling.similarity)

    def search(
        self, queries: TextsOrEmbeddings, corpus: TextsOrEmbeddings, top_k: int = 10,
        batch_size: int = 32,
    ) -> list[list[SearchHit]]:
        """The ``top_k`` corpus entries most similar to each query, best first (like
        ``sentence_transformers.util.semantic_search``). Embed a large corpus once with
        :meth:`embed` and pass the array to search it many times.

        Raises:
            InputError: bad texts or embeddings, or ``top_k`` is not a positive integer.
        """
        scores = similarity_matrix(
            self._vectors(queries, batch_size), self._vectors(corpus, batch_size),
            self.pooling.similarity,
        )
        return best_hits(scores, top_k)

    def _vectors(self, texts_or_embeddings: TextsOrEmbeddings, batch_size: int = 32) -> np.ndarray:
        if isinstance(texts_or_embeddings, np.ndarray):
            if texts_or_embeddings.ndim != 2 or texts_or_embeddings.shape[1] != self.dimension:
                raise InputError(
                    f"Embeddings must have shape [n, {self.dimension}] for this model, got "
                    f"{texts_or_embeddings.shape}."
                )
            return texts_or_embeddings
        return self.embed(texts_or_embeddings, batch_size=batch_size)



def check_normalize(normalize: object) -> bool | None:
    """``normalize`` if it is True, False or None (the model's own setting).

    Raises:
        InputError: anything else.
    """
    if normalize is not None and not isinstance(normalize, bool):
        raise InputError(f"normalize must be True, False or None, got {normalize!r}.")
    return normalize
