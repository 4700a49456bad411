"""``onnx-engine serve NAME=ARTIFACT ...``: the inference server (see ``onnx_engine.serving``)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.manifest import ArtifactManifest
from onnx_engine.commands.runtime_args import add_runtime_arguments, runtime_options
from onnx_engine.commands.serve_extra import require_modules

API_KEY_ENV = "ONNX_ENGINE_API_KEY"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
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
    limits = parser.add_argument_group("batching and limits")
    limits.add_argument("--max-batch-size", type=int, default=32, help="texts per engine call")
    limits.add_argument("--max-batch-tokens", type=int, default=8192,
                        help="padded tokens (longest x texts) per engine call")
    limits.add_argument("--max-queue-delay-ms", type=float, default=2.0,
                        help="wait this long for company when a text arrives at an idle model")
    limits.add_argument("--max-concurrent-requests", type=int, default=512,
                        help="inference requests in progress at most; more get 429")
    limits.add_argument("--max-client-batch-size", type=int, default=64,
                        help="texts per request at most")
    limits.add_argument("--max-input-chars", type=int, default=None,
                        help="characters per text at most (default: no limit; tokens are "
                        "truncated at the model's maximum length)")
    limits.add_argument("--max-input-tokens", type=int, default=None,
                        help="tokens per text at most, per model (default: the model's max "
                        "length); longer texts get 413 unless the request asks to truncate")
    limits.add_argument("--request-timeout-s", type=float, default=None,
                        help="answer 504 to requests not done after this long")
    limits.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024,
                        help="request bodies over this get 413")
    limits.add_argument("--client-timeout-s", type=float, default=30.0,
                        help="a request's headers, and then its body, must arrive within this "
                        "long, else its connection is closed (a late body gets 408); requests "
                        "take a concurrency slot only once their body is read")
    access = parser.add_argument_group("access and transport")
    access.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    access.add_argument("--ssl-certfile", type=Path, default=None, help="serve HTTPS")
    access.add_argument("--ssl-keyfile", type=Path, default=None, help="the certificate's key")
    access.add_argument("--drain-timeout-s", type=float, default=30.0,
                        help="on SIGTERM, answer the requests accepted so far for at most this "
                        "long, then exit anyway")
    access.add_argument("--cors-origin", action="append", default=[],
                        help="allow this browser origin (repeatable; default: no CORS)")
    access.add_argument("--log-requests", action="store_true",
                        help="one INFO log line per request")
    scale = parser.add_argument_group("Ray Serve (needs the ray extra)")
    scale.add_argument("--ray", action="store_true",
                       help="serve on Ray Serve replicas, one deployment per model")
    replicas = scale.add_mutually_exclusive_group()
    replicas.add_argument("--replicas", type=int, default=1, help="replicas per model")
    replicas.add_argument("--autoscale", default=None, metavar="MIN:MAX",
                          help="autoscale each model between MIN and MAX replicas")
    scale.add_argument("--ray-address", default=None,
                       help="join this Ray cluster ('auto': the one started by 'ray start'); "
                       "default: start a local one")
    scale.add_argument("--ray-num-cpus-per-replica", type=float, default=1.0,
                       help="CPUs each replica reserves; its threads are sized to them")
    scale.add_argument("--ray-num-gpus-per-replica", type=float, default=0.0,
                       help="GPUs each replica reserves (above 0: the replica runs CUDA)")
    scale.add_argument("--max-queued-requests", type=int, default=None,
                       help="requests waiting for a full model's replicas; more get 429 "
                       "(default: one replica's worth)")
    parser.set_defaults(handler=run)


def model_specs(values: list[str]) -> dict[str, Path]:
    """``NAME=ARTIFACT`` (or a bare ``ARTIFACT``, named after its folder) as name -> path.

    Raises:
        InputError: a bad or repeated name.
    """
    specs: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value).resolve().name, value
        if not _NAME.match(name):
            raise InputError(
                f"Model name {name!r} is not usable in a URL; use letters, digits, '.', '_', '-'."
            )
        if name in specs:
            raise InputError(f"Two models are named {name!r}; name them with NAME=ARTIFACT.")
        specs[name] = Path(path)
    return specs


def run(args: argparse.Namespace) -> int:
    serving = require_modules("serve", "onnx_engine.serving", ("config", "app", "server"))
    specs = model_specs(args.models)
    for path in specs.values():  # fail now, with exit 2, on a missing or corrupt artifact
        ArtifactManifest.read(path)
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise InputError("TLS needs both --ssl-certfile and --ssl-keyfile.")
    config = serving["config"].ServeConfig(
        max_batch_size=args.max_batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_queue_delay_ms=args.max_queue_delay_ms,
        max_concurrent_requests=args.max_concurrent_requests,
        max_client_batch_size=args.max_client_batch_size,
        max_input_chars=args.max_input_chars,
        max_input_tokens=args.max_input_tokens,
        request_timeout_s=args.request_timeout_s,
        max_body_bytes=args.max_body_bytes,
        client_timeout_s=args.client_timeout_s,
        api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV),
        cors_origins=tuple(args.cors_origin),
        log_requests=args.log_requests,
    )
    options = serving["config"].serving_runtime_options(runtime_options(args))
    if args.ray:
        return _run_on_ray(args, specs, config, options)

    def load() -> dict[str, Any]:
        import engine

        return {name: engine.load(path, options=options) for name, path in specs.items()}

    server_module = serving["server"]
    listener = server_module.Listener(args.host, args.port, args.ssl_certfile, args.ssl_keyfile,
                                      access_log=args.log_requests,
                                      drain_timeout_s=args.drain_timeout_s)
    app = serving["app"].build_app(config, load)
    sock = server_module.bind(listener)
    address = f"{listener.scheme}://{args.host}:{sock.getsockname()[1]}"

    def announce() -> None:  # stdout's first line; scripts read the address at its end
        print(f"onnx-engine serve: {', '.join(specs)} ready on {address}", flush=True)

    try:
        server = server_module.make_server(app, listener, on_ready=announce)
    except InputError:
        sock.close()
        raise
    print(f"onnx-engine serve: loading {', '.join(specs)} (listening on {address})",
          file=sys.stderr, flush=True)
    server.run(sockets=[sock])
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


def _run_on_ray(args: argparse.Namespace, specs: dict[str, Path], config: Any, options: Any) -> int:
    """The same server on Ray Serve (see ``onnx_engine.serving.ray_app``); blocks until Ctrl-C."""
    if args.ssl_certfile is not None:
        raise InputError("--ray serves plain HTTP (Serve's proxy); terminate TLS in front of it.")
    ray_app = require_modules("serve", "onnx_engine.serving", ("ray_app",))["ray_app"]
    scaling = ray_app.RayScaling(
        replicas=args.replicas,
        autoscale=ray_app.parse_autoscale(args.autoscale) if args.autoscale else None,
        num_cpus=args.ray_num_cpus_per_replica,
        num_gpus=args.ray_num_gpus_per_replica,
        max_queued_requests=args.max_queued_requests,
    )
    app = ray_app.application(specs, config, options, scaling)
    ray_app.run_blocking(app, args.host, args.port, args.ray_address, args.log_requests)
    return 0
