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
# A text, or a (text, pair) of two segments (sentence-pair models: NLI, cross-encoders).
TextInput = str | tuple[str, str]


@dataclass(frozen=True)
class EncodedRow:
    """One input as the model reads it: its tokens (special tokens included, no padding).

    What a server queues in place of the text, so that the text is tokenized once: its token
    count is the batcher's cost, and a batch is these rows padded (:meth:`EncodedBatch.from_rows`).
    ``cut`` says truncation dropped tokens; ``text`` is the input the ``encoding`` (offsets,
    special-token mask) describes.
    """

    ids: np.ndarray
    attention_mask: np.ndarray
    type_ids: np.ndarray
    text: TextInput = field(compare=False, repr=False)
    encoding: Encoding = field(compare=False, repr=False)
    cut: bool = False

    @classmethod
    def from_encoding(cls, text: TextInput, encoding: Encoding) -> EncodedRow:
        return cls(
            ids=np.array(encoding.ids, dtype=np.int64),
            attention_mask=np.array(encoding.attention_mask, dtype=np.int64),
            type_ids=np.array(encoding.type_ids, dtype=np.int64),
            text=text,
            encoding=encoding,
            cut=bool(encoding.overflowing),
        )

    @property
    def tokens(self) -> int:
        """Tokens the model reads for this input (after truncation, special tokens included)."""
        return len(self.ids)


@dataclass(frozen=True)
class EncodedBatch:
    """Token ids of a batch as the int64 arrays ONNX graphs take; padded positions have mask 0.

    ``rows`` are the unpadded rows the arrays were made of, for callers that read more of a
    token than its id (offsets, special-token masks: ``row.encoding``).
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    rows: tuple[EncodedRow, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_rows(cls, rows: Sequence[EncodedRow], pad_id: int) -> EncodedBatch:
        """The rows padded on the right to the longest: ``pad_id``, mask 0 and type id 0, as
        the tokenizer of ``transformers`` pads (``padding=True``)."""
        width = max(row.tokens for row in rows)
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, : row.tokens] = row.ids
            attention_mask[index, : row.tokens] = row.attention_mask
            token_type_ids[index, : row.tokens] = row.type_ids
        return cls(input_ids, attention_mask, token_type_ids, tuple(rows))

    def feeds(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


class TextTokenizer:
    """Turns texts into rows of ids (:meth:`encode_rows`), padded batches, and ids back into text.

    Two configured copies of the tokenizer are kept, one cutting at ``max_length`` and one not,
    because ``tokenizers`` holds truncation as state: switching it per call would race between
    threads that share a model (a server's batches). Neither pads: rows are padded when they
    are batched (:meth:`EncodedBatch.from_rows`), so a row encoded once can join any batch.
    """

    def __init__(
        self, tokenizer: Tokenizer, max_length: int, pad_id: int, pad_token: str,
        truncation_length: int | None = None,
    ) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
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
        """Tokenize a batch of texts or ``(text, pair)`` tuples, padded to the longest (see
        :meth:`encode_rows`)."""
        return EncodedBatch.from_rows(self.encode_rows(texts, truncation, what), self.pad_id)

    def encode_rows(
        self, texts: Sequence[TextInput], truncation: bool = True, what: str = "text"
    ) -> list[EncodedRow]:
        """Each text or ``(text, pair)`` tuple as the row of ids the model reads.

        With ``truncation`` sequences are cut at ``truncation_length`` (longest-first for pairs,
        as ``AutoTokenizer(truncation=True)``). Without it they are kept whole, and a text longer
        than ``max_length`` is logged as the tokenizer of ``transformers`` warns about it.
        """
        tokenizer = self._tokenizer if truncation else self._whole
        rows = [EncodedRow.from_encoding(text, encoding)
                for text, encoding in zip(texts, tokenizer.encode_batch(list(texts)))]
        if not truncation:
            for index, row in enumerate(rows):
                if row.tokens > self.max_length:
                    logger.warning(
                        "%s #%d has %d tokens, more than the model's max length %d: it is used "
                        "whole, as transformers does; pass truncation=True to cut it.",
                        what, index, row.tokens, self.max_length,
                    )
        return rows

    def count(self, text: TextInput) -> int:
        """Tokens of the whole ``text`` (special tokens included), with no truncation."""
        encoding = (self._whole.encode(text) if isinstance(text, str)
                    else self._whole.encode(*text))
        return len(encoding.ids)

    @property
    def backend(self) -> Tokenizer:
        """The ``tokenizers`` tokenizer ``encode`` uses (cutting at ``truncation_length``), for
        callers that read more of an encoding than its ids: offsets, special-token masks."""
        return self._tokenizer

    def bounded(self, texts: Sequence[TextInput]) -> list[BoundedInput]:
        """Measure each input against the bound ``truncation_length`` reading at most
        :func:`char_cap` characters of each text (each half of a pair), so the cost follows the
        bound, never the input.

        An input within the cap is tokenized once, truncating at the bound: its ``row`` is what
        the model reads, and whether truncation cut it says whether it is over the bound. Of a
        longer one only the first ``char_cap`` characters are tokenized; it is ``cut`` to them
        when they prove that the cut changes none of the tokens that truncation at the bound
        keeps: tokens depend only on their own pre-token (word), so the tokens of every word
        before the last two of the prefix are the whole text's, and if those are the bound or
        more, the kept ones are among them. Otherwise (a long run without word boundaries,
        mostly whitespace, or a pair whose halves are both over the cap) it is not ``readable``.
        """
        max_tokens = self.truncation_length
        cap = char_cap(max_tokens)
        short = [i for i, text in enumerate(texts) if max(_half_chars(text)) <= cap]
        measured = {
            index: BoundedInput(row.text, row.tokens, over=row.cut, row=row)
            for index, row in zip(short, self.encode_rows([texts[i] for i in short]))
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
        return BoundedInput(read, tokens, over=readable, readable=readable)

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



def char_cap(max_tokens: int) -> int:
    """Characters of a text a bounded reader tokenizes for a ``max_tokens`` bound."""
    return CHARS_PER_TOKEN * max_tokens


@dataclass(frozen=True)
class BoundedInput:
    """One input as :meth:`TextTokenizer.bounded` measured it.

    Attributes:
        text: what was read: the input, or when ``cut`` its first ``char_cap`` characters
            (per half), which truncation at the bound turns into the same ids as the input.
        tokens: tokens (special tokens included) of ``row``; when ``cut``, of the prefix read
            without truncation (a lower bound: the input has more).
        over: the input has more tokens than the bound (a readable cut one always has; of
            an unreadable one it is unknown, and False).
        row: the input encoded as the model reads it, truncated at the bound; ``None`` when
            ``cut`` (encode ``text`` to get it).
        readable: a cut that provably keeps the truncated ids (always true when not cut).
    """

    text: TextInput
    tokens: int
    over: bool
    row: EncodedRow | None = None
    readable: bool = True

    @property
    def cut(self) -> bool:
        """The input is over the character cap, so ``text`` is a prefix of it."""
        return self.row is None


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
