"""What the server needs from each task: parse a request, batch it, run it, encode the answer.

A :class:`TaskHandler` wraps one loaded engine model. The protocol modules (V2, Hugging Face)
parse the transport and call the handler for everything task-specific, so a new task is one new
handler module plus its entry in :data:`onnx_engine.tasks.TASKS`.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from engine.tokenization import (
    CHARS_PER_TOKEN,
    BoundedInput,
    EncodedRow,
    TextInput,
    as_text_list,
    char_cap,
)
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.errors import NotFoundError, PayloadTooLargeError, ValidationError

# The one version of every served model (V2 metadata "versions", answers' "model_version"):
# a server's models are fixed at start, so a request naming another version names nothing.
MODEL_VERSION = "1"


@dataclass(frozen=True)
class Job:
    """A parsed request: its texts, the key of the batches they may join, and how to answer.

    ``single`` records that the client sent one text rather than a list of one (the Hugging Face
    shapes answer differently); ``options`` is the handler's own (top-k, activation, ...).
    """

    texts: list[TextInput]
    key: Hashable = None
    options: Any = None
    single: bool = False


@dataclass(frozen=True)
class TensorSpec:
    """One V2 input or output in the model metadata; ``shape`` uses -1 for variable sizes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False

    def as_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "datatype": self.datatype,
                                "shape": list(self.shape)}
        if self.optional:
            spec["optional"] = True
        return spec


@dataclass(frozen=True)
class OutputTensor:
    """A V2 output: ``data`` is float32/int array, or an object array of ``bytes`` for BYTES."""

    name: str
    datatype: str
    data: np.ndarray = field(repr=False)


class TaskHandler(ABC):
    """The task-specific half of serving one model (see the module docstring).

    ``max_input_tokens`` is this model's input bound (see ``ServeConfig.max_input_tokens``);
    ``model`` is the engine model as served: when the bound is not the model's own length, a
    shallow copy whose tokenizer truncates at the bound (the caller's model is left as it is).
    """

    task: ClassVar[str]
    v2_inputs: ClassVar[tuple[TensorSpec, ...]]
    v2_outputs: ClassVar[tuple[TensorSpec, ...]]
    # Whether the model reads past its tokenizer's maximum length (T5's relative positions do;
    # an encoder's absolute position table does not).
    reads_past_max_length: ClassVar[bool] = False
    # The request parameter that asks to cut over-long texts, as this task's clients spell it.
    truncate_parameter: ClassVar[str] = "truncation"

    def __init__(self, model: Any, config: ServeConfig) -> None:
        self.config = config
        self.max_input_tokens = input_bound(model.tokenizer.max_length, config.max_input_tokens,
                                            self.reads_past_max_length)
        self.model = _truncating_at(model, self.max_input_tokens)

    # -- parsing (event loop) --
    @abstractmethod
    def parse_v2(self, inputs: dict[str, list[str]], parameters: dict[str, Any]) -> Job:
        """A job from decoded V2 BYTES inputs (name -> strings) and request parameters."""

    @abstractmethod
    def parse_hf(self, inputs: Any, parameters: dict[str, Any], route: str) -> Job:
        """A job from a Hugging Face body; ``route`` is ``task`` or ``generate`` (TGI)."""

    def parse_stream(self, inputs: Any, parameters: dict[str, Any], route: str) -> Job:
        """A job whose answer streams (TGI's ``generate_stream``); only generation streams.

        Raises:
            NotFoundError: this task answers whole.
        """
        raise unsupported_route(self.task, "generate_stream")

    def check_texts(self, texts: Sequence[TextInput]) -> None:
        """Apply the server's request limits (text count, characters per text).

        Raises:
            ValidationError: no texts, too many, or a text over ``max_input_chars``.
        """
        limit = self.config.max_client_batch_size
        if not texts:
            raise ValidationError("The request has no texts; send at least one.")
        if len(texts) > limit:
            raise ValidationError(
                f"The request has {len(texts)} texts; this server takes at most {limit} per "
                "request (--max-client-batch-size). Split it into several requests."
            )
        max_chars = self.config.max_input_chars
        if max_chars is not None:
            for index, text in enumerate(texts):
                size = text_chars(text)
                if size > max_chars:
                    raise ValidationError(
                        f"Text #{index} has {size} characters; this server takes at most "
                        f"{max_chars} (--max-input-chars)."
                    )

    def truncates(self, job: Job) -> bool:
        """Whether the job asked to cut texts over the bound (default: refuse them)."""
        return False

    # -- encoding (event loop for small jobs, a thread for large ones) --
    def bounded(self, job: Job) -> list[EncodedRow]:
        """Each text of the job encoded as the model reads it, within the input bound: the
        rows the batcher queues (each row's token count is its cost), so that every text is
        tokenized once, here, and the engine runs on the rows.

        Each text is read only up to its character cap (:func:`engine.tokenization.char_cap`),
        so a 5 MB text costs what the bound needs. A text over the bound is cut when the job
        truncates (to exactly the tokens the engine keeps of the whole text).

        Raises:
            PayloadTooLargeError: a text over the bound in a job that does not truncate, or a
                text over the character cap whose read part cannot show where to cut it.
        """
        tokenizer = self.model.tokenizer
        measured = tokenizer.bounded(job.texts)
        truncate = self.truncates(job)
        for index, text in enumerate(measured):
            if not text.readable:
                raise PayloadTooLargeError(self._unreadable(index, job.texts[index], text))
            if text.over and not truncate:
                raise PayloadTooLargeError(self._over_bound(index, job.texts[index], text, job))
        # A text over the character cap was read as its prefix; its row is the prefix encoded.
        return [text.row or tokenizer.encode_rows([text.text])[0] for text in measured]

    def _over_bound(self, index: int, original: TextInput, text: BoundedInput, job: Job) -> str:
        # The row stops at the bound: the whole text is counted again for the message only.
        count = (f"more than {text.tokens}" if text.cut
                 else str(self.model.tokenizer.count(original)))
        return (
            f"Text #{index} has {count} tokens; this model takes at most "
            f"{self.max_input_tokens} (--max-input-tokens). {self.truncate_fix(job)}"
        )

    def _unreadable(self, index: int, original: TextInput, text: BoundedInput) -> str:
        cap = char_cap(self.max_input_tokens)
        size = text_chars(original)
        return (
            f"Text #{index} has {size} characters; this server reads at most {cap} per text "
            f"({CHARS_PER_TOKEN} per token of the {self.max_input_tokens}-token bound), and its "
            f"first {cap} make too few separate words ({text.tokens} tokens) to show where to "
            "cut it without changing the tokens kept. Shorten it (or split it at spaces)."
        )

    def truncate_fix(self, job: Job) -> str:
        """How the client of ``job`` asks to cut an over-long text (the 413's advice)."""
        return (f'Send the parameter "{self.truncate_parameter}": true to cut it there, or '
                "shorten it.")

    # -- batching (worker thread) --
    def costs(self, job: Job, token_counts: list[int]) -> list[int]:
        """Padded-token cost of each text in a batch; tasks with more work per token scale it."""
        return token_counts

    @abstractmethod
    def run_batch(self, key: Hashable, rows: list[EncodedRow]) -> Sequence[Any]:
        """One engine call over encoded texts from many requests; one result per row."""

    # -- answering (event loop) --
    @abstractmethod
    def encode_v2(self, job: Job, results: list[Any]) -> list[OutputTensor]:
        """All V2 outputs of a job (the codec keeps those the client asked for)."""

    @abstractmethod
    def encode_hf(self, job: Job, results: list[Any], route: str) -> Any:
        """The JSON answer of a Hugging Face route."""

    def answer_values(self, job: Job) -> int:
        """About how many values the job's answer holds (it is built off the loop when large)."""
        return len(job.texts)

    def v2_metadata(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "versions": [MODEL_VERSION],
            "platform": "onnxruntime_onnx",
            "task": self.task,
            "inputs": [spec.as_json() for spec in self.v2_inputs],
            "outputs": [spec.as_json() for spec in self.v2_outputs],
        }


def input_bound(max_length: int, requested: int | None, reads_past_max_length: bool) -> int:
    """A model's input bound in tokens: the requested one (``--max-input-tokens``) or the
    model's maximum length; an encoder's is never above its maximum length (it cannot read
    further), T5's may be."""
    if requested is None:
        return max_length
    return requested if reads_past_max_length else min(requested, max_length)


def _truncating_at(model: Any, bound: int) -> Any:
    """``model``, or a shallow copy of it whose tokenizer truncates at ``bound`` tokens."""
    if model.tokenizer.truncation_length == bound:
        return model
    served = copy.copy(model)
    served.tokenizer = model.tokenizer.truncating_at(bound)
    return served


def text_chars(text: TextInput) -> int:
    """Characters of a text, or of both halves of a ``(text, pair)``."""
    return len(text) if isinstance(text, str) else len(text[0]) + len(text[1])


def required_v2_input(inputs: dict[str, list[str]], name: str, known: Sequence[str]) -> list[str]:
    """The strings of input ``name``, after refusing inputs the model does not have."""
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise ValidationError(
            f"Unknown input(s) {unknown}; this model takes {', '.join(known)}."
        )
    if name not in inputs:
        raise ValidationError(f"The request has no input '{name}' (BYTES, one string per text).")
    texts, _ = as_text_list(inputs[name], what=name)  # the engine's checks (e.g. valid Unicode)
    return texts


def hf_texts(inputs: Any) -> tuple[list[Any], bool]:
    """The ``inputs`` of a Hugging Face body as a list, and whether one input was sent."""
    if isinstance(inputs, list):
        return inputs, False
    if inputs is None:
        raise ValidationError('The body has no "inputs": send {"inputs": "text"} or a list.')
    return [inputs], True


def unsupported_route(task: str, route: str) -> NotFoundError:
    return NotFoundError(f"The '{route}' route does not serve {task} models.")
