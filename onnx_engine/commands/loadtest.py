"""``onnx-engine loadtest URL --model NAME --artifact PATH``: closed-loop load, answers checked."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from engine.errors import InputError
from onnx_engine.commands.runtime_args import read_text_lines
from onnx_engine.commands.serve_extra import require_modules
from onnx_engine.loadtest.protocols import protocol_names

DEFAULT_TEXTS = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "real_sentences.txt"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "loadtest", help="load-test a running server; every answer is checked in-process"
    )
    parser.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True, help="model name on the server")
    parser.add_argument("--artifact", required=True,
                        help="the model's artifact, run in-process to check each answer")
    parser.add_argument("--protocol", choices=protocol_names(), default="hf",
                        help="openai: POST /v1/embeddings (feature-extraction models)")
    parser.add_argument("--concurrency", default="1,4,16,64",
                        help="comma-separated client counts, one level each")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    parser.add_argument("--max-requests", type=int, default=100_000,
                        help="requests per level at most (the other bound)")
    parser.add_argument("--texts", dest="input", default=None,
                        help="file with one text per line (default: the bundled sentences)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="text2text only")
    parser.add_argument("--api-key", default=None, help="default: $ONNX_ENGINE_API_KEY")
    parser.add_argument("--label", default="server", help="name of this server in the report")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--markdown", type=Path, default=None, help="write a table here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    parser.set_defaults(handler=run, texts=[])


def run(args: argparse.Namespace) -> int:
    modules = require_modules("loadtest", "onnx_engine.loadtest",
                              ("protocols", "reference", "runner", "report"))
    levels = _levels(args.concurrency)
    texts = _texts(args)
    api_key = args.api_key or os.environ.get("ONNX_ENGINE_API_KEY")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    runs = load_test(modules, {args.label: args.url}, args.model, args.artifact, args.protocol,
                     texts, levels, args.duration, args.max_requests, headers,
                     args.max_new_tokens)
    result = runs[args.label]
    for level in result["levels"]:
        print(_summary_line(level), file=sys.stderr)
    meta = run_meta(" ".join(shlex.quote(a) for a in ["onnx-engine", *sys.argv[1:]]),
                    result["load_before"])
    report = modules["report"]
    if args.json:
        report.write_json(runs, args.json, meta)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report.markdown(runs, meta), encoding="utf-8")
    if args.plot:
        report.plot(runs, args.plot)
    failures = sum(level["mixed_up"] + level["lost"] for level in result["levels"])
    return 1 if failures else 0


def load_test(modules: dict[str, Any], urls: dict[str, str], model_name: str, artifact: str,
              protocol: str, texts: list[str], levels: list[int], duration: float,
              max_requests: int, headers: dict[str, str], max_new_tokens: int,
              rounds: int = 1) -> dict[str, dict[str, Any]]:
    """Load the artifact, answer every text in-process, then load each server (label -> URL).

    Each level runs in ``rounds`` rounds of ``duration / rounds`` seconds, the servers taking
    turns, so on a shared machine they all see the same load.
    """
    import engine
    from onnx_engine.bench.machine import load_average

    runner = modules["runner"]
    model = engine.load(artifact)
    parameters = modules["protocols"].task_answers(model.task).parameters(max_new_tokens)
    wire = modules["protocols"].Protocol(protocol, model.task, model_name, parameters)
    reference = modules["reference"].build_reference(model, texts, parameters)
    load_before = load_average()
    overheads = asyncio.run(runner.paired_overhead(
        urls, wire, lambda text: modules["reference"].answer(model, text, parameters), texts,
        min(duration, 10.0), 1000, headers))
    tallies = {label: {level: runner.Tally(level) for level in levels} for label in urls}
    for level in levels:
        for _ in range(rounds):
            for label, url in urls.items():
                asyncio.run(runner.run_level(url, wire, texts, reference, level, duration / rounds,
                                             max_requests // rounds, headers,
                                             tallies[label][level]))
    load_after = load_average()
    return {
        label: {"url": url, "model": model_name, "task": model.task, "protocol": protocol,
                "texts": len(texts), "duration_s": duration, "rounds": rounds,
                "parameters": parameters, "overhead": overheads[label],
                "load_before": load_before, "load_after": load_after,
                "levels": [tallies[label][level].result().as_json() for level in levels]}
        for label, url in urls.items()
    }


def run_meta(command: str, load_before: Any) -> dict[str, Any]:
    from engine.cpu import current_cpu
    from onnx_engine.bench.machine import cpu_model, load_average

    flags = current_cpu().flags  # they pick the matmul kernels: figures differ with them
    return {"command": command, "cpu": cpu_model(), "cores": os.cpu_count(),
            "cpu_isa_flags": list(flags) if flags is not None else None,
            "load_before": load_before, "load_after": load_average()}


def _summary_line(level: dict[str, Any]) -> str:
    return (f"clients {level['concurrency']:>4}: {level['throughput_rps']:8.1f} req/s  "
            f"p50 {level['p50_ms']} ms  p99 {level['p99_ms']} ms  batch {level['mean_batch_size']}"
            f"  {level['statuses']}  mixed-up {level['mixed_up']}  lost {level['lost']}")


def _levels(value: str) -> list[int]:
    try:
        levels = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or any(level < 1 for level in levels):
        raise InputError(f"--concurrency must be positive integers like 1,4,16, got {value!r}.")
    return levels


def _texts(args: argparse.Namespace) -> list[str]:
    source = DEFAULT_TEXTS if args.input is None else args.input
    texts = [text for text in read_text_lines(source, "--texts") if text.strip()]
    if not texts:
        raise InputError(f"--texts file '{source}' has only blank lines; give one text per line.")
    return texts


