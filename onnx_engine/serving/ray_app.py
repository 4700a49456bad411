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

``build(args)`` is the application builder for Ray's own CLI and config files::

    serve run onnx_engine.serving.ray_app:build models=clf=/artifacts/clf,t5=/artifacts/t5 replicas=2
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import socket
import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import Response

from engine.errors import InputError, MissingDependencyError
from engine.options import RuntimeOptions
from onnx_engine.serving.app import as_serve_error, build_app, error_json_response
from onnx_engine.serving.auth import PUBLIC_PATHS, authorized
from onnx_engine.serving.config import ServeConfig, serving_runtime_options
from onnx_engine.serving.errors import (
    NotFoundError,
    OverloadedError,
    ServeError,
    UnauthorizedError,
    UnavailableError,
)

RAY_INSTALL_HINT = "pip install 'onnx-engine[cpu,serve,ray]'"
# /v2/models/NAME/... (KServe V2) and /models/NAME[/generate] (Hugging Face).
_MODEL_PATH = re.compile(r"^/(?:v2/)?models/([^/]+)")
# Server-wide routes every model's app answers; readiness must hold for every model.
_READINESS_PATHS = frozenset({"/v2/health/ready", "/health"})
ROUTER_NAME = "router"
# Ray Serve's throughput-optimized mode (proxy and replicas run requests on their main event
# loop, gRPC between them, GC frozen after start-up, no per-request log to stderr) without its
# direct ingress, which drops the proxy so each replica's own port must be load-balanced from
# outside. And worker niceness 0: Ray starts its workers (here: the proxy and the replicas, i.e.
# the whole server) at nice 15, so any other busy process on the node takes their CPU first.
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
             "RAY_worker_niceness": "0"}


def _serve() -> Any:
    try:
        from ray import serve
    except ImportError as error:
        raise MissingDependencyError(
            f"Serving on Ray needs the ray extra ({error.name} is missing): {RAY_INSTALL_HINT}."
        ) from error
    return serve


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

    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_queued_requests: int | None = None
    router_replicas: int = 1

    def __post_init__(self) -> None:
        for name in ("replicas", "router_replicas"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}.")
        if self.autoscale is not None:
            low, high = self.autoscale
            if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high and high):
                raise InputError(
                    f"autoscale must be MIN:MAX with 0 <= MIN <= MAX and MAX >= 1, got "
                    f"{low}:{high}."
                )
        if not isinstance(self.num_cpus, (int, float)) or self.num_cpus <= 0:
            raise InputError(f"num_cpus per replica must be > 0, got {self.num_cpus!r}.")
        if not isinstance(self.num_gpus, (int, float)) or self.num_gpus < 0:
            raise InputError(f"num_gpus per replica must be >= 0, got {self.num_gpus!r}.")
        if self.max_queued_requests is not None and (
            not isinstance(self.max_queued_requests, int) or self.max_queued_requests < 1
        ):
            raise InputError(
                f"max_queued_requests must be an integer >= 1, got {self.max_queued_requests!r}."
            )

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


@dataclass(frozen=True)
class ForwardedRequest:
    """An HTTP request as the router hands it to a model replica (body already read)."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None


@dataclass(frozen=True)
class ForwardedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ModelServer:
    """One replica of one model: the native server's app over that model, loaded once.

    As the ingress of a one-model application (``serve.ingress()`` over this class, the app
    bound late by ``__serve_build_asgi_app__`` since the model loads in the replica), Serve's
    proxy hands HTTP requests straight to the app on this replica's event loop, and Serve runs
    the app's lifespan (which starts the batcher) before it routes to the replica and when it
    stops it (what is queued still runs). Behind the router of several models (Serve allows one
    ingress per application) :class:`RoutedModelServer` runs the same app through
    :meth:`forward`.
    """

    async def __init__(self, name: str, path: str, config: ServeConfig,
                       options: RuntimeOptions) -> None:
        import engine

        model = await asyncio.to_thread(engine.load, Path(path), options=options)
        self._app = build_app(config, {name: model})

    def __serve_build_asgi_app__(self) -> Any:
        return self._app

    async def forward(self, request: ForwardedRequest) -> ForwardedResponse:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method, "scheme": "http", "path": request.path,
            "raw_path": request.path.encode(), "root_path": "",
            "query_string": request.query_string, "headers": request.headers,
            "client": request.client, "server": None,
        }
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if body_sent:  # the body is all here; a disconnect arrives as this task's cancellation
                await asyncio.Event().wait()
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}

        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)
        return ForwardedResponse(start["status"], list(start.get("headers", [])), b"".join(chunks))


class RoutedModelServer(ModelServer):
    """A model replica behind the router: runs its app's lifespan itself (Serve does not)."""

    async def __init__(self, name: str, path: str, config: ServeConfig,
                       options: RuntimeOptions) -> None:
        await super().__init__(name, path, config, options)
        self._lifespan = self._app.router.lifespan_context(self._app)
        await self._lifespan.__aenter__()

    async def __del__(self) -> None:
        """Serve stops the replica: finish what is queued (the native server's drain)."""
        await self._lifespan.__aexit__(None, None, None)


class Router:
    """The HTTP ingress: every route of ``onnx-engine serve`` on one port, for every model."""

    def __init__(self, config: ServeConfig, **models: Any) -> None:
        self._config = config
        self._models = models  # name -> DeploymentHandle of the model's deployment

    async def __call__(self, request: Request) -> Response:
        path = request.url.path
        try:
            forwarded = await _forwarded(request)
            match = _MODEL_PATH.match(path)
            if match:
                name = match.group(1)
                self._check_key(request)
                if name not in self._models:
                    raise NotFoundError(
                        f"No model named '{name}'; this server has "
                        f"{', '.join(sorted(self._models))}."
                    )
                return await self._forward(name, forwarded)
            if path in _READINESS_PATHS:  # ready when every model is
                answers = await asyncio.gather(
                    *(self._forward(name, forwarded) for name in self._models))
                return next((a for a in answers if a.status_code != 200), answers[0])
            return await self._forward(min(self._models), forwarded)
        except ServeError as error:
            return error_json_response(as_serve_error(error))

    def _check_key(self, request: Request) -> None:
        """The models' apps check the key too; the router checks it before answering 404."""
        key = self._config.api_key
        if key is not None and request.method != "OPTIONS" and request.url.path not in PUBLIC_PATHS:
            if not authorized(request.scope["headers"], key):
                raise UnauthorizedError(
                    "Missing or wrong API key: send the header 'Authorization: Bearer <key>'.",
                    {"WWW-Authenticate": "Bearer"},
                )

    async def _forward(self, name: str, forwarded: ForwardedRequest) -> Response:
        from ray import exceptions as ray_errors
        from ray.serve.exceptions import BackPressureError

        try:
            answer: ForwardedResponse = await self._models[name].forward.remote(forwarded)
        except BackPressureError:
            raise OverloadedError(
                f"Every replica of '{name}' is at its limit and the queue is full; retry shortly.",
                {"Retry-After": "1"},
            ) from None
        except (ray_errors.RayActorError, ray_errors.ActorUnavailableError) as error:
            raise UnavailableError(
                f"The replica of '{name}' running this request stopped ({type(error).__name__}); "
                "retry: Serve routes it to a live replica.", {"Retry-After": "1"},
            ) from None
        response = Response(answer.body, status_code=answer.status)
        response.raw_headers = answer.headers
        return response


async def _forwarded(request: Request) -> ForwardedRequest:
    client = request.client
    return ForwardedRequest(
        request.method, request.url.path, request.scope.get("query_string", b""),
        list(request.scope["headers"]), await request.body(),
        (client.host, client.port) if client else None,
    )


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


# --- `serve run onnx_engine.serving.ray_app:build key=value ...` and config files' `args:` ------

_SCALING_ARGS = {
    "replicas": int, "router_replicas": int, "num_cpus_per_replica": float,
    "num_gpus_per_replica": float, "max_queued_requests": int,
}
_RUNTIME_ARGS = {"provider": str, "threads": int, "variant": str}


def build(args: Mapping[str, Any]) -> Any:
    """Application builder for Ray's CLI and config files.

    ``models`` is ``NAME=PATH[,NAME=PATH...]`` (or a mapping in a config file); the other keys
    are ``replicas``, ``autoscale`` (``MIN:MAX``), ``num_cpus_per_replica``,
    ``num_gpus_per_replica``, ``max_queued_requests``, ``router_replicas``, the runtime options
    ``provider``, ``threads``, ``variant``, and every :class:`ServeConfig` field by name
    (``max_batch_size``, ``api_key``, ...). Values may be strings, as ``serve run`` passes them.

    Raises:
        InputError: no models, an unknown key, or a value of the wrong kind.
    """
    args = dict(args)
    models = args.pop("models", None)
    if not models:
        raise InputError("Give the models to serve: models=NAME=PATH[,NAME=PATH...].")
    if isinstance(models, str):
        from onnx_engine.commands.serve import model_specs

        specs = model_specs([part for part in models.split(",") if part])
    else:
        specs = {str(name): Path(path) for name, path in dict(models).items()}
    autoscale = args.pop("autoscale", None)
    scaling_values = {key: _coerce(key, args.pop(key), kind)
                      for key, kind in _SCALING_ARGS.items() if key in args}
    runtime = {key: _coerce(key, args.pop(key), kind)
               for key, kind in _RUNTIME_ARGS.items() if key in args}
    config_fields = {field.name: field for field in fields(ServeConfig)}
    unknown = sorted(set(args) - set(config_fields))
    if unknown:
        accepted = sorted({"models", "autoscale", *_SCALING_ARGS, *_RUNTIME_ARGS, *config_fields})
        raise InputError(f"Unknown argument(s) {', '.join(unknown)}; accepted: "
                         f"{', '.join(accepted)}.")
    config = ServeConfig(**{key: _config_value(key, value, config_fields[key].type)
                            for key, value in args.items()})
    scaling = RayScaling(
        replicas=scaling_values.get("replicas", 1),
        autoscale=parse_autoscale(autoscale) if autoscale is not None else None,
        num_cpus=scaling_values.get("num_cpus_per_replica", 1.0),
        num_gpus=scaling_values.get("num_gpus_per_replica", 0.0),
        max_queued_requests=scaling_values.get("max_queued_requests"),
        router_replicas=scaling_values.get("router_replicas", 1),
    )
    return application(specs, config, RuntimeOptions(**runtime), scaling)


def parse_autoscale(value: str) -> tuple[int, int]:
    """``MIN:MAX`` as two integers (their bounds are checked by :class:`RayScaling`)."""
    low, sep, high = str(value).partition(":")
    try:
        if not sep:
            raise ValueError
        return int(low), int(high)
    except ValueError:
        raise InputError(f"autoscale must be MIN:MAX (e.g. 1:4), got {value!r}.") from None


def _coerce(key: str, value: Any, kind: type) -> Any:
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be {kind.__name__}, got {value!r}.") from None


def _config_value(key: str, value: Any, annotation: str) -> Any:
    """A ServeConfig value from a string (``serve run``) or as given (config files)."""
    if not isinstance(value, str) or annotation.startswith("str"):
        return value
    if annotation.startswith("tuple"):
        return tuple(part for part in value.split(",") if part)
    if value.lower() in ("none", "") and "None" in annotation:
        return None
    if annotation.startswith("bool"):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InputError(f"{key} must be true or false, got {value!r}.")
        return value.lower() in ("true", "1")
    return _coerce(key, value, float if annotation.startswith("float") else int)


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
