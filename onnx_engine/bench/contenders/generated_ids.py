"""Generated token ids as the seq2seq contenders hand them to the runner: cut after EOS."""

from __future__ import annotations

from typing import Any

import numpy as np


def trim_after_eos(ids: np.ndarray, eos: np.ndarray) -> np.ndarray:
    """Generated ids with everything after each row's first EOS set to -1 (as padding)."""
    out = np.array(ids, dtype=np.int64)
    is_eos = np.isin(out, eos)
    after = np.cumsum(is_eos, axis=1) - is_eos > 0
    out[after] = -1
    return out


def eos_ids(generation_config: Any) -> np.ndarray:
    return np.atleast_1d(np.asarray(generation_config.eos_token_id, dtype=np.int64))
