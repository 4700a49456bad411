"""How a client asks one served task for one text and checks the answer (the load test's side).

Each task module defines its :class:`TaskAnswers` beside the handler that writes those answers,
so the shapes a client reads stand next to the code that makes them. An answer is reduced to a
comparable form (a classifier's best ``(label, score)``, a generated text, an embedding vector),
both from the server's body and from the same model run in-process, and the two are compared
with the task's own tolerance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Wire:
    """A protocol only some tasks speak (beyond V2 and Hugging Face).

    Attributes:
        api: what it is, for messages ("embeddings").
        path: its route (the model goes in the body).
        body: ``(model name, text) -> JSON body``.
        answer: the comparable answer in a 200 body.
    """

    api: str
    path: str
    body: Callable[[str, str], dict[str, Any]]
    answer: Callable[[Any], Any]


class TaskAnswers(ABC):
    """One task's requests and answers as a client sees them.

    ``from_hf`` and ``from_v2`` may raise ``KeyError``/``IndexError``/``TypeError``/
    ``ValueError`` on a body of another shape, which the load test counts as a wrong answer.
    """

    # Protocol name -> its Wire, for protocols beyond V2 and Hugging Face.
    protocols: ClassVar[Mapping[str, Wire]] = {}

    def parameters(self, max_new_tokens: int) -> dict[str, Any]:
        """The request parameters the load test sends (generation length for generators)."""
        return {}

    def hf_body(self, text: str, parameters: dict[str, Any]) -> dict[str, Any]:
        return {"inputs": text, "parameters": parameters}

    def v2_body(self, text: str, parameters: dict[str, Any]) -> dict[str, Any]:
        return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}],
                "parameters": parameters}

    @abstractmethod
    def expected(self, model: Any, text: str, parameters: dict[str, Any]) -> Any:
        """The comparable answer from one in-process call on ``text`` (as a client calls)."""

    @abstractmethod
    def from_hf(self, body: Any) -> Any:
        """The comparable answer in a Hugging Face route's 200 body."""

    @abstractmethod
    def from_v2(self, outputs: dict[str, list[Any]]) -> Any:
        """The comparable answer in a V2 answer's outputs (name -> data)."""

    def matches(self, answer: Any, want: Any) -> bool:
        """Whether a server's ``answer`` is the in-process ``want`` (exact unless overridden)."""
        return bool(answer == want)
