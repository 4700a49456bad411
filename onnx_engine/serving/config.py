"""The server's settings: one frozen dataclass, validated once when it is built.

Each field is declared once (:func:`~onnx_engine.serving.settings.setting`): the ``serve``
command's flags and Ray's ``serve run`` arguments are made from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from engine.errors import InputError
from engine.options import RuntimeOptions
from onnx_engine.serving.settings import Number, Switch, Text, Texts, check_settings, setting

API_KEY_ENV = "ONNX_ENGINE_API_KEY"  # read by the serve command when --api-key is not given
# CLI argument groups of the serve command.
LIMITS, ACCESS = "limits", "access"
POSITIVE_INT = Number(int, 1, phrase="a positive integer")
OPTIONAL_POSITIVE_INT = Number(int, 1, optional=True, phrase="a positive integer")
POSITIVE_NUMBER = Number(float, 0, strict=True, phrase="a positive number")


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
        grpc_port: also serve the Open Inference Protocol over gRPC on this port (0: any free
            one), on the HTTP host; ``None``: no gRPC listener.
    """

    max_batch_size: int = setting(32, POSITIVE_INT, "texts per engine call", group=LIMITS)
    max_batch_tokens: int = setting(8192, POSITIVE_INT,
                                    "padded tokens (longest x texts) per engine call",
                                    group=LIMITS)
    max_queue_delay_ms: float = setting(
        2.0, Number(float, 0), "wait this long for company when a text arrives at an idle model",
        group=LIMITS)
    max_concurrent_requests: int = setting(
        512, POSITIVE_INT, "inference requests in progress at most; more get 429", group=LIMITS)
    max_client_batch_size: int = setting(64, POSITIVE_INT, "texts per request at most",
                                         group=LIMITS)
    max_input_chars: int | None = setting(
        None, OPTIONAL_POSITIVE_INT, "characters per text at most (default: no limit; tokens "
        "are truncated at the model's maximum length)", group=LIMITS)
    max_input_tokens: int | None = setting(
        None, OPTIONAL_POSITIVE_INT, "tokens per text at most, per model (default: the model's "
        "max length); longer texts get 413 unless the request asks to truncate", group=LIMITS)
    request_timeout_s: float | None = setting(
        None, Number(float, 0, strict=True, optional=True, phrase="a positive number"),
        "answer 504 to requests not done after this long", group=LIMITS)
    max_body_bytes: int = setting(8 * 1024 * 1024, POSITIVE_INT,
                                  "request bodies over this get 413", group=LIMITS)
    client_timeout_s: float = setting(
        30.0, POSITIVE_NUMBER, "a request's headers, and then its body, must arrive within this "
        "long, else its connection is closed (a late body gets 408); requests take a "
        "concurrency slot only once their body is read", group=LIMITS)
    api_key: str | None = setting(
        None, Text(optional=True), f"require 'Authorization: Bearer KEY' (default: "
        f"${API_KEY_ENV})", label="The API key", group=ACCESS)
    cors_origins: tuple[str, ...] = setting(
        (), Texts(), "allow this browser origin (repeatable; default: no CORS)",
        flag="--cors-origin", group=ACCESS, metavar="ORIGIN")
    log_requests: bool = setting(False, Switch(), "one INFO log line per request", group=ACCESS)
    grpc_port: int | None = setting(
        None, Number(int, 0, optional=True, phrase="0 (any free port) to 65535"),
        "also serve the Open Inference Protocol over gRPC (tritonclient.grpc) on this port, "
        "0: any free one (default: no gRPC)", group=ACCESS, metavar="PORT")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.grpc_port is not None and self.grpc_port > 65535:
            raise InputError(f"grpc_port must be 0 (any free port) to 65535, got {self.grpc_port}.")
        if self.max_input_tokens is not None and self.max_input_tokens > self.max_batch_tokens:
            # One text may cost no more than a whole engine call: memory per call follows
            # max_batch_tokens (and T5's encoder attention the square of one text's tokens).
            raise InputError(
                f"max_input_tokens must be at most max_batch_tokens={self.max_batch_tokens}, got "
                f"{self.max_input_tokens}: one text may not cost more than a whole batch. Raise "
                "max_batch_tokens too if the memory allows."
            )

    def __repr__(self) -> str:
        # The key must never reach a log line or an error message.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["api_key"] = "<set>" if self.api_key else None
        return f"ServeConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def serving_runtime_options(options: RuntimeOptions) -> RuntimeOptions:
    """The user's runtime options as a server runs its models (alone or on Ray Serve replicas).

    The event loop shares the cores with the model: ONNX Runtime threads spinning for work
    between calls would take its CPU away from accepting and answering. The arena shrinks after
    each run, so one maximal batch does not keep its peak memory (README: serving).
    """
    return options.with_overrides(spin_wait=False, arena_shrinkage=True)
