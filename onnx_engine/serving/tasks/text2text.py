"""Serving T5-style text2text generation: V2 ``text`` -> ``generated_text``, HF and TGI shapes.

Requests share a batch only when their generation parameters are equal (the batching key): one
decode loop runs one setting. Parameters the engine does not implement are refused with the
message transformers uses, which ``huggingface_hub`` parses to retry without them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from engine.manifest import TASK_TEXT2TEXT
from engine.seq2seq.decoding import StepTokens
from engine.seq2seq.generation_args import GenerationArgs
from engine.seq2seq.outputs import GeneratedSequence
from engine.tasks.text2text import Seq2SeqLM
from engine.tokenization import EncodedRow, TextInput, as_text_list
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.errors import UnusedModelKwargsError, ValidationError
from onnx_engine.serving.tasks.answers import TaskAnswers
from onnx_engine.serving.tasks.base import (
    Job,
    OutputTensor,
    TaskHandler,
    TensorSpec,
    hf_texts,
    required_v2_input,
)
from onnx_engine.serving.tgi_tokens import TokenVocabulary, answer_details

# Flags of TGI and the HF pipelines that are fine at the value that describes what we do anyway
# (no sampling, no prompt echo); any other value is "not used". TGI's "details" is served.
_NO_OP_VALUES: dict[str, Any] = {
    "do_sample": False, "decoder_input_details": False,
    "return_full_text": False, "watermark": False, "stream": False,
}
# The generation parameters a request may set; equal values may share a batch. The engine's own
# GenerationArgs checks them (type, range, output limit) and is the batching key.
GENERATION_PARAMETERS = ("max_new_tokens", "num_beams", "length_penalty", "early_stopping",
                         "truncation")
# Hugging Face's summarization/translation send tokenizer truncation strategies.
_NO_TRUNCATION = "do_not_truncate"
# A streamed row's sink: called from the worker thread with (token id, logprob, last).
TokenSink = Callable[[int, float, bool], None]


@dataclass(frozen=True)
class TgiOptions:
    """How a Hugging Face request wants its answer: with TGI's ``details`` or without."""

    details: bool = False


class Text2TextHandler(TaskHandler):
    task = TASK_TEXT2TEXT
    model: Seq2SeqLM
    reads_past_max_length = True  # relative position buckets take any length
    v2_inputs = (TensorSpec("text", "BYTES", (-1,)),)
    v2_outputs = (
        TensorSpec("generated_text", "BYTES", (-1,)),
        TensorSpec("sequence_score", "FP32", (-1,)),
    )

    def __init__(self, model: Seq2SeqLM, config: ServeConfig) -> None:
        super().__init__(model, config)
        self.vocabulary = TokenVocabulary.of(self.model.tokenizer,
                                             self.model.settings.eos_token_ids)

    def parse_v2(self, inputs: dict[str, list[str]], parameters: dict[str, Any]) -> Job:
        texts = required_v2_input(inputs, "text", ("text",))
        unknown = sorted(set(parameters) - set(GENERATION_PARAMETERS))
        if unknown:
            raise ValidationError(
                f"Unknown parameter(s) {unknown}; generation takes "
                f"{', '.join(GENERATION_PARAMETERS)}."
            )
        return self._job(texts, parameters, single=False, scores=True)

    def parse_hf(self, inputs: Any, parameters: dict[str, Any], route: str) -> Job:
        return self._hf_job(inputs, parameters, route, stream=False)

    def parse_stream(self, inputs: Any, parameters: dict[str, Any], route: str) -> Job:
        """A streamed job: one text (TGI streams one sequence per request).

        Greedy jobs stream token by token; beam search streams only its final text, as TGI,
        which does not stream beams either (a later step may replace every earlier token).
        """
        if not isinstance(inputs, str):
            raise ValidationError('A stream takes one text: {"inputs": "...", "stream": true}.')
        return self._hf_job(inputs, parameters, route, stream=True)

    def _hf_job(self, inputs: Any, parameters: dict[str, Any], route: str, stream: bool) -> Job:
        items, single = hf_texts(inputs)
        texts, _ = as_text_list(items, what="input")
        settings = dict(parameters)
        if route == "task":  # summarization / translation nest generation settings
            nested = settings.pop("generate_parameters", None) or {}
            if not isinstance(nested, dict):
                raise ValidationError("parameters.generate_parameters must be an object.")
            # Sent beside generate_parameters; the tokenizers library's decoding needs no clean-up.
            settings.pop("clean_up_tokenization_spaces", None)
            if isinstance(settings.get("truncation"), str):
                settings["truncation"] = settings["truncation"] != _NO_TRUNCATION
            settings = {**nested, **settings}
        details = settings.pop("details", None)
        if details is not None and not isinstance(details, bool):
            raise ValidationError(f'"details" must be true or false, got {details!r}.')
        unused = [
            name for name, value in settings.items()
            if name not in GENERATION_PARAMETERS
            and not (name in _NO_OP_VALUES and value in (None, _NO_OP_VALUES[name]))
        ]
        if unused:
            raise UnusedModelKwargsError(unused)
        known = {name: value for name, value in settings.items() if name not in _NO_OP_VALUES}
        options = TgiOptions(details=bool(details))
        # Per-token log-probabilities: a greedy stream gets them step by step; whole answers with
        # details, and a beam stream's one event, from the finished sequence.
        beams = known.get("num_beams") not in (None, 1)
        scores = (options.details and not stream) or (stream and beams)
        return self._job(texts, known, single, scores=scores, options=options)

    def _job(self, texts: list[TextInput], parameters: dict[str, Any], single: bool,
             scores: bool, options: TgiOptions | None = None) -> Job:
        """``scores``: the answer carries scores (V2's sequence score, TGI's token logprobs). The
        key asks for them, so a length penalty whose score cannot be represented is refused here,
        before anything is queued, while one that only a greedy score would use is ignored, as
        transformers ignores it."""
        self.check_texts(texts)
        key = GenerationArgs(**{k: v for k, v in parameters.items() if v is not None},
                             output_scores=scores)
        key.new_tokens(self.model.settings.default_max_new_tokens, self.model.output_limit)
        # Each beam is a decoder row, as each text of a request is: one request may not ask for
        # more rows than --max-client-batch-size (an unbounded beam would exhaust memory).
        if key.num_beams > self.config.max_client_batch_size:
            raise ValidationError(
                f"num_beams must be at most {self.config.max_client_batch_size} on this server "
                f"(--max-client-batch-size), got {key.num_beams}."
            )
        return Job(list(texts), key=key, options=options, single=single)

    def streams_tokens(self, job: Job) -> bool:
        """Whether a streamed job streams token by token (greedy) or only its final text."""
        return job.key.num_beams == 1

    def truncates(self, job: Job) -> bool:
        return job.key.truncation

    def costs(self, job: Job, token_counts: list[int]) -> list[int]:
        # Beam search runs num_beams decoder rows per text.
        return [count * job.key.num_beams for count in token_counts]

    def run_batch(
        self, key: GenerationArgs, rows: list[EncodedRow],
        cancelled: Callable[[], Sequence[bool]] | None = None,
        sinks: Sequence[TokenSink | None] | None = None,
    ) -> Sequence[GeneratedSequence | None]:
        # ``cancelled`` (from the batcher) says whose requests went away: the decoder stops their
        # rows between steps, and their results (None here) are dropped. ``sinks`` (one per text,
        # None where it does not stream) get a greedy row's tokens as each step chooses them.
        streams = sinks is not None and key.num_beams == 1 and any(sinks)
        generated = self.model.generate_encoded(
            rows, replace(key, batch_size=len(rows)), cancelled=cancelled,
            on_step=_to_sinks(sinks) if streams and sinks is not None else None,
        )
        return [None if sequence.cancelled else sequence for sequence in generated]

    def encode_v2(self, job: Job, results: list[GeneratedSequence]) -> list[OutputTensor]:
        texts = np.array([s.text.encode() for s in results] + [b""], dtype=object)[:-1]
        scores = np.array([s.score for s in results], dtype=np.float32)
        return [
            OutputTensor("generated_text", "BYTES", texts),
            OutputTensor("sequence_score", "FP32", scores),
        ]

    def encode_hf(self, job: Job, results: list[GeneratedSequence], route: str) -> Any:
        details = job.options is not None and job.options.details
        if route == "generate":  # text-generation-inference: one object per request
            return self._tgi_answer(results[0], details)
        # The HF clients read summary_text (summarization), translation_text (translation) or
        # generated_text (text2text, text_generation); a T5 checkpoint serves all three tasks
        # and the request does not say which client sent it, so each answer carries all three.
        return [
            {**self._tgi_answer(sequence, details), "summary_text": sequence.text,
             "translation_text": sequence.text}
            for sequence in results
        ]

    def _tgi_answer(self, sequence: GeneratedSequence, details: bool) -> dict[str, Any]:
        if not details or sequence.token_logprobs is None:
            return {"generated_text": sequence.text}
        return {"generated_text": sequence.text, "details": answer_details(
            self.vocabulary, sequence.token_ids.tolist(), sequence.token_logprobs.tolist())}


def _to_sinks(sinks: Sequence[TokenSink | None]) -> Callable[[StepTokens], None]:
    """The engine's ``on_step``: each step's tokens handed to the sinks of their rows."""
    def on_step(step: StepTokens) -> None:
        for row, token, logprob, last in zip(step.rows.tolist(), step.token_ids.tolist(),
                                             step.logprobs.tolist(), step.finished.tolist()):
            sink = sinks[row]
            if sink is not None:
                sink(token, logprob, last)

    return on_step


class Text2TextAnswers(TaskAnswers):
    """The generated text, exactly (greedy decoding is deterministic)."""

    def parameters(self, max_new_tokens: int) -> dict[str, Any]:
        return {"max_new_tokens": max_new_tokens}

    def expected(self, model: Any, text: str, parameters: dict[str, Any]) -> Any:
        return model.generate([text], **parameters)[0].text

    def from_hf(self, body: Any) -> Any:
        return body[0]["generated_text"]

    def from_v2(self, outputs: dict[str, list[Any]]) -> Any:
        return outputs["generated_text"][0]
