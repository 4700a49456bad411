"""Sentence pooling and normalization in NumPy, computed as sentence-transformers computes them.

The exported graph stops at the token embeddings (``last_hidden_state``); the pooling that turns
them into one vector per text lives here, so one graph serves every pooling mode and the artifact
stays a plain encoder that any ONNX tool can read. The settings come from the artifact's
``embedding.json``, written at export from the sentence-transformers folder (``modules.json``,
``1_Pooling/config.json``) or from the ``--pooling`` flag for a plain encoder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.artifact import Artifact
from engine.errors import ArtifactNotFoundError, CorruptArtifactError

EMBEDDING_CONFIG_NAME = "embedding.json"
# sentence-transformers' names, in its Pooling module's spelling.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")
# torch.nn.functional.normalize's eps (sentence-transformers' Normalize module) and the clamp of
# the token count in its mean pooling: the same guards give the same numbers at the edges.
_NORM_EPS = 1e-12
_COUNT_EPS = 1e-9


@dataclass(frozen=True)
class PoolingConfig:
    """How token embeddings become one sentence embedding.

    Attributes:
        modes: pooling modes from ``POOLING_MODES``; several are concatenated in this order, as
            sentence-transformers does (its output dimension is then ``len(modes) * hidden``).
        normalize: L2-normalize the pooled vector (a ``Normalize`` module in the pipeline).
        similarity: the model's similarity function (``config_sentence_transformers.json``).
        token_dimension: width of the token embeddings the graph returns.
        source: ``sentence-transformers`` (read from the model folder) or ``flags``.
    """

    modes: tuple[str, ...] = ("mean",)
    normalize: bool = False
    similarity: str = "cosine"
    token_dimension: int = 0
    source: str = "flags"

    def __post_init__(self) -> None:
        unknown = [mode for mode in self.modes if mode not in POOLING_MODES]
        if not self.modes or unknown:
            raise ValueError(
                f"pooling modes {list(self.modes)} are not a non-empty list of {POOLING_MODES}"
            )
        if self.similarity not in SIMILARITY_FUNCTIONS:
            raise ValueError(f"similarity {self.similarity!r} is not one of {SIMILARITY_FUNCTIONS}")

    @property
    def dimension(self) -> int:
        """Width of the sentence embedding."""
        return len(self.modes) * self.token_dimension

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "modes": list(self.modes), "dimension": self.dimension}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PoolingConfig:
        """Parse ``embedding.json``; raises ``KeyError``/``TypeError``/``ValueError`` when
        malformed."""
        return cls(
            modes=tuple(data["modes"]),
            normalize=bool(data["normalize"]),
            similarity=str(data.get("similarity", "cosine")),
            token_dimension=int(data["token_dimension"]),
            source=str(data.get("source", "flags")),
        )

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> PoolingConfig:
        """The artifact's ``embedding.json``, its hash checked like every artifact file.

        Raises:
            ArtifactNotFoundError: the file is missing (not a feature-extraction export).
            CorruptArtifactError: it is not valid JSON or lacks fields.
        """
        if EMBEDDING_CONFIG_NAME not in artifact.manifest.files:
            raise ArtifactNotFoundError(
                f"'{artifact.path}' has no {EMBEDDING_CONFIG_NAME} (pooling settings). Re-export "
                "it with 'onnx-engine export MODEL OUT --task feature-extraction'."
            )
        path = artifact.verified_file(EMBEDDING_CONFIG_NAME)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise CorruptArtifactError(
                f"{path} is corrupt ({type(error).__name__}: {error}). Re-export the artifact."
            ) from error


def pool(
    token_embeddings: np.ndarray, attention_mask: np.ndarray, modes: tuple[str, ...]
) -> np.ndarray:
    """Sentence vectors ``[batch, len(modes) * hidden]`` from ``[batch, seq, hidden]`` token
    embeddings, ignoring padded positions (mask 0). Padding is on the right, as the engine's
    tokenizer pads."""
    hidden = token_embeddings.astype(np.float32, copy=False)
    mask = attention_mask.astype(np.float32)
    parts = []
    for mode in modes:
        if mode == "cls":
            first = np.argmax(attention_mask, axis=1)  # the first real token (0 with right padding)
            parts.append(hidden[np.arange(len(hidden)), first])
        elif mode == "max":
            parts.append(np.where(mask[:, :, None] > 0, hidden, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            total = np.einsum("bsh,bs->bh", hidden, mask)
            count = np.maximum(mask.sum(axis=1, keepdims=True), _COUNT_EPS)
            parts.append(total / (count if mode == "mean" else np.sqrt(count)))
        elif mode == "weightedmean":
            weights = mask * np.arange(1, mask.shape[1] + 1, dtype=np.float32)
            total = np.einsum("bsh,bs->bh", hidden, weights)
            parts.append(total / np.maximum(weights.sum(axis=1, keepdims=True), _COUNT_EPS))
        elif mode == "lasttoken":
            last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
            rows = np.arange(len(hidden))
            parts.append(hidden[rows, last] * mask[np.arange(len(mask)), last, None])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Vectors along the last axis scaled to unit length; an all-zero one stays zero (the norm
    is clamped at 1e-12)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, _NORM_EPS)).astype(np.float32, copy=False)
