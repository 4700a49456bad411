"""``onnx-engine serve NAME=ARTIFACT ...``: the inference server (see ``onnx_engine.serving``)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.manifest import ArtifactManifest
from onnx_engine.commands.runtime_args import add_runtime_arguments, runtime_options
from onnx_engine.commands.serve_extra import require_modules
from onnx_engine.serving.config import (
    ACCESS,
    API_KEY_ENV,
    LIMITS,
    ServeConfig,
    serving_runtime_options,
)
from onnx_engine.serving.model_specs import load_served_model, model_specs
from onnx_engine.serving.ray_scaling import RAY, RayScaling
from onnx_engine.serving.settings import add_arguments, from_arguments

EXIT_WORK_LOST = 1  # the drain deadline passed before every accepted request was answered


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's help ends with its default ("not set" for None), unless the help names it
    already or the flag is a switch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text or default is False
                or default == [] or default is argparse.SUPPRESS):
            return text
        shown = "not set" if default is None else "%(default)s"
        return f"{text} (default: {shown})".lstrip()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve artifacts over HTTP (KServe V2 / Triton, Hugging Face) with batching",
        formatter_class=HelpWithDefaults,
    )
    parser.add_argument("models", nargs="+", metavar="NAME=ARTIFACT",
                        help="artifact folders to serve; a bare ARTIFACT is named after its folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    add_runtime_arguments(parser)
    groups = {LIMITS: parser.add_argument_group("batching and limits"),
              ACCESS: parser.add_argument_group("access and transport"),
              RAY: parser.add_argument_group("Ray Serve (needs the ray extra)")}
    add_arguments(parser, ServeConfig, groups)
    access = groups[ACCESS]
    access.add_argument("--ssl-certfile", type=Path, default=None, help="serve HTTPS")
    access.add_argument("--ssl-keyfile", type=Path, default=None, help="the certificate's key")
    access.add_argument("--drain-timeout-s", type=float, default=30.0,
                        help="on SIGTERM, answer the requests accepted so far for at most this "
                        "long, then exit anyway")
    scale = groups[RAY]
    scale.add_argument("--ray", action="store_true",
                       help="serve on Ray Serve replicas, one deployment per model")
    scale.add_argument("--ray-address", default=None,
                       help="join this Ray cluster ('auto': the one started by 'ray start'); "
                       "default: start a local one")
    add_arguments(parser, RayScaling, groups)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    serving = require_modules("serve", "onnx_engine.serving", ("app", "server"))
    specs = model_specs(args.models)
    for path in specs.values():  # fail now, with exit 2, on a missing or corrupt artifact
        ArtifactManifest.read(path)
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise InputError("TLS needs both --ssl-certfile and --ssl-keyfile.")
    key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    config = from_arguments(ServeConfig, args, api_key=key)
    options = serving_runtime_options(runtime_options(args))
    if args.ray:
        return _run_on_ray(args, specs, config, options)

    def load() -> dict[str, Any]:
        return {name: load_served_model(path, options) for name, path in specs.items()}

    server_module = serving["server"]
    listener = server_module.Listener(args.host, args.port, args.ssl_certfile, args.ssl_keyfile,
                                      access_log=args.log_requests,
                                      drain_timeout_s=args.drain_timeout_s)
    grpc = _grpc_listener(server_module, listener, config.grpc_port)
    app = serving["app"].build_app(config, load, alongside=grpc.serving if grpc else None)
    sock = server_module.bind(listener)
    address = f"{listener.scheme}://{args.host}:{sock.getsockname()[1]}"

    def announce() -> None:  # stdout's first line; scripts read the address at its end
        also = f" (gRPC on {grpc.address})" if grpc else ""
        print(f"onnx-engine serve: {', '.join(specs)} ready{also} on {address}", flush=True)

    try:
        server = server_module.make_server(app, listener, on_ready=announce)
    except InputError:
        sock.close()
        raise
    print(f"onnx-engine serve: loading {', '.join(specs)} (listening on {address})",
          file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    if not server.started:  # the app's startup failed (uvicorn logged why)
        print("error: the server did not start (see above).", file=sys.stderr)
        return 2
    state = app.state.serving
    if state.load_error is not None:
        print(f"error: loading the models failed: {state.load_error}", file=sys.stderr)
        return 2
    if state.abandoned:
        print(f"error: the drain deadline (--drain-timeout-s {args.drain_timeout_s}) passed with "
              f"{state.abandoned} accepted request(s) unanswered; they were cancelled.",
              file=sys.stderr)
        return EXIT_WORK_LOST
    return 0


def _grpc_listener(server_module: Any, listener: Any, port: int | None) -> Any:
    """The gRPC listener ``--grpc-port`` asks for (None without it); grpc is imported only
    then. A port given is tried now, so a taken one fails before serving, in one line."""
    if port is None:
        return None
    grpc_service = require_modules("serve", "onnx_engine.serving", ("grpc_service",))
    if port:
        server_module.bind(replace(listener, port=port), flag="--grpc-port").close()
    return grpc_service["grpc_service"].GrpcListener(listener, port)


def _run_on_ray(args: argparse.Namespace, specs: dict[str, Path], config: Any, options: Any) -> int:
    """The same server on Ray Serve (see ``onnx_engine.serving.ray_app``); blocks until Ctrl-C."""
    if args.ssl_certfile is not None:
        raise InputError("--ray serves plain HTTP (Serve's proxy); terminate TLS in front of it.")
    ray_app = require_modules("serve", "onnx_engine.serving", ("ray_app",))["ray_app"]
    scaling = from_arguments(RayScaling, args)
    app = ray_app.application(specs, config, options, scaling)
    ray_app.run_blocking(app, args.host, args.port, args.ray_address, args.log_requests)
    return 0
