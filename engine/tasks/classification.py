"""Sequence classification from an exported artifact, shaped exactly like the HF pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from engine.artifact import Artifact
from engine.checks import check_int
from engine.errors import CorruptArtifactError, InputError
from engine.manifest import TASK_CLASSIFICATION
from engine.numerics import sigmoid, softmax
from engine.options import RuntimeOptions
from engine.tasks.base import TextGraphModel, text_timing_calls
from engine.tokenization import EncodedRow, TextInput, as_text_list, check_batch_size

_TOP_K_UNSET = object()
Inputs = str | dict | Sequence[str | dict]
ACTIVATIONS = ("softmax", "sigmoid", "none")


def default_activation(config: dict[str, Any]) -> str:
    """The score function ``transformers.pipeline`` applies for this config, decided the same
    way."""
    problem_type = config.get("problem_type")
    num_labels = len(config.get("id2label", {})) or 2
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def checked_id2label(config: dict[str, Any], artifact: Artifact) -> dict[int, str]:
    """``id2label`` of the config, checked to name every class of the graph once.

    Raises:
        CorruptArtifactError: it is missing, not a mapping of integer ids to label strings, or
            not numbered 0..num_labels-1.
    """
    labels = config.get("id2label")
    try:
        if not isinstance(labels, Mapping):
            raise TypeError("id2label is not a mapping")
        id2label = {int(key): str(label) for key, label in labels.items()}
    except (AttributeError, TypeError, ValueError):
        id2label = {}
    if not id2label or sorted(id2label) != list(range(len(id2label))):
        raise CorruptArtifactError(
            f"{artifact.path / 'config.json'}: 'id2label' must map the class ids 0..N-1 to label "
            f"names, got {labels!r:.80}. Re-export the artifact (export writes the full id2label)."
        )
    return id2label


class Classifier(TextGraphModel):
    """A text classifier running on ONNX Runtime with tokenizers and NumPy only.

    ``clf(texts)`` returns what ``transformers.pipeline("text-classification")`` returns for the
    same arguments; ``logits`` and ``predict_proba`` give the arrays behind it.
    """

    task = TASK_CLASSIFICATION

    def _assemble(self, options: RuntimeOptions) -> None:
        super()._assemble(options)
        config = self.artifact.config()
        self.id2label = checked_id2label(config, self.artifact)
        self.activation = default_activation(config)

    def timing_calls(self) -> dict[str, Callable[[], object]]:
        return text_timing_calls(self.logits)

    @property
    def labels(self) -> list[str]:
        return [self.id2label[index] for index in sorted(self.id2label)]

    def logits(self, texts: Inputs, batch_size: int = 32) -> np.ndarray:
        """Raw logits ``[batch, num_labels]`` before any activation, in the order of ``texts``.

        ``texts`` is a string, a ``{"text", "text_pair"}`` dict for sentence-pair models, or a
        list of either.

        Texts are grouped by length before batching so short texts are not padded to long ones;
        the result is put back in input order. Over-long texts are truncated at ``max_length``.
        """
        items, _ = as_text_list(texts, allow_pairs=True)
        return self._logits(items, check_batch_size(batch_size))

    def logits_encoded(self, rows: Sequence[EncodedRow], batch_size: int = 32) -> np.ndarray:
        """:meth:`logits` of inputs already encoded (``tokenizer.encode_rows``, or a server's
        queue, which tokenizes each text once): nothing is tokenized or checked again."""
        return self._gathered(self.run_encoded(rows, check_batch_size(batch_size), "logits"),
                              len(rows))

    def _logits(self, items: list[TextInput], batch_size: int) -> np.ndarray:
        return self._gathered(self.run_batches(items, batch_size, "logits"), len(items))

    def _gathered(self, batches: Iterable[tuple[list[int], Any, np.ndarray]],
                  count: int) -> np.ndarray:
        result = np.empty((count, len(self.id2label)), dtype=np.float32)
        for chunk, _, logits in batches:
            result[chunk] = logits
        return result

    def predict_proba(self, texts: Inputs, batch_size: int = 32) -> np.ndarray:
        """Scores ``[batch, num_labels]`` after the model's activation (softmax for
        single-label)."""
        return self.scores(self.logits(texts, batch_size=batch_size))

    def scores(self, logits: np.ndarray, function_to_apply: str | None = None) -> np.ndarray:
        """``function_to_apply`` (default: the model's activation) applied to ``logits``.

        Raises:
            InputError: ``function_to_apply`` is not softmax, sigmoid or none.
        """
        return self._activate(logits, self.activation_for(function_to_apply))

    def activation_for(self, function_to_apply: str | None) -> str:
        """The activation ``function_to_apply`` names; ``None`` is the model's own.

        Raises:
            InputError: not softmax, sigmoid or none.
        """
        activation = function_to_apply or self.activation
        if isinstance(activation, str):  # the pipeline takes any case ("None", "SIGMOID")
            activation = activation.lower()
        if activation not in ACTIVATIONS:
            raise InputError(
                f"function_to_apply must be one of {', '.join(ACTIVATIONS)}, got {activation!r}."
            )
        return activation

    def __call__(
        self,
        texts: Inputs,
        top_k: int | object | None = _TOP_K_UNSET,
        batch_size: int = 32,
        function_to_apply: str | None = None,
    ) -> Any:
        """Classify like ``pipeline("text-classification")``, with the same result structure.

        Without ``top_k`` each text gets one ``{"label", "score"}`` dict (one string still returns a
        list of one dict; one pair dict returns one dict, as the pipeline does). With ``top_k``
        each text gets a list of the ``top_k`` best labels (``None``: all, sorted by score), and a
        list of texts gets a list of those lists.
        """
        items, single = as_text_list(texts, allow_pairs=True)
        legacy = top_k is _TOP_K_UNSET
        limit = None if legacy else check_top_k(top_k)
        activation = self.activation_for(function_to_apply)
        scores = self._activate(self._logits(items, check_batch_size(batch_size)), activation)
        if legacy:
            best = [self._best(row) for row in scores]
            return best[0] if isinstance(texts, dict) else best
        ranked = [self.ranked(row, limit) for row in scores]
        return ranked[0] if single else ranked

    def _best(self, row: np.ndarray) -> dict[str, Any]:
        index = int(np.argmax(row))
        return {"label": self.id2label[index], "score": float(row[index])}

    def ranked(self, row: np.ndarray, top_k: int | None) -> list[dict[str, Any]]:
        """The ``top_k`` best ``{"label", "score"}`` of one row of scores (``None``: all)."""
        # A stable sort on the negated scores keeps label order among ties, as Python's sort does.
        order = np.argsort(-row, kind="stable")[:top_k]
        return [{"label": self.id2label[int(i)], "score": float(row[i])} for i in order]

    @staticmethod
    def _activate(logits: np.ndarray, activation: str) -> np.ndarray:
        if activation == "softmax":
            return softmax(logits)
        if activation == "sigmoid":
            return sigmoid(logits)
        return logits


def check_top_k(top_k: object) -> int | None:
    """``top_k`` if it is a positive integer or ``None`` (all labels).

    Raises:
        InputError: it is neither.
    """
    return None if top_k is None else check_int("top_k", top_k, what="a positive integer or None")

