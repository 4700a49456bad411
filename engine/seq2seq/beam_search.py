"""Beam search in NumPy, step for step the algorithm of ``transformers`` 4.57 ``generate``.

Matching it exactly (same sequences, same ``sequences_scores``) means copying its choices, not just
its idea: each step keeps the ``2 * num_beams`` best continuations over all beams of an input (so
``num_beams`` remain even if the best ones all end in EOS); only finished continuations ranked in
the first ``num_beams`` may enter the finished set; a finished score is the summed log-probability
divided by ``generated_length ** length_penalty`` (EOS counted); and an input stops early when no
running beam can beat its worst finished one (``early_stopping`` False: judged at the current
length; ``"never"``: at the maximum length when ``length_penalty > 0``; True: as soon as
``num_beams`` sequences finished). Scores are float32 and "impossible" is -1e9, as there.
"""

from __future__ import annotations

import numpy as np

from engine.errors import InputError
from engine.numerics import log_softmax
from engine.seq2seq.decoding import DecodedTokens, StepDecision, room_for

_IMPOSSIBLE = np.float32(-1.0e9)


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest values per row, best first (ties: lower index first)."""
    if k < values.shape[1]:
        candidates = np.argpartition(-values, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    picked = np.take_along_axis(values, candidates, axis=1)
    order = np.lexsort((candidates, -picked), axis=1)
    return np.take_along_axis(candidates, order, axis=1)


def _gather(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``array[b, indices[b, j], ...]`` for arrays shaped ``[batch, beams, ...]``."""
    index = indices.reshape(indices.shape + (1,) * (array.ndim - 2))
    return np.take_along_axis(array, index, axis=1)


class BeamSearch:
    """Decode strategy for ``run_decoder``; the first step sees one row per input, later ones
    ``num_beams`` rows per input (input ``b``'s beams are rows ``b*num_beams …``)."""

    def __init__(
        self,
        batch: int,
        num_beams: int,
        max_new_tokens: int,
        eos_ids: tuple[int, ...],
        length_penalty: float = 1.0,
        early_stopping: bool | str = False,
        keep_logits: bool = False,
    ) -> None:
        shape = (batch, num_beams, 0)  # grown as tokens are produced (see ``room_for``)
        self.num_beams = num_beams
        self.candidates = max(2, 1 + len(eos_ids)) * num_beams
        self.eos_ids = np.array(eos_ids, dtype=np.int64)
        self.length_penalty = float(length_penalty)
        self.early_stopping = early_stopping
        self.max_new_tokens = max_new_tokens
        # Running hypotheses: tokens, logit rows they came from, summed log-probs.
        self.running_tokens = np.zeros(shape, dtype=np.int64)
        self.running_rows = np.full(shape, -1, dtype=np.int64)
        # As transformers: only the first beam of an input is live at the start, the others are
        # "impossible" copies of it, so an input always has ``num_beams`` hypotheses, even when
        # its first step offers fewer than ``2 * num_beams`` tokens (a vocabulary < num_beams).
        self.running_scores = np.full((batch, num_beams), _IMPOSSIBLE, dtype=np.float32)
        self.running_scores[:, 0] = 0.0
        # Finished hypotheses, best first, with their length-penalized scores.
        self.tokens = np.zeros(shape, dtype=np.int64)
        self.rows = np.full(shape, -1, dtype=np.int64)
        self.lengths = np.zeros((batch, num_beams), dtype=np.int64)
        self.scores = np.full((batch, num_beams), _IMPOSSIBLE, dtype=np.float32)
        self.finished = np.zeros((batch, num_beams), dtype=bool)
        self.improvable = np.ones(batch, dtype=bool)
        self.retired = np.zeros(batch, dtype=bool)  # cancelled by the caller (see retire)
        self.step_logits: list[np.ndarray] | None = [] if keep_logits else None
        self._step = 0

    def advance(self, logits: np.ndarray) -> StepDecision:
        batch, beams = self.running_scores.shape
        step, vocab = self._step, logits.shape[-1]
        rows_per_input = logits.shape[0] // batch  # 1 on the first step, num_beams afterwards
        if self.step_logits is not None:
            self.step_logits.append(logits)
        self._make_room(step)
        log_probs = log_softmax(logits.astype(np.float32, copy=False))
        # On the first step every beam of an input continues its one row.
        log_probs = log_probs.reshape(batch, rows_per_input, 1, vocab)
        totals = np.broadcast_to(log_probs, (batch, rows_per_input, beams // rows_per_input, vocab))
        totals = (totals.reshape(batch, beams, vocab) + self.running_scores[:, :, None])
        totals = totals.reshape(batch, -1)

        top = top_k_indices(totals, self.candidates)
        top_scores = np.take_along_axis(totals, top, axis=1)
        origin, token = top // vocab, top % vocab
        top_tokens = _gather(self.running_tokens, origin)
        top_tokens[:, :, step] = token
        top_rows = _gather(self.running_rows, origin)
        source_row = origin if rows_per_input > 1 else np.zeros_like(origin)
        top_rows[:, :, step] = source_row + np.arange(batch)[:, None] * rows_per_input
        ends = np.isin(token, self.eos_ids) | (step + 1 >= self.max_new_tokens)

        origins = self._keep_running(top_scores, top_tokens, top_rows, ends, origin)
        self._keep_finished(top_scores, top_tokens, top_rows, ends, step + 1)
        self._step += 1
        self._update_improvable()
        if self._done(ends):
            return StepDecision(None)
        next_ids = self.running_tokens[:, :, step].reshape(-1)
        if rows_per_input == 1:  # every hypothesis still extends its input's single row
            return StepDecision(next_ids, expand=beams)
        cache_rows = (origins + np.arange(batch)[:, None] * beams).reshape(-1)
        return StepDecision(next_ids, reorder=cache_rows)

    def _make_room(self, step: int) -> None:
        """Grow the token and row buffers to hold ``step``, by doubling (see ``room_for``)."""
        limit = self.max_new_tokens
        self.running_tokens = room_for(self.running_tokens, step, limit, 0)
        self.running_rows = room_for(self.running_rows, step, limit, -1)
        self.tokens = room_for(self.tokens, step, limit, 0)
        self.rows = room_for(self.rows, step, limit, -1)

    def _keep_running(self, top_scores, top_tokens, top_rows, ends, origin) -> np.ndarray:
        """The best ``num_beams`` continuations that did not end; returns their source beams."""
        scores = top_scores + ends.astype(np.float32) * _IMPOSSIBLE
        keep = top_k_indices(scores, self.num_beams)
        self.running_tokens = _gather(top_tokens, keep)
        self.running_rows = _gather(top_rows, keep)
        self.running_scores = np.take_along_axis(scores, keep, axis=1)
        return np.take_along_axis(origin, keep, axis=1)

    def _keep_finished(self, top_scores, top_tokens, top_rows, ends, length: int) -> None:
        """Merge continuations that just ended into the finished set if they rank high enough."""
        just_finished = ends.copy()
        just_finished[:, self.num_beams :] = False
        scores = top_scores / np.float32(length**self.length_penalty)
        full = self.finished.all(axis=1, keepdims=True) & (self.early_stopping is True)
        scores = scores + full.astype(np.float32) * _IMPOSSIBLE
        scores = scores + (~self.improvable[:, None]).astype(np.float32) * _IMPOSSIBLE
        scores = scores + (~just_finished).astype(np.float32) * _IMPOSSIBLE

        merged_scores = np.concatenate([self.scores, scores], axis=1)
        keep = top_k_indices(merged_scores, self.num_beams)
        new_lengths = np.full(ends.shape, length, dtype=np.int64)
        self.scores = np.take_along_axis(merged_scores, keep, axis=1)
        self.tokens = _gather(np.concatenate([self.tokens, top_tokens], axis=1), keep)
        self.rows = _gather(np.concatenate([self.rows, top_rows], axis=1), keep)
        self.lengths = _gather(np.concatenate([self.lengths, new_lengths], axis=1), keep)
        self.finished = _gather(np.concatenate([self.finished, just_finished], axis=1), keep)

    def _update_improvable(self) -> None:
        """Clear ``improvable`` for inputs whose best running beam cannot beat the finished ones."""
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            best_length = self.max_new_tokens
        else:
            best_length = self._step
        best_running = self.running_scores[:, :1] / np.float32(best_length**self.length_penalty)
        worst_finished = np.where(
            self.finished, self.scores.min(axis=1, keepdims=True), _IMPOSSIBLE
        )
        self.improvable &= np.any(best_running > worst_finished, axis=1)

    def retire(self, inputs: np.ndarray) -> bool:
        """Stop searching for ``inputs`` (a bool per input); True: no input is left searching.

        A retired input is treated as one that cannot improve: its beams stay in the batch
        (padding, as a finished input's do) but add nothing, and the search ends once no
        other input runs.
        """
        self.retired |= inputs
        self.improvable &= ~inputs
        return not self.improvable.any()

    def _done(self, ends: np.ndarray) -> bool:
        all_full = bool(self.finished.all()) and self.early_stopping is True
        return not self.improvable.any() or all_full or bool(ends.all())

    def result(self) -> DecodedTokens:
        """The best finished hypothesis of each input.

        Every input ends with a finished hypothesis first, unless the length penalty scaled the
        real scores down to the -1e9 of hypotheses that may not be chosen: then an unfinished
        one or the empty placeholder wins a float32 tie (transformers returns it; which one
        depends on its sort's tie-break). ``GenerationArgs`` refuses such penalties for the
        lengths a call can reach, assuming no token's probability is below float32's smallest
        normal; this refuses the rest rather than return one of them.

        A retired input may have no finished hypothesis: its result is whatever is there, and
        the caller, who cancelled it, discards it.

        Raises:
            InputError: an input's best hypothesis is not a finished one.
        """
        unfinished = np.flatnonzero(~self.finished[:, 0] & ~self.retired)
        if unfinished.size:
            raise InputError(
                f"length_penalty={self.length_penalty:g} scaled the scores of input "
                f"#{int(unfinished[0])} of this batch past -1e9, the score of hypotheses that may "
                "not be chosen, so its output cannot be told apart from them. Use a "
                "length_penalty closer to 0, or fewer max_new_tokens."
            )
        return DecodedTokens(
            tokens=self.tokens[:, 0, : self._step],
            lengths=self.lengths[:, 0],
            rows=self.rows[:, 0, : self._step],
            scores=self.scores[:, 0],
            step_logits=self.step_logits,
        )
