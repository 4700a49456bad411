"""The seq2seq decode loop and the strategies that pick tokens.

``run_decoder`` drives the graphs (:mod:`engine.seq2seq.graphs`, the only code that runs them):
``decoder_model`` once, then ``decoder_with_past`` per token. A strategy (greedy, beam search,
forced tokens) decides after each step which token each row feeds next and whether cache rows move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engine.errors import CorruptArtifactError
from engine.numerics import log_softmax
from engine.seq2seq.graphs import EncoderState, Seq2SeqGraphs


@dataclass(frozen=True)
class GenerationSettings:
    """Token ids and limits of generation, recorded in the manifest at export.

    T5 starts decoding from ``decoder_start_token_id`` (its pad token) rather than a BOS token, and
    ``max_length`` counts that start token, as ``transformers``' generation config does.
    """

    decoder_start_token_id: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    max_length: int
    vocab_size: int | None = None

    @classmethod
    def from_manifest(cls, generation: Mapping[str, Any]) -> GenerationSettings:
        """Read the manifest's ``generation`` section.

        Raises:
            CorruptArtifactError: a required id is missing (the artifact is not a seq2seq export).
        """
        try:
            eos = generation["eos_token_id"]
            return cls(
                decoder_start_token_id=int(generation["decoder_start_token_id"]),
                eos_token_ids=tuple(int(i) for i in (eos if isinstance(eos, list) else [eos])),
                pad_token_id=int(generation["pad_token_id"]),
                max_length=int(generation.get("max_length", 20)),
                vocab_size=int(generation["vocab_size"]) if "vocab_size" in generation else None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptArtifactError(
                f"The manifest's 'generation' section lacks or garbles {error}: re-export the "
                "artifact with --task text2text-generation."
            ) from error

    @property
    def default_max_new_tokens(self) -> int:
        return max(1, self.max_length - 1)


@dataclass(frozen=True)
class StepDecision:
    """What a strategy wants after a step: next ids per row (None: stop) and cache row moves.

    ``expand`` repeats every row first (beam search turns one row per input into ``num_beams``
    after the first step); ``reorder`` then picks cache rows by index.
    """

    next_ids: np.ndarray | None
    reorder: np.ndarray | None = None
    expand: int = 1


class DecodeStrategy(Protocol):
    def advance(self, logits: np.ndarray) -> StepDecision:
        """Take the last-position logits ``[rows, vocab]`` of a step and decide the next one."""


def run_decoder(
    graphs: Seq2SeqGraphs, encoder: EncoderState, start_ids: np.ndarray, strategy: DecodeStrategy,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Decode with the KV cache until the strategy stops: ``decoder`` once, then with-past steps.

    ``should_stop``, when given, is asked between steps; True ends decoding there (the caller
    has nothing left to decode for, e.g. every input was cancelled).
    """
    mask = encoder.mask
    logits, cache = graphs.first_step(start_ids.reshape(-1, 1), encoder)
    while True:
        decision = strategy.advance(logits[:, -1, :])
        if decision.next_ids is None or (should_stop is not None and should_stop()):
            return
        if decision.expand > 1:
            cache = cache.expanded(decision.expand)
            mask = np.repeat(mask, decision.expand, axis=0)
        if decision.reorder is not None:
            cache = cache.reordered(decision.reorder)
        logits, cache = graphs.next_step(decision.next_ids.reshape(-1, 1), cache, mask)


@dataclass(frozen=True)
class DecodedTokens:
    """Generated ids of a batch and where each step's logits are, for per-token scores.

    ``rows[i, t]`` is the row of ``step_logits[t]`` that produced token ``t`` of sequence ``i``
    (beam search moves sequences between rows). ``step_logits`` is kept only when scores are asked.
    """

    tokens: np.ndarray  # [batch, steps decoded], valid up to lengths[i]
    lengths: np.ndarray  # [batch], generated tokens including a final EOS
    rows: np.ndarray  # [batch, steps decoded]
    scores: np.ndarray | None  # [batch] sequence scores (beam search), else None
    step_logits: list[np.ndarray] | None

    def token_rows(self) -> list[np.ndarray]:
        """The generated ids of each sequence, cut at its length."""
        return [row[:length] for row, length in zip(self.tokens, self.lengths)]

    def path_logits(self, index: int) -> np.ndarray:
        """The full logits ``[length, vocab]`` of each step along sequence ``index``'s path."""
        if self.step_logits is None:
            raise ValueError("step logits were not kept; decode with keep_logits=True")
        return np.stack(
            [self.step_logits[t][self.rows[index, t]] for t in range(int(self.lengths[index]))]
        )


def room_for(array: np.ndarray, step: int, limit: int, fill: int) -> np.ndarray:
    """``array`` (tokens along the last axis) with a column for ``step``, grown by doubling.

    Buffers follow the tokens actually produced, not the ``max_new_tokens`` asked for: a request
    for a billion tokens that ends at EOS after ten costs ten columns, and growth by doubling
    keeps the copying amortized O(1) per token.
    """
    width = array.shape[-1]
    if step < width:
        return array
    grown = np.full((*array.shape[:-1], min(max(2 * width, 8), limit)), fill, dtype=array.dtype)
    grown[..., :width] = array
    return grown


@dataclass(frozen=True)
class StepTokens:
    """The tokens one greedy step produced, for the rows that were still decoding.

    ``rows[j]`` (a row of the batch, i.e. a text of the call) produced ``token_ids[j]`` with
    log-probability ``logprobs[j]`` (log-softmax of that step's logits, as ``output_scores``
    gives it); ``finished[j]``: that token is the row's last (EOS, or ``max_new_tokens``).
    Rows that had finished, or were retired (cancelled), are absent.
    """

    rows: np.ndarray
    token_ids: np.ndarray
    logprobs: np.ndarray
    finished: np.ndarray

    def shifted(self, first: int) -> StepTokens:
        """The same tokens with rows counted from ``first`` (a chunk's place in its call)."""
        return StepTokens(self.rows + first, self.token_ids, self.logprobs, self.finished)


OnStep = Callable[[StepTokens], None]


class GreedySearch:
    """Greedy decoding as ``transformers`` does it: argmax, then pad once a row has hit EOS.

    ``on_step``, when given, receives each step's new tokens (:class:`StepTokens`) as soon as
    they are chosen, before the next decoder step runs: what a server streams. Without it a
    step costs nothing more.
    """

    def __init__(
        self, batch: int, max_new_tokens: int, eos_ids: tuple[int, ...], pad_id: int,
        keep_logits: bool = False, on_step: OnStep | None = None,
    ) -> None:
        self.max_new_tokens = max_new_tokens
        self.tokens = np.full((batch, 0), pad_id, dtype=np.int64)
        self.lengths = np.zeros(batch, dtype=np.int64)
        self.unfinished = np.ones(batch, dtype=bool)
        self.eos_ids = np.array(eos_ids, dtype=np.int64)
        self.pad_id = pad_id
        self.step_logits: list[np.ndarray] | None = [] if keep_logits else None
        self.on_step = on_step
        self._step = 0

    def advance(self, logits: np.ndarray) -> StepDecision:
        live = self.unfinished.copy()
        chosen = np.where(live, np.argmax(logits, axis=-1), self.pad_id)
        self.tokens = room_for(self.tokens, self._step, self.max_new_tokens, self.pad_id)
        self.tokens[:, self._step] = chosen
        self.lengths += live
        if self.step_logits is not None:
            self.step_logits.append(logits)
        self.unfinished &= ~np.isin(chosen, self.eos_ids)
        self._step += 1
        last = self._step == self.max_new_tokens
        if self.on_step is not None and live.any():
            self.on_step(self._step_tokens(logits, chosen, live, last))
        if not self.unfinished.any() or last:
            return StepDecision(None)
        return StepDecision(chosen)

    def _step_tokens(
        self, logits: np.ndarray, chosen: np.ndarray, live: np.ndarray, last: bool
    ) -> StepTokens:
        rows = np.flatnonzero(live)
        tokens = chosen[rows]
        logprobs = log_softmax(logits[rows])[np.arange(len(rows)), tokens]
        finished = np.ones(len(rows), bool) if last else ~self.unfinished[rows]
        return StepTokens(rows, tokens, logprobs, finished)

    def retire(self, inputs: np.ndarray) -> bool:
        """End the rows of ``inputs`` (a bool per input) as if they hit EOS; True: none is left."""
        self.unfinished &= ~inputs
        return not self.unfinished.any()

    def result(self) -> DecodedTokens:
        tokens = self.tokens[:, : self._step]
        batch, width = tokens.shape
        rows = np.broadcast_to(np.arange(batch)[:, None], (batch, width))
        return DecodedTokens(tokens, self.lengths, rows, None, self.step_logits)


class ForcedDecoding:
    """Feeds given decoder inputs one token per step and keeps every step's logits.

    Teacher forcing through the KV cache: its logits must equal one ``decoder_model`` call on the
    whole input, which is how export checks the cached path.
    """

    def __init__(self, decoder_inputs: np.ndarray) -> None:
        self.decoder_inputs = decoder_inputs
        self.step_logits: list[np.ndarray] = []

    def advance(self, logits: np.ndarray) -> StepDecision:
        self.step_logits.append(logits)
        step = len(self.step_logits)
        if step == self.decoder_inputs.shape[1]:
            return StepDecision(None)
        return StepDecision(self.decoder_inputs[:, step])

    def logits(self) -> np.ndarray:
        """``[rows, steps, vocab]``."""
        return np.stack(self.step_logits, axis=1)
