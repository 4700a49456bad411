"""Every argument of ``Seq2SeqLM.generate``, checked in one place.

A request parameter must never decide how much memory or time a call takes beyond what the model
can produce, so ``max_new_tokens`` is capped by the model's output limit here, and every other
argument is checked for type and range before a single token is decoded (a NaN length penalty
would otherwise turn every score into NaN and return an empty text with exit status 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.checks import check_flag, check_int
from engine.errors import InputError
from engine.tokenization import check_batch_size

# Beam search keeps num_beams x vocabulary scores per input and step (t5-small: 32k floats a
# beam) and a KV cache per beam, so the width is capped where memory, not quality, would decide.
MAX_NUM_BEAMS = 512

# The length penalty's range: the values whose scores float32 can represent. Beam search
# (engine.seq2seq.beam_search, as transformers) divides a hypothesis' summed log-probability S by
# length ** length_penalty in float32. A token's log-probability is bounded by that of float32's
# smallest normal probability, 2**-126 (126 ln 2 = 87.3 nats), so n tokens score at least -87.3 n.
# Negative penalties multiply S by n ** -penalty: it stays finite while
# 87.3 n ** (1 - penalty) < float32's largest number. Positive penalties divide S: they must leave
# a one-token score of float32 resolution (2**-23) a normal float32 (>= 2**-126), so
# n ** penalty <= 2**103. Inside the range a negative penalty may still push every finished
# hypothesis below the -1e9 that marks hypotheses that may not be chosen; transformers then
# returns one of those, picked by its sort's tie-break, and BeamSearch.result refuses the input
# instead (InputError): that depends on the scores, so it can only be known after decoding.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_TOKEN_NATS_FLOOR = 126 * math.log(2.0)
_LOG_POSITIVE_SPAN = 103 * math.log(2.0)


@dataclass(frozen=True)
class GenerationArgs:
    """Checked decoding arguments; ``max_new_tokens`` ``None`` means the model's default.

    Types and ranges are checked when made; the length penalty's range depends on the longest
    output, so :meth:`new_tokens` checks it (see :func:`length_penalty_range`). Within it, every
    value gives transformers' answer.

    Raises:
        InputError: an argument has the wrong type or is out of range; the message names it.
    """

    max_new_tokens: int | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    output_scores: bool = False
    output_logits: bool = False
    batch_size: int = 16
    truncation: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None:
            check_int("max_new_tokens", self.max_new_tokens)
        check_int("num_beams", self.num_beams, what="a positive integer (1 = greedy)")
        if self.num_beams > MAX_NUM_BEAMS:
            raise InputError(
                f"num_beams={self.num_beams} is above the engine's limit of {MAX_NUM_BEAMS} "
                "(memory grows with beams x vocabulary); use at most that many beams."
            )
        check_batch_size(self.batch_size)
        if isinstance(self.length_penalty, bool) or not isinstance(
            self.length_penalty, (int, float, np.integer, np.floating)
        ) or not math.isfinite(self.length_penalty):
            raise InputError(
                f"length_penalty must be a finite number (1.0 = neutral, > 0 favours longer "
                f"outputs, < 0 shorter), got {self.length_penalty!r}."
            )
        stopping = self.early_stopping
        if not (stopping is True or stopping is False or stopping == "never"):
            raise InputError(
                f"early_stopping must be True, False or 'never', got {self.early_stopping!r}."
            )
        for name in ("output_scores", "output_logits", "truncation"):
            check_flag(name, getattr(self, name))
        object.__setattr__(self, "length_penalty", float(self.length_penalty))

    @property
    def uses_length_penalty(self) -> bool:
        """Whether the penalty enters a result: beam search ranks by it, and every sequence
        score (greedy's too, with ``output_scores``/``output_logits``) is divided by it."""
        return self.num_beams > 1 or self.output_scores or self.output_logits

    def new_tokens(self, default: int, limit: int) -> int:
        """The number of tokens to generate at most: the request, or ``default``, within ``limit``.

        The length penalty is checked here, where the longest output is known: its range
        depends on it (see :func:`length_penalty_range`).

        Raises:
            InputError: more new tokens were asked for than the model's output limit, or a length
                penalty whose scores float32 cannot represent for outputs that long.
        """
        if self.max_new_tokens is None:
            tokens = min(default, limit)
        elif self.max_new_tokens > limit:
            raise InputError(
                f"max_new_tokens={self.max_new_tokens} exceeds this model's output limit of "
                f"{limit} tokens (the tokenizer's model_max_length); ask for at most {limit}."
            )
        else:
            tokens = int(self.max_new_tokens)
        if self.uses_length_penalty:
            _check_length_penalty(self.length_penalty, tokens)
        return tokens


def length_penalty_range(new_tokens: int) -> tuple[float, float]:
    """The lowest and highest length penalty whose scores stay representable in float32 for
    outputs of up to ``new_tokens`` tokens; unbounded for one token, whose
    length factor is 1. The bounds are rounded toward zero to two decimals, as messages show them.
    """
    if new_tokens < 2:
        return -math.inf, math.inf
    log_tokens = math.log(new_tokens)
    lowest = 1.0 - math.log(_FLOAT32_MAX / _TOKEN_NATS_FLOOR) / log_tokens
    highest = _LOG_POSITIVE_SPAN / log_tokens
    return math.ceil(lowest * 100) / 100, math.floor(highest * 100) / 100


def _check_length_penalty(penalty: float, new_tokens: int) -> None:
    lowest, highest = length_penalty_range(new_tokens)
    if lowest <= penalty <= highest:
        return
    side = (
        f"{new_tokens} ** {-penalty:g} would scale a score past float32's largest number"
        if penalty < 0 else
        f"dividing by {new_tokens} ** {penalty:g} would crush scores below float32's resolution"
    )
    raise InputError(
        f"length_penalty={penalty:g} is outside [{lowest:g}, {highest:g}], the range whose "
        f"scores float32 can represent for outputs of up to {new_tokens} tokens: {side}. Use a "
        "length_penalty in that range, or fewer max_new_tokens for a wider one."
    )


