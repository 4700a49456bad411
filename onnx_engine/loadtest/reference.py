"""Expected answers from the model run in-process, and the check of a server's answer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.manifest import TASK_CLASSIFICATION

# Scores may differ in the last bits when a text is batched with others (other padding, other
# summation order) or computed by another runtime (the PyTorch contender): 1e-4 absolute is far
# above that noise (~1e-6) and far below any real mix-up between texts.
SCORE_ATOL = 1e-4


@dataclass(frozen=True)
class Reference:
    """What each text must get back, and the in-process latency of one call at batch 1."""

    expected: dict[str, Any]
    task: str
    in_process_p50_ms: float

    def matches(self, text: str, answer: Any) -> bool:
        want = self.expected[text]
        if self.task == TASK_CLASSIFICATION:
            return answer[0] == want[0] and abs(answer[1] - want[1]) <= SCORE_ATOL
        return answer == want


def build_reference(model: Any, texts: list[str], parameters: dict[str, Any],
                    timing_calls: int = 50) -> Reference:
    """Answer every distinct text in-process, one call per text (the baseline a server adds to).

    ``parameters`` are the request's: ``function_to_apply`` for a classifier, generation
    settings for text2text.
    """
    expected, durations = {}, []
    for index, text in enumerate(dict.fromkeys(texts)):
        started = time.perf_counter()
        if model.task == TASK_CLASSIFICATION:
            (best,) = model(text, function_to_apply=parameters.get("function_to_apply"))
            expected[text] = (best["label"], best["score"])
        else:
            expected[text] = model.generate([text], **parameters)[0].text
        if index < timing_calls:
            durations.append(time.perf_counter() - started)
    return Reference(expected, model.task, float(np.median(durations) * 1000))
