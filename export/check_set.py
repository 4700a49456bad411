"""The fixed texts every export is checked on.

They cover what breaks exports in practice: the empty string, a one-word text, ordinary sentences,
non-ASCII scripts and emoji, a text of about half the maximum length (so a padded batch mixes
lengths from a few tokens to hundreds) and one longer than the maximum (truncation).
"""

from __future__ import annotations

SENTENCES = (
    "I've been waiting for a HuggingFace course my whole life.",
    "I hate this so much!",
    "The movie was not bad at all, though the ending dragged on for far too long.",
    "Café naïve résumé: 東京タワーは高い。 Ελληνικά και русский текст 🚀🔥",
)
_FILLER = "the quick brown fox jumps over the lazy dog while it rains in spring".split()


def filler_text(words: int) -> str:
    """A deterministic English text of ``words`` words (at least one token each)."""
    return " ".join(_FILLER[index % len(_FILLER)] for index in range(words))


def check_texts(max_length: int, include_empty: bool = True) -> list[str]:
    """Texts for a parity check of a model whose inputs are cut at ``max_length`` tokens."""
    texts = ([""] if include_empty else []) + ["a", *SENTENCES]
    texts.append(filler_text(max(2, max_length // 2)))
    texts.append(filler_text(2 * max_length))
    return texts
