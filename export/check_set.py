"""The fixed texts every export is checked on.

They cover what breaks exports in practice: the empty string, a one-word text, ordinary sentences,
non-ASCII scripts and emoji, a text of about half the maximum length (so a padded batch mixes
lengths from a few tokens to hundreds) and one longer than the maximum (truncation).
"""

from __future__ import annotations

from collections.abc import Callable

SENTENCES = (
    "I've been waiting for a HuggingFace course my whole life.",
    "I hate this so much!",
    "The movie was not bad at all, though the ending dragged on for far too long.",
    "Café naïve résumé: 東京タワーは高い。 Ελληνικά και русский текст 🚀🔥",
)
_FILLER = [
    "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "it", "rains",
    "in", "spring",
]


def filler_text(words: int) -> str:
    """A deterministic English text of ``words`` words (at least one token each)."""
    return " ".join(_FILLER[index % len(_FILLER)] for index in range(words))


def check_texts(
    max_length: int,
    include_empty: bool = True,
    count_tokens: Callable[[str], int] | None = None,
) -> list[str]:
    """Texts for a parity check of a model whose inputs are limited to ``max_length`` tokens.

    The last one is over the limit: a classifier truncates it, T5 reads it whole. It is only a
    little over (``max_length + 32`` tokens), because T5's attention memory grows with the square
    of the length in every padded row of the batch (2 x max_length took ~8 GB). Its length is
    counted in words, each at least one token, unless ``count_tokens`` says how a text
    tokenizes: a model that reads it whole should pass it, since a vocabulary that splits the
    filler's words (the tests' small T5 vocabulary: ~2.9 pieces a word) turns ``max_length + 32``
    words into three times the limit.
    """
    texts = ([""] if include_empty else []) + ["a", *SENTENCES]
    texts.append(_filler_of(max(2, max_length // 2), count_tokens))
    texts.append(_filler_of(max_length + 32, count_tokens))
    return texts


def _filler_of(tokens: int, count_tokens: Callable[[str], int] | None) -> str:
    """The filler text of the fewest words that is at least ``tokens`` tokens long (``tokens``
    words where nothing counts them)."""
    low, high = 1, tokens  # every word is at least one token: ``tokens`` words are enough
    while count_tokens is not None and low < high:
        middle = (low + high) // 2
        if count_tokens(filler_text(middle)) >= tokens:
            high = middle
        else:
            low = middle + 1
    return filler_text(high)


def short_check_texts() -> list[str]:
    """The check set without its two long texts: what torch-free ``verify`` runs as one padded
    batch (2-38 tokens under BERT's tokenizer: padding is still exercised). The long texts are
    checked one by one; in one batch they pad eight rows to the maximum length, which took 6.7 s
    of a 9 s verify of full-size distilbert here."""
    return ["", "a", *SENTENCES]
