"""Expected answers from the model run in-process, and the check of a server's answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.manifest import TASK_CLASSIFICATION, TASK_FEATURE_EXTRACTION
from engine.similarity import similarity_matrix

# Scores may differ in the last bits when a text is batched with others (other padding, other
# summation order) or computed by another runtime (the PyTorch contender): 1e-4 absolute is far
# above that noise (~1e-6) and far below any real mix-up between texts.
SCORE_ATOL = 1e-4
# An embedding must point where the in-process one does. 0.99 is the bound the lossy variants'
# gate holds every input to, so a server running another precision (int8, PyTorch bf16) passes;
# a vector answered for another text fails: the closest two of the 305 bundled sentences (one
# word apart) have cosine 0.964 with all-MiniLM-L6-v2.
MIN_COSINE = 0.99


@dataclass(frozen=True)
class Reference:
    """What each text must get back."""

    expected: dict[str, Any]
    task: str

    def matches(self, text: str, answer: Any) -> bool:
        want = self.expected[text]
        if self.task == TASK_CLASSIFICATION:
            return answer[0] == want[0] and abs(answer[1] - want[1]) <= SCORE_ATOL
        if self.task == TASK_FEATURE_EXTRACTION:
            return answer.shape == want.shape and bool(
                similarity_matrix(answer[None], want[None])[0, 0] >= MIN_COSINE)  # NaN fails
        return answer == want


def build_reference(model: Any, texts: list[str], parameters: dict[str, Any]) -> Reference:
    """Answer every distinct text in-process, one call per text.

    ``parameters`` are the request's: ``function_to_apply`` for a classifier, generation
    settings for text2text; none for embeddings (normalized as the model does).
    """
    expected = {text: answer(model, text, parameters) for text in dict.fromkeys(texts)}
    return Reference(expected, model.task)


def answer(model: Any, text: str, parameters: dict[str, Any]) -> Any:
    """The comparable answer for one text from one in-process call (as a client would call)."""
    if model.task == TASK_CLASSIFICATION:
        (best,) = model(text, function_to_apply=parameters.get("function_to_apply"))
        return best["label"], best["score"]
    if model.task == TASK_FEATURE_EXTRACTION:
        return model.embed(text)[0]
    return model.generate([text], **parameters)[0].text
