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
_FILLER = [
    "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "it", "rains",
    "in", "spring",
]


def filler_text(words: int) -> str:
    """A deterministic English text of ``words`` words (at least one token each)."""
    return " ".join(_FILLER[index % len(_FILLER)] for index in range(words))


def check_texts(max_length: int, include_empty: bool = True) -> list[str]:
    """Texts for a parity check of a model whose inputs are limited to ``max_length`` tokens.

    The last one is over the limit (each word is at least one token): a classifier truncates it,
    T5 reads it whole. It is only a little over, because T5's attention memory grows with the
    square of the length in every padded row of the batch (2 x max_length took ~8 GB).
    """
    texts = ([""] if include_empty else []) + ["a", *SENTENCES]
    texts.append(filler_text(max(2, max_length // 2)))
    texts.append(filler_text(max_length + 32))
    return texts


def short_check_texts() -> list[str]:
    """The check set without its two long texts: what torch-free ``verify`` runs as one padded
    batch (2-38 tokens under BERT's tokenizer: padding is still exercised). The long texts are
    checked one by one; in one batch they pad eight rows to the maximum length, which took 6.7 s
    of a 9 s verify of full-size distilbert here."""
    return ["", "a", *SENTENCES]
