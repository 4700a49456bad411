"""text-generation-inference's token objects, as ``huggingface_hub`` parses them.

TGI answers every generated token as ``{"id", "text", "logprob", "special"}``: in each event of
a stream (``TextGenerationStreamOutput``) and in ``details.tokens`` of a whole answer
(``TextGenerationOutput``). A token's ``text`` is what it adds to the decoded output, so the
non-special texts of a sequence concatenate to its ``generated_text``; a special token (EOS,
T5's sentinels) carries its own spelling and adds nothing, as in TGI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.tokenization import TextTokenizer

_INCOMPLETE = "\ufffd"  # a byte-fallback character whose other bytes are still to come


@dataclass(frozen=True)
class TokenVocabulary:
    """What spelling tokens needs from a model: its tokenizer, special ids and EOS ids."""

    tokenizer: TextTokenizer
    special_ids: frozenset[int]
    eos_ids: frozenset[int]

    @classmethod
    def of(cls, tokenizer: TextTokenizer, eos_ids: Sequence[int]) -> TokenVocabulary:
        added = tokenizer.backend.get_added_tokens_decoder()
        special = frozenset(int(i) for i, token in added.items() if token.special)
        return cls(tokenizer, special | frozenset(eos_ids), frozenset(eos_ids))

    def finish_reason(self, token_ids: Sequence[int]) -> str:
        """TGI's ``finish_reason`` of a whole sequence: ``eos_token`` or ``length``."""
        return "eos_token" if token_ids and int(token_ids[-1]) in self.eos_ids else "length"

    def text(self, token_ids: Sequence[int]) -> str:
        """The decoded output, as the engine decodes it (special tokens skipped)."""
        return self.tokenizer.decode([token_ids])[0]


class TokenSpeller:
    """Each token's text as it arrives, the way TGI's incremental detokenizer does it.

    Decoding a token alone loses what it means next to its neighbours (the "▁" of a
    sentencepiece word, half of a UTF-8 character), and decoding the whole sequence at every
    token costs its length each time: so the text of a token is the difference between decoding
    a short window ending with it and the same window without it. The window moves on once a
    token yields complete text; a token ending inside a character yields "" and its text comes
    with the next one (or with the last token, whatever is left).
    """

    def __init__(self, vocabulary: TokenVocabulary) -> None:
        self._vocabulary = vocabulary
        self._ids: list[int] = []  # the non-special ids so far
        self._prefix = 0  # the window: ids[_prefix:_read] are spelled already
        self._read = 0

    def token(self, token_id: int, logprob: float, last: bool = False) -> dict[str, Any]:
        """TGI's token object for the next token of the sequence."""
        token_id = int(token_id)
        special = token_id in self._vocabulary.special_ids
        if special:
            text = self._vocabulary.tokenizer.token_to_text(token_id)
            if last:  # whatever incomplete text is pending goes with the last token
                text = self._pending() + text
        else:
            self._ids.append(token_id)
            text = self._next_text(last)
        return {"id": token_id, "text": text, "logprob": float(logprob), "special": special}

    def _next_text(self, last: bool) -> str:
        decode = self._vocabulary.text
        before = decode(self._ids[self._prefix : self._read])
        after = decode(self._ids[self._prefix :])
        if not last and (len(after) <= len(before) or after.endswith(_INCOMPLETE)):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]

    def _pending(self) -> str:
        if self._read == len(self._ids):
            return ""
        return self._next_text(last=True)


def spelled(vocabulary: TokenVocabulary, token_ids: Sequence[int],
            logprobs: Sequence[float]) -> list[dict[str, Any]]:
    """The token objects of a whole sequence (``details.tokens`` of a TGI answer)."""
    speller = TokenSpeller(vocabulary)
    count = len(token_ids)
    return [speller.token(token_id, logprob, index == count - 1)
            for index, (token_id, logprob) in enumerate(zip(token_ids, logprobs))]


def answer_details(vocabulary: TokenVocabulary, token_ids: Sequence[int],
                   logprobs: Sequence[float]) -> dict[str, Any]:
    """``details`` of a whole TGI answer (``TextGenerationOutputDetails``). Sampling is never
    used, so ``seed`` is null; ``prefill`` (the prompt's tokens) is sent only when asked
    (``decoder_input_details``), which this server refuses."""
    return {
        "finish_reason": vocabulary.finish_reason(token_ids),
        "generated_tokens": len(token_ids),
        "seed": None,
        "prefill": [],
        "tokens": spelled(vocabulary, token_ids, logprobs),
        "top_tokens": None,
    }


def stream_details(vocabulary: TokenVocabulary, token_ids: Sequence[int],
                   input_length: int) -> dict[str, Any]:
    """``details`` of a stream's last event (``TextGenerationStreamOutputStreamDetails``)."""
    return {
        "finish_reason": vocabulary.finish_reason(token_ids),
        "generated_tokens": len(token_ids),
        "input_length": input_length,
        "seed": None,
    }


def stream_event(index: int, token: dict[str, Any], generated_text: str | None = None,
                 details: dict[str, Any] | None = None) -> dict[str, Any]:
    """One event of a TGI stream: ``generated_text`` (and ``details``, when asked) come with the
    last token only."""
    return {"index": index, "token": token, "top_tokens": None,
            "generated_text": generated_text, "details": details}
