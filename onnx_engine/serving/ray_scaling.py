"""How a Ray Serve application scales: replicas per model, what each reserves, what may wait.

Importable without Ray: the ``serve`` command makes its ``--ray`` flags from these fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.errors import InputError
from engine.options import RuntimeOptions
from onnx_engine.serving.config import ServeConfig, serving_runtime_options
from onnx_engine.serving.settings import Number, Parsed, check_settings, setting

RAY = "ray"  # the serve command's argument group of these flags
REPLICAS = Number(int, 1)


def parse_autoscale(key: str, value: str) -> tuple[int, int]:
    """``MIN:MAX`` as two integers (their bounds are checked by :func:`check_autoscale`)."""
    low, sep, high = str(value).partition(":")
    try:
        if not sep:
            raise ValueError
        return int(low), int(high)
    except ValueError:
        raise InputError(f"{key} must be MIN:MAX (e.g. 1:4), got {value!r}.") from None


def check_autoscale(label: str, value: Any) -> None:
    low, high = value
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high and high):
        raise InputError(
            f"{label} must be MIN:MAX with 0 <= MIN <= MAX and MAX >= 1, got {low}:{high}."
        )


@dataclass(frozen=True)
class RayScaling:
    """How many replicas of each model run, what each one reserves, and how much may wait.

    Attributes:
        replicas: fixed replicas per model (ignored with ``autoscale``).
        autoscale: ``(min, max)`` replicas per model; Serve adds one when the replicas hold more
            than a full batch each on average, and removes idle ones.
        num_cpus: CPUs a replica reserves; its ONNX Runtime threads are sized to it (at least 1).
        num_gpus: GPUs a replica reserves (fractions share one); above 0 the replica runs CUDA.
        max_queued_requests: requests each router replica holds for a model whose replicas are
            all full; more get 429. ``None``: one replica's worth (``max_ongoing_requests``).
        router_replicas: HTTP router replicas (one per node spreads its CPU cost).
    """

    replicas: int = setting(1, REPLICAS, "replicas per model", group=RAY, exclusive="replicas")
    autoscale: tuple[int, int] | None = setting(
        None, Parsed(parse_autoscale, check_autoscale, optional=True),
        "autoscale each model between MIN and MAX replicas", group=RAY, exclusive="replicas",
        metavar="MIN:MAX")
    num_cpus: float = setting(
        1.0, Number(float, 0, strict=True), "CPUs each replica reserves; its threads are sized "
        "to them", flag="--ray-num-cpus-per-replica", key="num_cpus_per_replica",
        label="num_cpus per replica", group=RAY, metavar="CPUS")
    num_gpus: float = setting(
        0.0, Number(float, 0), "GPUs each replica reserves (above 0: the replica runs CUDA)",
        flag="--ray-num-gpus-per-replica", key="num_gpus_per_replica",
        label="num_gpus per replica", group=RAY, metavar="GPUS")
    max_queued_requests: int | None = setting(
        None, Number(int, 1, optional=True), "requests waiting for a full model's replicas; "
        "more get 429 (default: one replica's worth)", group=RAY)
    router_replicas: int = setting(
        1, REPLICAS, "HTTP router replicas in front of several models (one per node spreads "
        "its CPU cost)", flag="--ray-router-replicas", group=RAY, metavar="N")

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def threads(self) -> int:
        """ONNX Runtime intra-op threads of a replica: its reserved CPUs, at least one."""
        return max(1, math.floor(self.num_cpus))

    def runtime_options(self, options: RuntimeOptions) -> RuntimeOptions:
        """The user's options as a server runs them (``serving_runtime_options``), with threads
        sized to the replica (unless set) and CUDA on GPUs."""
        return serving_runtime_options(options).with_overrides(
            threads=options.threads or self.threads,
            provider="cuda" if self.num_gpus > 0 else options.provider,
        )

    def model_options(self, config: ServeConfig) -> dict[str, Any]:
        """``serve.deployment`` options of a model deployment."""
        ongoing = max(config.max_concurrent_requests, config.max_batch_size)
        options: dict[str, Any] = {
            "max_ongoing_requests": ongoing,
            "max_queued_requests": self.max_queued_requests or ongoing,
            # Past the queue Serve's proxy answers 429 with Retry-After, as the native server.
            "backpressure_config": {"status_code": 429, "retry_after_s": 1},
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            # One access-log line per request costs the replica CPU: off, like the native server.
            "logging_config": {"enable_access_log": config.log_requests},
        }
        if self.autoscale is None:
            options["num_replicas"] = self.replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.autoscale[0],
                "max_replicas": self.autoscale[1],
                "initial_replicas": max(1, self.autoscale[0]),
                "target_ongoing_requests": config.max_batch_size,
            }
        return options
