"""Serving T5-style text2text generation: V2 ``text`` -> ``generated_text``, HF and TGI shapes.

Requests share a batch only when their generation parameters are equal (the batching key): one
decode loop runs one setting. Parameters the engine does not implement are refused with the
message transformers uses, which ``huggingface_hub`` parses to retry without them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from engine.manifest import TASK_TEXT2TEXT
from engine.seq2seq import Seq2SeqLM
from engine.tokenization import TextInput, as_text_list
from onnx_engine.serving.errors import UnusedModelKwargsError, ValidationError
from onnx_engine.serving.tasks.base import (
    Job,
    OutputTensor,
    TaskHandler,
    TensorSpec,
    hf_texts,
    required_v2_input,
)

# Flags of TGI and the HF pipelines that are fine at the value that describes what we do anyway
# (no sampling, no details, no prompt echo, no streaming); any other value is "not used".
_NO_OP_VALUES: dict[str, Any] = {
    "do_sample": False, "details": False, "decoder_input_details": False,
    "return_full_text": False, "watermark": False, "stream": False,
}
# The HF summarization/translation clients send these beside generate_parameters; tokenizers
# output needs no clean-up, and sources are always truncated at the model's maximum length.
_TASK_FLAGS = ("clean_up_tokenization_spaces", "truncation")


@dataclass(frozen=True)
class GenerationKey:
    """The generation parameters of a request; equal keys may share a batch."""

    max_new_tokens: int | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False


class Text2TextHandler(TaskHandler):
    task = TASK_TEXT2TEXT
    model: Seq2SeqLM
    v2_inputs = (TensorSpec("text", "BYTES", (-1,)),)
    v2_outputs = (
        TensorSpec("generated_text", "BYTES", (-1,)),
        TensorSpec("sequence_score", "FP32", (-1,)),
    )

    def parse_v2(self, inputs: dict[str, list[str]], parameters: dict[str, Any]) -> Job:
        texts = required_v2_input(inputs, "text", ("text",))
        unknown = sorted(set(parameters) - set(GenerationKey.__dataclass_fields__))
        if unknown:
            raise ValidationError(
                f"Unknown parameter(s) {unknown}; generation takes "
                f"{', '.join(GenerationKey.__dataclass_fields__)}."
            )
        return self._job(texts, parameters, single=False)

    def parse_hf(self, inputs: Any, parameters: dict[str, Any], route: str) -> Job:
        items, single = hf_texts(inputs)
        texts, _ = as_text_list(items, what="input")
        settings = dict(parameters)
        if route == "task":  # summarization / translation nest generation settings
            nested = settings.pop("generate_parameters", None) or {}
            if not isinstance(nested, dict):
                raise ValidationError("parameters.generate_parameters must be an object.")
            for flag in _TASK_FLAGS:
                settings.pop(flag, None)
            settings = {**nested, **settings}
        unused = [
            name for name, value in settings.items()
            if name not in GenerationKey.__dataclass_fields__
            and not (name in _NO_OP_VALUES and value in (None, _NO_OP_VALUES[name]))
        ]
        if unused:
            raise UnusedModelKwargsError(unused)
        known = {name: value for name, value in settings.items() if name not in _NO_OP_VALUES}
        return self._job(texts, known, single)

    def _job(self, texts: list[TextInput], parameters: dict[str, Any], single: bool) -> Job:
        self.check_texts(texts)
        key = _generation_key(parameters)
        # As TGI does, bound the work one request can ask for: an unbounded max_new_tokens would
        # hold the model and allocate its output buffers up front. The bound is the model's
        # input length (512 for T5), or its generation max_length if that is larger.
        limit = max(self.model.settings.default_max_new_tokens, self.model.tokenizer.max_length)
        if key.max_new_tokens is not None and key.max_new_tokens > limit:
            raise ValidationError(
                f"max_new_tokens must be at most {limit} on this model, got {key.max_new_tokens}."
            )
        # Each beam is a decoder row: one text may not ask for more rows than a batch holds.
        if key.num_beams > self.config.max_batch_size:
            raise ValidationError(
                f"num_beams must be at most {self.config.max_batch_size} on this server "
                f"(--max-batch-size), got {key.num_beams}."
            )
        return Job(list(texts), key=key, single=single)

    def costs(self, job: Job, token_counts: list[int]) -> list[int]:
        # Beam search runs num_beams decoder rows per text.
        return [count * job.key.num_beams for count in token_counts]

    def run_batch(self, key: GenerationKey, texts: list[TextInput]) -> Sequence[tuple[str, float]]:
        generated = self.model.generate(
            texts,
            max_new_tokens=key.max_new_tokens,
            num_beams=key.num_beams,
            length_penalty=key.length_penalty,
            early_stopping=key.early_stopping,
            output_scores=True,
            batch_size=len(texts),
        )
        return [(sequence.text, float(sequence.score)) for sequence in generated]

    def encode_v2(self, job: Job, results: list[tuple[str, float]]) -> list[OutputTensor]:
        texts = np.array([text.encode() for text, _ in results] + [b""], dtype=object)[:-1]
        scores = np.array([score for _, score in results], dtype=np.float32)
        return [
            OutputTensor("generated_text", "BYTES", texts),
            OutputTensor("sequence_score", "FP32", scores),
        ]

    def encode_hf(self, job: Job, results: list[tuple[str, float]], route: str) -> Any:
        if route == "generate":  # text-generation-inference: one object per request
            return {"generated_text": results[0][0]}
        # The HF clients read summary_text (summarization), translation_text (translation) or
        # generated_text (text2text, text_generation); a T5 checkpoint serves all three tasks
        # and the request does not say which client sent it, so each answer carries all three.
        return [
            {"generated_text": text, "summary_text": text, "translation_text": text}
            for text, _ in results
        ]


def _generation_key(parameters: dict[str, Any]) -> GenerationKey:
    """The batching key, after checking each parameter's JSON type (values: the engine checks)."""
    key = GenerationKey()
    values: dict[str, Any] = {}
    for name, value in parameters.items():
        if value is None:
            continue
        if name in ("max_new_tokens", "num_beams"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"{name} must be an integer, got {value!r}.")
        elif name == "length_penalty":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value
            ):
                raise ValidationError(f"length_penalty must be a finite number, got {value!r}.")
            value = float(value)
        elif name == "early_stopping" and not (isinstance(value, bool) or value == "never"):
            raise ValidationError(
                f"early_stopping must be true, false or \"never\", got {value!r}."
            )
        values[name] = value
    return GenerationKey(**{**key.__dict__, **values})
