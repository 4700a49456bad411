"""What the routes share: the served models, readiness, and the admission budget."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onnx_engine.serving.batcher import Batcher
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.errors import NotFoundError, UnavailableError
from onnx_engine.serving.metrics import ServerMetrics
from onnx_engine.serving.tasks import handler_for
from onnx_engine.serving.tasks.base import MODEL_VERSION, TaskHandler


@dataclass(frozen=True)
class ServedModel:
    """One model as the routes see it: its handler (task logic) and its batcher (queue)."""

    name: str
    handler: TaskHandler
    batcher: Batcher


class ServerState:
    """The models, readiness and drain flag of one app; one per app, never global.

    ``ready`` turns true when every model is loaded and its batcher runs; ``draining`` when
    shutdown starts (SIGTERM): from then on readiness is 503 and new inference requests get 503
    while accepted ones finish. ``abandoned`` counts admitted requests cancelled before their
    answer (the drain deadline passed); ``drain_started`` is when draining began
    (``time.monotonic()``), from which every listener's drain deadline runs.
    """

    def __init__(self, config: ServeConfig, metrics: ServerMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        self.ready = False
        self.draining = False
        self.drain_started: float | None = None
        self.in_flight = 0
        metrics.in_flight.set_function(lambda: self.in_flight)  # read when scraped
        self.abandoned = 0
        self.load_error: str | None = None

    def install(self, models: Mapping[str, Any]) -> None:
        """Wrap loaded engine models in handlers and start their batchers (on the event loop)."""
        config = self.config
        for name, model in models.items():
            handler = handler_for(model, config)
            batcher = Batcher(name, handler.run_batch, config.max_batch_size,
                              config.max_batch_tokens, config.max_queue_delay_ms / 1000,
                              self.metrics)
            batcher.start()
            self.models[name] = ServedModel(name, handler, batcher)
        self.ready = True

    def begin_drain(self) -> None:
        """Stop taking new requests (readiness and inference answer 503) from now on."""
        if not self.draining:
            self.draining = True
            self.drain_started = time.monotonic()

    async def close(self) -> None:
        for served in self.models.values():
            await served.batcher.close()

    def model(self, name: str, version: str = "") -> ServedModel:
        """The model to run a request on; ``version`` as the V2 protocol names it (empty: any).

        Raises:
            UnavailableError: models still loading, or the server is draining.
            NotFoundError: no model of that name, or a version other than its one.
        """
        self.check_serving()
        if name not in self.models:
            raise NotFoundError(
                f"No model named '{name}'; this server has {', '.join(sorted(self.models))}."
            )
        if version not in ("", MODEL_VERSION):
            raise NotFoundError(
                f"Model '{name}' has no version '{version}'; its one version is "
                f"'{MODEL_VERSION}' (or leave the version out)."
            )
        return self.models[name]

    def check_serving(self) -> None:
        if self.draining:
            raise UnavailableError("The server is shutting down; retry on another replica.",
                                   {"Retry-After": "1"})
        if not self.ready:
            detail = f" ({self.load_error})" if self.load_error else ""
            raise UnavailableError(f"Models are still loading{detail}.", {"Retry-After": "1"})
