"""The argument checks every engine entry point shares: one for integers, choices and flags each.

A caller's mistake is named with the bad value and what is accepted, in the same words wherever
it happens (``threads``, ``batch_size``, ``top_k``, a manifest field, ...). ``bool`` is never an
integer here: ``threads=True`` is a caller's slip, not one thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.errors import InputError, OnnxEngineError


def check_int(
    name: str,
    value: object,
    minimum: int = 1,
    what: str = "",
    error: type[OnnxEngineError] = InputError,
) -> int:
    """``value`` as an ``int`` if it is an integer (NumPy's too) of at least ``minimum``.

    ``what`` says what is accepted (default: "a positive integer", or "an integer >= minimum").

    Raises:
        InputError: (or ``error``) not an integer, a bool, or below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        accepted = what or ("a positive integer" if minimum == 1 else f"an integer >= {minimum}")
        raise error(f"{name} must be {accepted}, got {value!r:.80}.")
    return int(value)


def check_choice(
    name: str, value: object, choices: Sequence[str], fold_case: bool = True
) -> str:
    """``value`` if it is one of ``choices`` (lower-cased first where ``fold_case``).

    Raises:
        InputError: not a string, or not one of ``choices``.
    """
    if isinstance(value, str):
        key = value.lower() if fold_case else value
        if key in choices:
            return key
    raise InputError(f"Unknown {name} {value!r}. Choose one of: {', '.join(choices)}.")


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is a real bool (a truthy string or 1 is a caller's mistake here).

    Raises:
        InputError: it is not True or False.
    """
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}.")
    return value
