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

from engine.errors import InputError
from engine.tokenization import check_batch_size

# Beam search keeps num_beams x vocabulary scores per input and step (t5-small: 32k floats a
# beam) and a KV cache per beam, so the width is capped where memory, not quality, would decide.
MAX_NUM_BEAMS = 512

@dataclass(frozen=True)
class GenerationArgs:
    """Checked decoding arguments; ``max_new_tokens`` ``None`` means the model's default.

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
            _positive_int("max_new_tokens", self.max_new_tokens)
        _positive_int("num_beams", self.num_beams, "(1 = greedy)")
        if self.num_beams > MAX_NUM_BEAMS:
            raise InputError(
                f"num_beams={self.num_beams} is above the engine's limit of {MAX_NUM_BEAMS} (memory "
                "grows with beams x vocabulary); use at most that many beams."
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

    def new_tokens(self, default: int, limit: int) -> int:
        """The number of tokens to generate at most: the request, or ``default``, within ``limit``.

        Raises:
            InputError: more new tokens were asked for than the model's output limit.
        """
        if self.max_new_tokens is None:
            return min(default, limit)
        if self.max_new_tokens > limit:
            raise InputError(
                f"max_new_tokens={self.max_new_tokens} exceeds this model's output limit of "
                f"{limit} tokens (the tokenizer's model_max_length); ask for at most {limit}."
            )
        return int(self.max_new_tokens)


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is a real bool (a truthy string or 1 is a caller's mistake here).

    Raises:
        InputError: it is not True or False.
    """
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}.")
    return value


def _positive_int(name: str, value: object, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        suffix = f" {hint}" if hint else ""
        raise InputError(f"{name} must be a positive integer{suffix}, got {value!r}.")
