"""Request bodies and answer parsing for the protocols the load test speaks.

Each answer is reduced to a comparable form: ``(label, score)`` of the best label for a
classifier, the generated text for text2text, the vector ``float32 [D]`` for sentence embeddings.
``openai`` is the OpenAI embeddings API (``POST /v1/embeddings``), asked as the ``openai`` Python
client asks by default: base64 little-endian float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.manifest import TASK_CLASSIFICATION, TASK_FEATURE_EXTRACTION, TASK_TEXT2TEXT
from onnx_engine.embedding_protocols import decode_base64

PROTOCOLS = ("v2", "hf", "openai")
_TASKS = (TASK_CLASSIFICATION, TASK_TEXT2TEXT, TASK_FEATURE_EXTRACTION)


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
        if self.task not in _TASKS:
            raise InputError(f"The load test cannot check '{self.task}' answers.")
        if self.name == "openai" and self.task != TASK_FEATURE_EXTRACTION:
            raise InputError(
                f"--protocol openai speaks the embeddings API; '{self.model}' is a {self.task} "
                "model (use --protocol hf or v2)."
            )

    @property
    def path(self) -> str:
        if self.name == "openai":
            return "/v1/embeddings"
        return f"/v2/models/{self.model}/infer" if self.name == "v2" else f"/models/{self.model}"

    def body(self, text: str) -> dict[str, Any]:
        if self.name == "openai":
            return {"model": self.model, "input": text, "encoding_format": "base64"}
        if self.name == "hf":
            return {"inputs": text, "parameters": self.parameters}
        return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}],
                "parameters": self.parameters}

    def answer(self, body: Any) -> Any:
        """The comparable answer in a 200 response body (KeyError/IndexError/TypeError/ValueError
        if the body has another shape, which the runner counts as a wrong answer)."""
        if self.name == "openai":
            (item,) = body["data"]
            return decode_base64(item["embedding"])
        if self.name == "hf":
            if self.task == TASK_CLASSIFICATION:
                best = max(body[0], key=lambda item: item["score"])
                return best["label"], float(best["score"])
            if self.task == TASK_FEATURE_EXTRACTION:
                return np.asarray(body, dtype=np.float32)
            return body[0]["generated_text"]
        outputs = {output["name"]: output["data"] for output in body["outputs"]}
        if self.task == TASK_CLASSIFICATION:
            return outputs["label"][0], float(outputs["score"][0])
        if self.task == TASK_FEATURE_EXTRACTION:
            return np.asarray(outputs["embedding"], dtype=np.float32)
        return outputs["generated_text"][0]
