"""Request bodies and answer parsing for the two protocols the load test speaks.

Each answer is reduced to a comparable form: ``(label, score)`` of the best label for a
classifier, the generated text for text2text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import InputError
from engine.manifest import TASK_CLASSIFICATION, TASK_TEXT2TEXT

PROTOCOLS = ("v2", "hf")


@dataclass(frozen=True)
class Protocol:
    """How to ask ``model`` for one text and read its answer."""

    name: str
    task: str
    model: str
    parameters: dict[str, Any]

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise InputError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {self.name!r}.")
        if self.task not in (TASK_CLASSIFICATION, TASK_TEXT2TEXT):
            raise InputError(f"The load test cannot check '{self.task}' answers.")

    @property
    def path(self) -> str:
        return f"/v2/models/{self.model}/infer" if self.name == "v2" else f"/models/{self.model}"

    def body(self, text: str) -> dict[str, Any]:
        if self.name == "hf":
            return {"inputs": text, "parameters": self.parameters}
        return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}],
                "parameters": self.parameters}

    def answer(self, body: Any) -> Any:
        """The comparable answer in a 200 response body (KeyError/IndexError/TypeError if the
        body has another shape, which the runner counts as a wrong answer)."""
        if self.name == "hf":
            if self.task == TASK_CLASSIFICATION:
                best = max(body[0], key=lambda item: item["score"])
                return best["label"], float(best["score"])
            return body[0]["generated_text"]
        outputs = {output["name"]: output["data"] for output in body["outputs"]}
        if self.task == TASK_CLASSIFICATION:
            return outputs["label"][0], float(outputs["score"][0])
        return outputs["generated_text"][0]
