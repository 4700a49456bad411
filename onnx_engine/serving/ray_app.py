"""Ray Serve: the same server on many replicas and many machines.

One Serve deployment per model; each replica loads its artifact once and runs the native server's
own app (:func:`~onnx_engine.serving.app.build_app`: same routes, batcher, limits and metrics)
over that one model. With one model its deployment is the application's ingress
(``@serve.ingress``): Serve's proxy hands each HTTP request straight to a replica (power of two
choices), so a request crosses one Ray hop, as in any Serve application. Serve allows one
ingress per application, so several models sit behind a thin ``router`` deployment that reads
the model name from the path (``/v2/models/NAME/...``, ``/models/NAME...``) and forwards to that
model's replicas: one more hop (measured in the README). Either way one port answers every route
of ``onnx-engine serve``, for every model, with replicas on any node.

Backpressure: a replica admits ``max_ongoing_requests`` (>= the batch size, so batches fill);
Serve holds up to ``max_queued_requests`` more per proxy (or router replica) and answers the rest
429 with ``Retry-After`` like the native server. A replica that dies fails only its own requests
in flight (Serve's proxy answers them 500, the router 503); Serve starts a new one by itself.

The pieces: ``ray_scaling`` (:class:`RayScaling`), ``ray_replica`` (a model's replica) and
``ray_router`` (the router); here they are put together into one application.

``build(args)`` is the application builder for Ray's own CLI and config files::

    serve run onnx_engine.serving.ray_app:build models=clf=/srv/clf,t5=/srv/t5 replicas=2
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import InputError, MissingDependencyError
from engine.options import RuntimeOptions
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.model_specs import model_specs
from onnx_engine.serving.ray_replica import ModelServer, RoutedModelServer
from onnx_engine.serving.ray_router import ROUTER_NAME, Router
from onnx_engine.serving.ray_scaling import RayScaling
from onnx_engine.serving.settings import Number, Text, from_strings, setting_keys

RAY_INSTALL_HINT = "pip install 'onnx-engine[cpu,serve,ray]'"
# Ray Serve's throughput-optimized mode (proxy and replicas run requests on their main event
# loop, gRPC between them, GC frozen after start-up, no per-request log to stderr) without its
# direct ingress, which drops the proxy so each replica's own port must be load-balanced from
# outside. And worker niceness 0: Ray starts its workers (here: the proxy and the replicas, i.e.
# the whole server) at nice 15, so any other busy process on the node takes their CPU first.
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
             "RAY_worker_niceness": "0"}
# The runtime options `serve run` takes (the engine's RuntimeOptions checks their values).
_RUNTIME_ARGS = {"provider": Text(), "threads": Number(int, 1), "variant": Text()}


def _serve() -> Any:
    try:
        from ray import serve
    except ImportError as error:
        raise MissingDependencyError(
            f"Serving on Ray needs the ray extra ({error.name} is missing): {RAY_INSTALL_HINT}."
        ) from error
    return serve


def application(
    specs: Mapping[str, Path],
    config: ServeConfig,
    options: RuntimeOptions,
    scaling: RayScaling,
    replicas: Mapping[str, int] | None = None,
) -> Any:
    """The Serve application: one deployment per model behind the router.

    ``replicas`` overrides ``scaling.replicas`` for the models it names (e.g. more replicas of
    a busy classifier than of a rarely used generator).
    """
    if config.grpc_port is not None:
        raise InputError(
            "--grpc-port (grpc_port) is not served on Ray (Serve's proxies speak HTTP here); "
            "serve gRPC without Ray: onnx-engine serve ... --grpc-port PORT."
        )
    serve = _serve()
    replica_options = scaling.runtime_options(options)
    # Serve allows one ingress per application: a lone model is it; several sit behind the router.
    replica = serve.ingress()(ModelServer) if len(specs) == 1 else RoutedModelServer
    models = {}
    for name, path in specs.items():
        model_scaling = replace(scaling, replicas=(replicas or {}).get(name, scaling.replicas))
        deployment = serve.deployment(replica, name=f"model-{name}",
                                      **model_scaling.model_options(config))
        models[name] = deployment.bind(name, str(Path(path).resolve()), config, replica_options)
    if len(models) == 1:  # the model's replicas are the ingress: proxy -> replica, one hop
        return next(iter(models.values()))
    router = serve.deployment(
        Router, name=ROUTER_NAME, num_replicas=scaling.router_replicas,
        # The router only forwards: no CPU reserved, so it never takes a model replica's place.
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=max(1, len(specs)) * 8192,
        logging_config={"enable_access_log": config.log_requests},
    )
    return router.bind(config, **models)


def build(args: Mapping[str, Any]) -> Any:
    """Application builder for Ray's CLI and config files.

    ``models`` is ``NAME=PATH[,NAME=PATH...]`` (or a mapping in a config file); the other keys
    are every :class:`RayScaling` field by its key (``replicas``, ``autoscale`` as ``MIN:MAX``,
    ``num_cpus_per_replica``, ``num_gpus_per_replica``, ``max_queued_requests``,
    ``router_replicas``), the runtime options ``provider``, ``threads``, ``variant``, and every
    :class:`ServeConfig` field by name (``max_batch_size``, ``api_key``, ...). Values may be
    strings, as ``serve run`` passes them.

    Raises:
        InputError: no models, an unknown key, or a value of the wrong kind.
    """
    args = dict(args)
    models = args.pop("models", None)
    if not models:
        raise InputError("Give the models to serve: models=NAME=PATH[,NAME=PATH...].")
    specs = model_specs([part for part in models.split(",") if part]
                        if isinstance(models, str) else dict(models))
    config_keys, scaling_keys = setting_keys(ServeConfig), setting_keys(RayScaling)
    unknown = sorted(set(args) - set(config_keys) - set(scaling_keys) - set(_RUNTIME_ARGS))
    if unknown:
        accepted = sorted({"models", *scaling_keys, *_RUNTIME_ARGS, *config_keys})
        raise InputError(f"Unknown argument(s) {', '.join(unknown)}; accepted: "
                         f"{', '.join(accepted)}.")
    runtime = {key: kind.parse(key, value) if isinstance(value, str) else value
               for key, kind in _RUNTIME_ARGS.items() if (value := args.get(key)) is not None}
    config = from_strings(ServeConfig, {k: v for k, v in args.items() if k in config_keys})
    scaling = from_strings(RayScaling, {k: v for k, v in args.items() if k in scaling_keys})
    return application(specs, config, RuntimeOptions(**runtime), scaling)


def run_blocking(
    app: Any, host: str, port: int, address: str | None, access_log: bool = False
) -> None:
    """Start (or join) Ray, serve ``app`` on ``host:port`` until interrupted, then shut down.

    A Ray started here gets :data:`SERVE_ENV` (unless the environment sets those variables),
    since Serve reads them when its proxy and replica processes start.
    """
    import ray

    serve = _serve()
    if port == 0:  # Serve's proxy needs the number up front
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    if address is None:
        for key, value in SERVE_ENV.items():
            os.environ.setdefault(key, value)
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        serve.start(http_options={"host": host, "port": port},
                    logging_config={"enable_access_log": access_log})
        serve.run(app, name="onnx-engine", route_prefix="/", blocking=False)
        # Flushed: scripts read the URL from the first line.
        print(f"onnx-engine serve (Ray): http://{host}:{port}", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
