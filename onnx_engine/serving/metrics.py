"""Prometheus metrics of one server, in a registry of its own (no process-global state).

Names follow text-embeddings-inference's, with our prefix: the durations of a request's stages
(queue, tokenization, inference, whole request), the batches' sizes in texts and padded tokens,
the queue's size, and the outcomes by model and ``error_type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "onnx_engine"
_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKENS = tuple(2**power for power in range(3, 17))
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """Every metric the server records; ``render()`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        model = ("model",)

        def histogram(name: str, doc: str, buckets: tuple) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", doc, model, buckets=buckets,
                             registry=self.registry)

        self.request_duration = histogram(
            "request_duration_seconds", "Time from admission to answer.", _SECONDS)
        self.queue_duration = histogram(
            "queue_duration_seconds", "Time a text waited in the queue.", _SECONDS)
        self.tokenization_duration = histogram(
            "tokenization_duration_seconds", "Time to tokenize a request's texts.", _SECONDS)
        self.inference_duration = histogram(
            "inference_duration_seconds", "Time of one batched engine call.", _SECONDS)
        self.batch_size = histogram("batch_size", "Texts in one engine call.", _SIZES)
        self.batch_tokens = histogram(
            "batch_tokens", "Padded tokens (longest x texts) of one engine call.", _TOKENS)
        self.queue_size = Gauge(
            f"{PREFIX}_queue_size", "Texts waiting for their model.", model, registry=self.registry)
        self.in_flight = Gauge(
            f"{PREFIX}_requests_in_flight", "Inference requests admitted and not yet answered.",
            registry=self.registry)
        self.successes = Counter(
            f"{PREFIX}_request_success", "Inference requests answered with a result.", model,
            registry=self.registry)
        self.failures = Counter(
            f"{PREFIX}_request_failure", "Requests answered with an error.",
            ("model", "error_type"), registry=self.registry)

    def for_model(self, model: str) -> ModelMetrics:
        """The series of ``model``, labelled once (see :class:`ModelMetrics`)."""
        return ModelMetrics(
            request_duration=self.request_duration.labels(model),
            queue_duration=self.queue_duration.labels(model),
            tokenization_duration=self.tokenization_duration.labels(model),
            inference_duration=self.inference_duration.labels(model),
            batch_size=self.batch_size.labels(model),
            batch_tokens=self.batch_tokens.labels(model),
            successes=self.successes.labels(model),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class ModelMetrics:
    """One model's series of the :class:`ServerMetrics`, labelled when the model is installed.

    ``labels(model)`` takes a lock and builds a key on every call; a request records six to
    eight values, so its path uses these children instead (the same series ``/metrics`` shows).
    """

    request_duration: Any
    queue_duration: Any
    tokenization_duration: Any
    inference_duration: Any
    batch_size: Any
    batch_tokens: Any
    successes: Any

    def observe_batch(self, size: int, tokens: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_tokens.observe(tokens)
        self.inference_duration.observe(seconds)
