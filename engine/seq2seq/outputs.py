"""What ``Seq2SeqLM`` returns: encoder states, teacher-forced logits, generated sequences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.numerics import log_softmax
from engine.seq2seq.decoding import DecodedTokens


@dataclass(frozen=True)
class EncoderOutput:
    """Encoder last hidden state ``[batch, source_len, d_model]``; ``attention_mask`` is 0 on
    padding, whose hidden states are meaningless."""

    last_hidden_state: np.ndarray
    attention_mask: np.ndarray


@dataclass(frozen=True)
class TargetLogits:
    """Teacher-forced decoder logits ``[batch, target_len, vocab]`` for tokenized targets.

    Position ``t`` holds the logits that predict ``target_ids[:, t]`` (EOS included); ``mask`` is 0
    where a shorter target was padded, and the logits there are meaningless.
    """

    logits: np.ndarray
    target_ids: np.ndarray
    mask: np.ndarray

    def target_log_probs(self) -> np.ndarray:
        """Log-probability of each target token ``[batch, target_len]``, 0 on padding."""
        picked = np.take_along_axis(log_softmax(self.logits), self.target_ids[..., None], axis=-1)
        return picked[..., 0] * self.mask


@dataclass(frozen=True)
class GeneratedSequence:
    """One generated output.

    ``token_ids`` are the generated ids without the decoder start token, ending with EOS when the
    model produced it. ``score`` is the summed log-probability over ``len(token_ids) **
    length_penalty`` (beam search's ``sequences_scores``); greedy decoding computes it only with
    ``output_scores``. The per-token arrays are present with ``output_scores``; ``step_logits``
    (``[len, vocab]``, the full logits of each step) with ``output_logits``.
    """

    text: str
    token_ids: np.ndarray
    score: float | None = None
    token_logprobs: np.ndarray | None = None
    token_logits: np.ndarray | None = None
    step_logits: np.ndarray | None = None
    cancelled: bool = False  # generate(cancelled=...) stopped it: no output (empty text, no ids)


def generated_sequence(
    decoded: DecodedTokens, index: int, text: str, length_penalty: float, scores: bool,
    full_logits: bool,
) -> GeneratedSequence:
    """Sequence ``index`` of a decoded batch, with its per-token scores when asked."""
    tokens = decoded.tokens[index, : decoded.lengths[index]]
    score = None if decoded.scores is None else float(decoded.scores[index])
    if not scores:
        return GeneratedSequence(text, tokens, score)
    path = decoded.path_logits(index)
    positions = np.arange(len(tokens))
    token_logprobs = log_softmax(path)[positions, tokens]
    if score is None:  # greedy: the beam search formula, for comparable numbers
        score = float(token_logprobs.astype(np.float64).sum() / len(tokens) ** length_penalty)
    return GeneratedSequence(
        text, tokens, score, token_logprobs, path[positions, tokens],
        path if full_logits else None,
    )
