"""Cross-encoder reranking from an exported artifact, shaped exactly like sentence-transformers.

A reranker is a single-label sequence classifier read on (query, document) pairs, so
:class:`Reranker` is a :class:`~engine.classifier.Classifier` whose task, activation and
answers are those of ``CrossEncoder``: ``predict(pairs)`` returns ``CrossEncoder.predict``'s
scores, ``rank(query, documents)`` its sorted ``{"corpus_id", "score"[, "text"]}`` list.
The activation comes from the artifact's config (written by the export from the CrossEncoder's
own setting: sigmoid by default for one label, identity when it was saved so).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from engine.artifact import Artifact
from engine.artifact_model import text_timing_calls
from engine.classifier import Classifier, check_top_k
from engine.errors import CorruptArtifactError, InputError
from engine.manifest import TASK_RANKING
from engine.session import EngineSession
from engine.tokenization import TextTokenizer, check_batch_size, checked_unicode
from engine.variants import FP32

# The config.json key the export records the CrossEncoder's activation under ("activation"
# alone is taken: DistilBERT's config uses it for its hidden activation).
ACTIVATION_KEY = "ranking_activation"
# What CrossEncoder applies to the logit: torch.nn.Sigmoid, or torch.nn.Identity ("none").
RANKING_ACTIVATIONS = ("sigmoid", "none")
Pair = tuple[str, str]


def ranking_activation(config: dict[str, Any], artifact: Artifact) -> str:
    """The activation the export recorded in ``config``.

    Raises:
        CorruptArtifactError: missing or not one of :data:`RANKING_ACTIVATIONS`.
    """
    activation = config.get(ACTIVATION_KEY)
    if activation not in RANKING_ACTIVATIONS:
        raise CorruptArtifactError(
            f"{artifact.path / 'config.json'}: '{ACTIVATION_KEY}' must be one of "
            f"{', '.join(RANKING_ACTIVATIONS)}, got {activation!r}. Re-export the artifact with "
            "'onnx-engine export MODEL --task text-ranking'."
        )
    return activation


class Reranker(Classifier):
    """A cross-encoder reranker on ONNX Runtime with tokenizers and NumPy only.

    ``predict(pairs)`` equals ``CrossEncoder.predict(pairs)`` and ``rank(query, documents)``
    equals ``CrossEncoder.rank``; pairs longer than ``max_length`` are cut longest-first, as
    CrossEncoder's tokenizer call does. ``logits`` gives the raw scores behind them.
    """

    task = TASK_RANKING

    def __init__(
        self,
        artifact: Artifact,
        session: EngineSession,
        tokenizer: TextTokenizer,
        variant: str = FP32,
        guard_finite: bool = True,
    ) -> None:
        super().__init__(artifact, session, tokenizer, variant, guard_finite)
        if len(self.id2label) != 1:
            raise CorruptArtifactError(
                f"'{artifact.path}' has {len(self.id2label)} labels; a reranker scores with one. "
                "Export a single-label model with --task text-ranking."
            )
        self.activation = ranking_activation(artifact.config(), artifact)

    def timing_calls(self) -> dict[str, Callable[[], object]]:
        return text_timing_calls(
            lambda texts, batch: self.pair_logits([(text, text) for text in texts], batch)
        )

    def activation_for(self, function_to_apply: str | None) -> str:
        """The activation ``function_to_apply`` names; ``None`` is the model's own.

        Raises:
            InputError: not sigmoid or none (softmax over one label is always 1).
        """
        activation = function_to_apply or self.activation
        if isinstance(activation, str):
            activation = activation.lower()
        if activation not in RANKING_ACTIVATIONS:
            raise InputError(
                f"activation must be one of {', '.join(RANKING_ACTIVATIONS)}, got {activation!r}."
            )
        return activation

    def pair_logits(self, pairs: Sequence[Pair], batch_size: int = 32) -> np.ndarray:
        """Raw logits ``[len(pairs)]`` of checked ``(query, document)`` tuples, in their order."""
        return self._logits(list(pairs), check_batch_size(batch_size))[:, 0]

    def predict(
        self, pairs: object, batch_size: int = 32, activation: str | None = None
    ) -> np.ndarray | np.float32:
        """Scores of ``(query, document)`` pairs, as ``CrossEncoder.predict`` returns them.

        ``pairs`` is a list of two-string lists/tuples, or one such pair (then one score comes
        back, as CrossEncoder does). ``activation`` overrides the model's (``"none"``: logits).

        Raises:
            InputError: an empty list, an item that is not two strings, a bad batch size or
                activation.
        """
        items, single = as_pairs(pairs)
        scores = self._scored(items, batch_size, activation)
        return scores[0] if single else scores

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        activation: str | None = None,
    ) -> list[dict[str, Any]]:
        """``documents`` sorted by their score for ``query``, as ``CrossEncoder.rank``.

        Each entry is ``{"corpus_id": index in documents, "score": float}``, plus ``"text"``
        with ``return_documents``; the best ``top_k`` (``None``: all). Equal scores keep the
        documents' order, as Python's sort does for CrossEncoder.

        Raises:
            InputError: an empty or non-string query, an empty documents list or a
                non-string document, ``top_k`` not a positive integer.
        """
        check_top_k(top_k)
        pairs = query_pairs(query, documents)
        scores = self._scored(pairs, batch_size, activation)
        return ranked(scores, documents if return_documents else None, top_k)

    def _scored(self, pairs: list[Pair], batch_size: int, activation: str | None) -> np.ndarray:
        chosen = self.activation_for(activation)
        return self._activate(self.pair_logits(pairs, batch_size), chosen)


def ranked(
    scores: np.ndarray, documents: Sequence[str] | None, top_k: int | None
) -> list[dict[str, Any]]:
    """``{"corpus_id", "score"[, "text"]}`` of each score, best first, the ``top_k`` best."""
    results: list[dict[str, Any]] = [
        {"corpus_id": index, "score": float(score)} for index, score in enumerate(scores)
    ]
    if documents is not None:
        for result, document in zip(results, documents):
            result["text"] = document
    return sorted(results, key=lambda result: result["score"], reverse=True)[:top_k]


def query_pairs(query: object, documents: object) -> list[Pair]:
    """``(query, document)`` for each document, after checking both.

    Raises:
        InputError: the query is not a non-empty string, the documents not a non-empty list of
            strings.
    """
    if not isinstance(query, str) or not query:
        raise InputError(
            f"query must be a non-empty string, got {type(query).__name__} ({query!r:.40})."
        )
    if not isinstance(documents, (list, tuple)) or not documents:
        raise InputError(
            f"documents must be a non-empty list of strings, got {documents!r:.60}. Pass at "
            "least one document."
        )
    query = checked_unicode(query, "query")
    pairs = []
    for index, document in enumerate(documents):
        if not isinstance(document, str):
            raise InputError(
                f"document #{index} is {type(document).__name__} ({document!r:.40}), not a "
                "string. Pass the documents as strings."
            )
        pairs.append((query, checked_unicode(document, f"document #{index}")))
    return pairs


def as_pairs(pairs: object) -> tuple[list[Pair], bool]:
    """A list of ``(query, document)`` tuples, and whether one pair (not a list) was given.

    Raises:
        InputError: not a pair or a non-empty list of pairs of two strings.
    """
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise InputError(
            f"pairs must be a non-empty list of [query, document] pairs, got {pairs!r:.60}."
        )
    single = isinstance(pairs[0], str)  # CrossEncoder's test: a flat pair is one input
    items = [pairs] if single else list(pairs)
    checked = []
    for index, item in enumerate(items):
        if not (isinstance(item, (list, tuple)) and len(item) == 2
                and all(isinstance(text, str) for text in item)):
            raise InputError(
                f"pair #{index} is {item!r:.60}; a pair is [query, document], two strings."
            )
        checked.append((checked_unicode(item[0], f"pair #{index} query"),
                        checked_unicode(item[1], f"pair #{index} document")))
    return checked, single
