"""The server's settings: one frozen dataclass, validated once when it is built."""

from __future__ import annotations

from dataclasses import dataclass, fields

from engine.errors import InputError
from engine.options import RuntimeOptions


@dataclass(frozen=True)
class ServeConfig:
    """How the server batches, admits and answers requests.

    Attributes:
        max_batch_size: texts merged into one engine call at most.
        max_batch_tokens: padded tokens (longest text x texts) of one engine call at most; a
            single text over it still runs, alone.
        max_queue_delay_ms: how long the batcher waits for more texts once one is queued, while
            the model is idle. Requests that arrive while a batch runs wait for it anyway.
        max_concurrent_requests: inference requests admitted at once (queued or running); one
            more gets 429 at once. It bounds every queue: at most this many requests x
            ``max_client_batch_size`` texts are ever waiting.
        max_client_batch_size: texts in one request at most (422 above).
        max_input_chars: characters of one text at most (422 above); ``None``: no limit (the
            tokenizer still truncates at the model's maximum length).
        max_input_tokens: tokens of one text (special tokens included) at most, per model;
            ``None``: the model's maximum length. Classifiers and embedders cannot read past
            their maximum length, so theirs is the smaller of the two; T5 may take more. A
            longer text gets 413 unless the request asks to truncate (then it is cut there).
        request_timeout_s: a request still unanswered after this long gets 504 and its texts are
            dropped from the queue; ``None``: no limit.
        max_body_bytes: request bodies over this many bytes get 413 before they are parsed.
        client_timeout_s: a request's headers and its body must each arrive within this long,
            else its connection is closed (a body: with 408). Requests are admitted only once
            their body is read, so slow clients never hold a concurrency slot.
        api_key: when set, every route but health needs ``Authorization: Bearer <api_key>``.
        cors_origins: origins allowed by CORS; empty: no CORS headers at all.
        log_requests: one INFO log line per request.
    """

    max_batch_size: int = 32
    max_batch_tokens: int = 8192
    max_queue_delay_ms: float = 2.0
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 64
    max_input_chars: int | None = None
    max_input_tokens: int | None = None
    request_timeout_s: float | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    client_timeout_s: float = 30.0
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    log_requests: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_batch_tokens", "max_concurrent_requests",
                     "max_client_batch_size", "max_body_bytes"):
            _check_positive(name, getattr(self, name), integer=True)
        for name in ("max_input_chars", "max_input_tokens"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name), integer=True)
        if self.max_input_tokens is not None and self.max_input_tokens > self.max_batch_tokens:
            # One text may cost no more than a whole engine call: memory per call follows
            # max_batch_tokens (and T5's encoder attention the square of one text's tokens).
            raise InputError(
                f"max_input_tokens must be at most max_batch_tokens={self.max_batch_tokens}, got "
                f"{self.max_input_tokens}: one text may not cost more than a whole batch. Raise "
                "max_batch_tokens too if the memory allows."
            )
        if self.request_timeout_s is not None:
            _check_positive("request_timeout_s", self.request_timeout_s, integer=False)
        _check_positive("client_timeout_s", self.client_timeout_s, integer=False)
        if self.max_queue_delay_ms < 0:
            raise InputError(
                f"max_queue_delay_ms must be >= 0, got {self.max_queue_delay_ms!r}."
            )
        if self.api_key is not None and not self.api_key.strip():
            raise InputError("The API key is empty; give a non-empty key or none at all.")

    def __repr__(self) -> str:
        # The key must never reach a log line or an error message.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["api_key"] = "<set>" if self.api_key else None
        return f"ServeConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _check_positive(name: str, value: object, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "integer" if integer else "number"
        raise InputError(f"{name} must be a positive {kind}, got {value!r}.")


def serving_runtime_options(options: RuntimeOptions) -> RuntimeOptions:
    """The user's runtime options as a server runs its models (alone or on Ray Serve replicas).

    The event loop shares the cores with the model: ONNX Runtime threads spinning for work
    between calls would take its CPU away from accepting and answering. The arena shrinks after
    each run, so one maximal batch does not keep its peak memory (README: serving).
    """
    return options.with_overrides(spin_wait=False, arena_shrinkage=True)
