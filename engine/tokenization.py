"""Tokenization with the `tokenizers` library, reproducing ``AutoTokenizer`` ids exactly.

A ``tokenizer.json`` saved by transformers may carry fixed padding/truncation settings (the
all-MiniLM package pads everything to 128); they are cleared and replaced by the artifact's own:
pad to the longest text in the batch, truncate at the model's maximum length.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from engine.artifact import TOKENIZER_NAME, Artifact
from engine.checks import check_int
from engine.errors import ArtifactNotFoundError, CorruptArtifactError, InputError

logger = logging.getLogger(__name__)

# A bounded reader of a text looks at most this many characters per token of its bound (see
# TextTokenizer.bounded). Prose takes 4-6 characters per token, code and URLs fewer, CJK 1-2; a
# text that needs more than 32 (long runs of spaces, words the vocabulary cannot split) is
# refused past the cap rather than cut where the cut could change its tokens.
CHARS_PER_TOKEN = 32
# Pre-tokens at the end of a cut prefix whose tokens may differ from the whole text's: the one
# the cut falls in, and the one before it, for a pre-tokenizer that looks one character ahead
# (ByteLevel's whitespace rule) or a normalizer that composes across the cut (NFC).
_UNSAFE_TAIL_WORDS = 2


@dataclass(frozen=True)
class EncodedBatch:
    """Token ids of a batch as the int64 arrays ONNX graphs take; padded positions have mask 0.

    ``encodings`` are the ``tokenizers`` encodings the arrays came from, for callers that read
    more of a token than its id (offsets, special-token masks); empty where none were kept.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    encodings: tuple[Encoding, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_encodings(cls, encodings: Sequence[Encoding]) -> EncodedBatch:
        """The arrays of a batch the tokenizer padded to one length."""
        return cls(
            input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
            attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
            token_type_ids=np.array([e.type_ids for e in encodings], dtype=np.int64),
            encodings=tuple(encodings),
        )

    def feeds(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


class TextTokenizer:
    """Turns texts into padded id arrays and ids back into text.

    Two configured copies of the tokenizer are kept, one cutting at ``max_length`` and one not,
    because ``tokenizers`` holds truncation as state: switching it per call would race between
    threads that share a model (a server's batches).
    """

    def __init__(
        self, tokenizer: Tokenizer, max_length: int, pad_id: int, pad_token: str,
        truncation_length: int | None = None,
    ) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self._whole = Tokenizer.from_str(tokenizer.to_str())
        self.truncation_length = truncation_length or max_length
        tokenizer.enable_truncation(max_length=self.truncation_length)
        self._tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = pad_id
        self.pad_token = pad_token

    def truncating_at(self, length: int) -> TextTokenizer:
        """A copy whose ``truncation=True`` cuts at ``length`` tokens (a server's input bound).

        ``max_length`` stays the model's: it is what the model reads and may produce, not what
        a caller chose to let in.
        """
        return TextTokenizer(Tokenizer.from_str(self._whole.to_str()), self.max_length,
                             self.pad_id, self.pad_token, truncation_length=length)

    @classmethod
    def from_file(cls, path: Path, max_length: int, pad_id: int, pad_token: str) -> TextTokenizer:
        """Load ``tokenizer.json``.

        Raises:
            ArtifactNotFoundError: the file does not exist.
            CorruptArtifactError: the file is not a valid tokenizers JSON.
        """
        path = Path(path)
        if not path.is_file():
            raise ArtifactNotFoundError(f"Tokenizer file '{path}' does not exist. Re-export it.")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises a bare Exception on parse errors
            raise CorruptArtifactError(
                f"'{path}' is not a valid tokenizer.json ({error}). Re-export the artifact."
            ) from error
        return cls(tokenizer, max_length=max_length, pad_id=pad_id, pad_token=pad_token)

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> TextTokenizer:
        """The artifact's tokenizer with its maximum length and padding token from the manifest.

        Raises:
            ArtifactError: tokenizer.json is missing, changed since export or unparsable.
        """
        manifest = artifact.manifest
        return cls.from_file(
            artifact.verified_file(TOKENIZER_NAME),
            max_length=manifest.max_length,
            pad_id=manifest.tokenizer.pad_id,
            pad_token=manifest.tokenizer.pad_token,
        )

    def encode(
        self, texts: Sequence[TextInput], truncation: bool = True, what: str = "text"
    ) -> EncodedBatch:
        """Tokenize a batch of texts or ``(text, pair)`` tuples, padded to the longest.

        With ``truncation`` sequences are cut at ``max_length`` (longest-first for pairs, as
        ``AutoTokenizer(truncation=True)``). Without it they are kept whole, and a text longer
        than ``max_length`` is logged as the tokenizer of ``transformers`` warns about it.
        """
        tokenizer = self._tokenizer if truncation else self._whole
        encodings = tokenizer.encode_batch(list(texts))
        if not truncation:
            for index, encoding in enumerate(encodings):
                if len(encoding.ids) > self.max_length:
                    logger.warning(
                        "%s #%d has %d tokens, more than the model's max length %d: it is used "
                        "whole, as transformers does; pass truncation=True to cut it.",
                        what, index, len(encoding.ids), self.max_length,
                    )
        return EncodedBatch.from_encodings(encodings)

    @property
    def backend(self) -> Tokenizer:
        """The ``tokenizers`` tokenizer ``encode`` uses (cutting at ``truncation_length``), for
        callers that read more of an encoding than its ids: offsets, special-token masks."""
        return self._tokenizer

    def bounded(self, texts: Sequence[TextInput], max_tokens: int) -> list[BoundedInput]:
        """Measure each input against ``max_tokens`` reading at most :func:`char_cap` characters
        of each text (each half of a pair), so the cost follows the bound, never the input.

        An input within the cap is tokenized whole: its count is exact. Of a longer one only the
        first ``char_cap`` characters are tokenized; it is ``cut`` to them when they prove that
        the cut changes none of the tokens that truncation at ``max_tokens`` keeps: tokens
        depend only on their own pre-token (word), so the tokens of every word before the last
        two of the prefix are the whole text's, and if those are ``max_tokens`` or more, the
        kept ones are among them. Otherwise (a long run without word boundaries, mostly
        whitespace, or a pair whose halves are both over the cap) it is not ``readable``.
        """
        cap = char_cap(max_tokens)
        short = [i for i, text in enumerate(texts) if max(_half_chars(text)) <= cap]
        measured = {
            index: BoundedInput(texts[index], int(sum(encoding.attention_mask)))
            for index, encoding in zip(short, self._whole.encode_batch([texts[i] for i in short]))
        }
        return [
            measured[index] if index in measured else self._bounded_long(text, max_tokens, cap)
            for index, text in enumerate(texts)
        ]

    def _bounded_long(self, text: TextInput, max_tokens: int, cap: int) -> BoundedInput:
        halves = [self._read_half(half, cap)
                  for half in ((text,) if isinstance(text, str) else text)]
        readable = all(half.safe is None or half.safe >= max_tokens for half in halves)
        if len(halves) == 2 and readable:
            # Longest-first pair truncation gives the longer half the odd token: the cut half
            # must stay the longer one, and with both halves cut which one is longer is unknown.
            cut, whole = sorted(halves, key=lambda half: half.safe is None)
            readable = whole.safe is None and cut.safe is not None and cut.safe > whole.tokens
        tokens = sum(half.tokens for half in halves)
        tokens += self._whole.num_special_tokens_to_add(len(halves) == 2)
        read: TextInput = halves[0].text if len(halves) == 1 else (halves[0].text, halves[1].text)
        return BoundedInput(read, tokens, cut=True, readable=readable)

    def _read_half(self, text: str, cap: int) -> _ReadHalf:
        """One text (or half of a pair) read up to ``cap`` characters, without special tokens."""
        if len(text) <= cap:
            return _ReadHalf(text, len(self._whole.encode(text, add_special_tokens=False).ids))
        words = self._whole.encode(text[:cap], add_special_tokens=False).word_ids
        last_word = max((word for word in words if word is not None), default=0)
        last_safe = last_word - _UNSAFE_TAIL_WORDS
        safe = sum(1 for word in words if word is not None and word <= last_safe)
        return _ReadHalf(text[:cap], len(words), safe)

    def decode(
        self, ids: Sequence[Sequence[int] | np.ndarray], skip_special_tokens: bool = True
    ) -> list[str]:
        return self._tokenizer.decode_batch(
            [list(map(int, row)) for row in ids], skip_special_tokens=skip_special_tokens
        )

    def token_to_text(self, token_id: int) -> str:
        return self._tokenizer.id_to_token(int(token_id)) or f"<{token_id}>"


TextInput = str | tuple[str, str]


def char_cap(max_tokens: int) -> int:
    """Characters of a text a bounded reader tokenizes for a ``max_tokens`` bound."""
    return CHARS_PER_TOKEN * max_tokens


@dataclass(frozen=True)
class BoundedInput:
    """One input as :meth:`TextTokenizer.bounded` measured it.

    Attributes:
        text: what to tokenize: the input, or when ``cut`` its first ``char_cap`` characters
            (per half), which truncation at the bound turns into the same ids as the input.
        tokens: tokens (special tokens included) of the input; when ``cut``, of the prefix
            read (a lower bound: the input has more).
        cut: the input is over the character cap, so ``text`` is a prefix of it.
        readable: a cut that provably keeps the truncated ids (always true when not cut).
    """

    text: TextInput
    tokens: int
    cut: bool = False
    readable: bool = True

    def over(self, max_tokens: int) -> bool:
        """The input has more than ``max_tokens`` tokens (a readable cut one always has)."""
        return self.tokens > max_tokens or (self.cut and self.readable)


@dataclass(frozen=True)
class _ReadHalf:
    """A text as read: its first characters up to the cap, their tokens, and (when it was cut)
    how many of those belong to words the cut cannot have changed."""

    text: str
    tokens: int
    safe: int | None = None


def _half_chars(text: TextInput) -> tuple[int, ...]:
    return (len(text),) if isinstance(text, str) else (len(text[0]), len(text[1]))


def as_text_list(
    texts: object, what: str = "text", allow_pairs: bool = False
) -> tuple[list[TextInput], bool]:
    """Normalize one input or a sequence of inputs to a list, and say whether one was given.

    An input is a string or, with ``allow_pairs``, a ``{"text": ..., "text_pair": ...}`` dict as
    ``transformers.pipeline`` takes it (sentence-pair models: NLI, cross-encoder rerankers); a
    pair becomes a ``(text, text_pair)`` tuple, which `tokenizers` encodes as two segments.

    Raises:
        InputError: not a string (or pair) or a sequence of them, or an empty sequence.
    """
    if isinstance(texts, (list, tuple)):
        if not texts:
            raise InputError(f"Got an empty list of {what}s; pass at least one string.")
        items = [_as_input(item, what, allow_pairs, index) for index, item in enumerate(texts)]
        return items, False
    return [_as_input(texts, what, allow_pairs)], True


def _as_input(item: object, what: str, allow_pairs: bool, index: int | None = None) -> TextInput:
    name = what if index is None else f"{what} #{index}"
    if isinstance(item, str):
        return checked_unicode(item, name)
    if (allow_pairs and isinstance(item, dict) and "text" in item
            and set(item) <= {"text", "text_pair"}):
        text, pair = item["text"], item.get("text_pair")
        if isinstance(text, str) and (pair is None or isinstance(pair, str)):
            text = checked_unicode(text, name)
            return text if pair is None else (text, checked_unicode(pair, f"{name} text_pair"))
    expected = 'a string or a {"text": ..., "text_pair": ...} dict' if allow_pairs else "a string"
    raise InputError(
        f"{name} is {type(item).__name__} ({item!r:.40}), not {expected}. Pass {expected} or a "
        f"list of them."
    )


def checked_unicode(text: str, name: str) -> str:
    """``text`` if it is valid Unicode; a lone surrogate (e.g. from undecodable bytes) is refused.

    Raises:
        InputError: names the input and the character position.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError(
            f"{name} is not valid Unicode: character {error.start} is a lone surrogate "
            f"({text[error.start]!r}), which usually comes from bytes that were not UTF-8. "
            "Decode the input as UTF-8 (or remove that character)."
        ) from None
    return text


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` if it is a positive integer.

    Raises:
        InputError: it is not.
    """
    return check_int("batch_size", batch_size)
