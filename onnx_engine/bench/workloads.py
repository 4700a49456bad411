"""Benchmark inputs: batches of texts that tokenize to exactly the asked sequence length.

A "seq 128" workload must feed the model 128 positions, special tokens included, for every
contender; otherwise a tokenizer that splits words differently changes the compute being timed.
Both WordPiece (BERT) and SentencePiece (T5) split at whitespace first, so a text's length is its
special tokens plus the sum of its words' lengths: texts are assembled word by word from that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from onnx_engine.bench.errors import BenchError

# Plain English words; most are one token for real vocabularies, several for small trained ones.
_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "it", "rains",
    "in", "spring", "and", "the", "cat", "sat", "on", "mat", "near", "house", "with", "green",
    "garden", "where", "children", "play", "every", "day", "after", "school", "until", "dinner",
)
_FILLERS = tuple("abcdefghijklmnopqrstuvwxyz0123456789.,")  # short pieces to hit a length exactly


@dataclass(frozen=True)
class Workload:
    """One benchmark input shape: ``batch`` texts of exactly ``seq`` tokens each."""

    batch: int
    seq: int
    texts: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"b{self.batch} s{self.seq}"


class WorkloadFactory:
    """Builds texts of exact token lengths for one tokenizer (an artifact's ``tokenizer.json``)."""

    def __init__(self, tokenizer_file: Path, max_length: int) -> None:
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.max_length = max_length
        self._specials = self.length("")
        self._costs = {word: self.length(word) - self._specials for word in _WORDS + _FILLERS}

    def length(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens included."""
        return len(self._tokenizer.encode(text).ids)

    def text(self, seq: int, variant: int = 0) -> str:
        """A text of exactly ``seq`` tokens; ``variant`` rotates the words so rows differ.

        Raises:
            BenchError: ``seq`` is below the special tokens, above ``max_length``, or cannot be
                reached exactly with this vocabulary.
        """
        if not self._specials <= seq <= self.max_length:
            raise BenchError(
                f"seq {seq} is outside [{self._specials}, {self.max_length}] for this model "
                f"({self._specials} special tokens, max_length {self.max_length})."
            )
        words: list[str] = []
        remaining = seq - self._specials
        index = variant
        for _ in range(4 * seq + len(_WORDS)):
            if remaining == 0:
                break
            pool = _WORDS if remaining > 2 else _WORDS + _FILLERS
            word = pool[index % len(pool)]
            index += 1
            cost = self._costs[word]
            if 0 < cost <= remaining:
                words.append(word)
                remaining -= cost
        text = " ".join(words)
        if remaining or self.length(text) != seq:
            raise BenchError(f"Could not build a text of exactly {seq} tokens for this tokenizer.")
        return text

    def workload(self, batch: int, seq: int) -> Workload:
        if batch < 1:
            raise BenchError(f"batch must be a positive integer, got {batch}.")
        return Workload(batch, seq, tuple(self.text(seq, variant=row) for row in range(batch)))
