"""The serving benchmark behind the README tables: the engine's server and its peers, one load
test, one machine, one run.

Servers, each started here as a subprocess on 127.0.0.1 (ephemeral port) and stopped with SIGTERM:
``onnx-engine serve`` with dynamic batching and its peers for the model's task. A classifier or
T5: the same server with ``--max-batch-size 1`` and FastAPI + ``transformers.pipeline``
(``benchmarks/pipeline_server.py``), over the Hugging Face protocol. Sentence embeddings: FastAPI +
sentence-transformers on PyTorch fp32 and, on CPUs with bf16 instructions, under bf16 autocast
(``benchmarks/st_server.py``), over OpenAI's ``/v1/embeddings``. Each gets the same closed-loop
load (``onnx_engine.loadtest``; every answer checked against the in-process engine), the servers
taking turns round by round; then, unless ``--overload-clients 0``, the batching server is pushed
to 10x its concurrency limit. Writes ``benchmarks/results/serve-<model>.{json,md,png}``.

    python benchmarks/serve_bench.py [--model distilbert-base] [--concurrency 1,8,32]
                                     [--duration 5] [--overload-clients 320]
    python benchmarks/serve_bench.py --model all-minilm-l6-v2 --concurrency 1,32
    python benchmarks/serve_bench.py --model ARTIFACT --engine-only --concurrency 1,32

``--engine-only`` loads only the batching server (no peers, no overload): the serving overhead
at one client (server p50 minus the in-process call's, paired) and throughput per level, e.g.
of a tiny model, whose engine call is so short that what remains is the request path.
``--baseline CHECKOUT`` adds the same server run from another checkout's code (its root on
PYTHONPATH), taking turns with this one round by round: a before/after under the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from engine.manifest import TASK_FEATURE_EXTRACTION
from onnx_engine.bench.models import BenchTarget, resolve_target
from onnx_engine.commands.loadtest import DEFAULT_TEXTS, load_test, run_meta
from onnx_engine.loadtest import protocols, reference, report, runner

MODULES = {"protocols": protocols, "reference": reference, "runner": runner, "report": report}
RESULTS = Path(__file__).resolve().parent / "results"
ENGINE = "onnx-engine"
ENGINE_BATCH_1 = "onnx-engine batch 1"
BASELINE = "onnx-engine baseline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="distilbert-base")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level and server")
    parser.add_argument("--rounds", type=int, default=5,
                        help="each level runs in this many rounds, the servers taking turns")
    parser.add_argument("--overload-clients", type=int, default=320,
                        help="clients against a server limited to a tenth of them (0: skip)")
    parser.add_argument("--engine-only", action="store_true",
                        help="only the batching server: no peers, no overload run")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="also serve from this checkout's code (before/after, same load)")
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/bench"))
    args = parser.parse_args()
    target = resolve_target(args.model, args.cache_dir, log=sys.stderr)
    name = target.name  # the built-in's name, or an artifact's folder name
    levels = [int(level) for level in args.concurrency.split(",")]
    texts = [line for line in DEFAULT_TEXTS.read_text().splitlines() if line.strip()]
    serve = [sys.executable, "-m", "onnx_engine", "serve", f"{name}={target.artifact}",
             "--port", "0"]
    protocol, servers = contest(target, name, serve)
    if args.engine_only:
        servers, args.overload_clients = {ENGINE: serve}, 0
    envs: dict[str, dict[str, str]] = {}
    if args.baseline is not None:
        servers[BASELINE] = serve
        envs[BASELINE] = {"PYTHONPATH": str(args.baseline.resolve())}
    with contextlib.ExitStack() as stack:
        running = {label: stack.enter_context(started(command, envs.get(label)))
                   for label, command in servers.items()}
        runs = _load(running, target.artifact, name, protocol, texts, levels,
                     args.duration, args.rounds)
    if args.overload_clients:
        limit = max(1, args.overload_clients // 10)
        label = f"onnx-engine limit {limit}"
        with started([*serve, "--max-concurrent-requests", str(limit)]) as server:
            runs.update(_load({label: server}, target.artifact, name, protocol, texts,
                              [limit, args.overload_clients], args.duration, 1))
    meta = run_meta(" ".join(shlex.quote(a) for a in ["python", *sys.argv]),
                    runs[ENGINE]["load_before"])
    meta["targets"] = targets(runs, levels)
    stem = RESULTS / f"serve-{name}"
    report.write_json(runs, stem.with_suffix(".json"), meta)
    table = report.markdown(runs, meta) + "\n" + target_lines(meta["targets"], runs)
    stem.with_suffix(".md").write_text(table, encoding="utf-8")
    report.plot({k: v for k, v in runs.items() if "limit" not in k}, stem.with_suffix(".png"))
    print(table)


def contest(target: BenchTarget, model: str,
            serve: list[str]) -> tuple[str, dict[str, list[str]]]:
    """The load test's protocol and the servers (label -> command) for the target's task."""
    here = Path(__file__).resolve().parent
    if target.task == TASK_FEATURE_EXTRACTION:
        from onnx_engine.bench.contenders.embedding import cpu_has_bf16

        peer = [sys.executable, str(here / "st_server.py"), str(target.reference), "--name", model]
        servers = {ENGINE: serve, "fastapi+sentence-transformers": peer}
        if cpu_has_bf16():  # elsewhere torch emulates bf16, slower than fp32
            servers["fastapi+sentence-transformers bf16"] = [*peer, "--bf16"]
        return "openai", servers
    return "hf", {
        ENGINE: serve,
        ENGINE_BATCH_1: [*serve, "--max-batch-size", "1"],
        "fastapi+pipeline": [sys.executable, str(here / "pipeline_server.py"),
                             str(target.reference), "--name", model],
    }


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """A ready server subprocess as ``{"url", "rss_mb", "exit_code"}``, stopped with SIGTERM.

    The server prints its URL as the last word of its first stdout line (kept as
    ``announced``: ``serve --grpc-port`` names its gRPC address there too). ``rss_mb`` gets the
    resident memory when ready and when the load is over; ``exit_code`` is filled in when the
    block ends (the same dict is kept in the results). ``env`` adds environment variables.
    """
    # torch's spinning threads steal cores
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        announced = process.stdout.readline().strip()
        url = announced.rsplit(" ", 1)[-1]
        _wait_ready(url, process)
        memory = psutil.Process(process.pid)
        server = {"url": url, "announced": announced, "pid": process.pid,
                  "rss_mb": [_rss_mb(memory)], "exit_code": None}
        yield server
        server["rss_mb"].append(_rss_mb(memory))
        process.send_signal(signal.SIGTERM)
        server["exit_code"] = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _rss_mb(process: psutil.Process) -> float:
    return round(process.memory_info().rss / 2**20, 1)


def _load(servers: dict[str, dict[str, Any]], artifact: Path, model: str, protocol: str,
          texts: list[str], levels: list[int], duration: float, rounds: int) -> dict[str, Any]:
    urls = {label: server["url"] for label, server in servers.items()}
    runs = load_test(MODULES, urls, model, str(artifact), protocol, texts, levels, duration,
                     100_000, {}, 16, rounds=rounds)
    for label, server in servers.items():
        runs[label]["server"] = server
    return runs


def _wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {process.returncode} "
                               "before it was ready (its error is above)")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} was not ready after {timeout_s} s")


def targets(runs: dict[str, Any], levels: list[int]) -> dict[str, Any]:
    """The issues' serving targets as measured ratios (reported, never asserted): the engine's
    throughput at the top concurrency against each peer and against the best of them."""
    def throughput(label: str, clients: int) -> float:
        level = next(x for x in runs[label]["levels"] if x["concurrency"] == clients)
        return level["throughput_rps"]

    top = max(levels)
    engine = throughput(ENGINE, top)
    peers = {label: throughput(label, top) for label in runs
             if label != ENGINE and "limit" not in label}
    found: dict[str, Any] = {"overhead_p50_ms_at_1": runs[ENGINE]["overhead"]["overhead_p50_ms"]}
    for label, rps in peers.items():
        found[f"throughput_vs_{label}_at_{top}"] = round(engine / rps, 2) if rps else None
    best = max((label for label in peers if not label.startswith(ENGINE)), key=peers.get,
               default=None)
    if best is not None and peers[best]:
        found[f"throughput_vs_best_peer_at_{top}"] = {"peer": best,
                                                       "ratio": round(engine / peers[best], 2)}
    found["mixed_up_or_lost"] = sum(x["mixed_up"] + x["lost"] for run in runs.values()
                                    for x in run["levels"])
    overload = [label for label in runs if "limit" in label]
    if overload:
        saturated, over = runs[overload[0]]["levels"]  # at the limit, then 10x past it
        found["overload"] = {
            "clients": over["concurrency"],
            "accepted_p99_vs_saturation_p99": round(over["p99_ms"] / saturated["p99_ms"], 2)
            if over["p99_ms"] and saturated["p99_ms"] else None,
            "rejected_p50_ms": over["rejected_p50_ms"],
            "rejected_p99_ms": over["rejected_p99_ms"],
            "rss_mb_before_after": runs[overload[0]]["server"]["rss_mb"],
        }
    return found


def target_lines(found: dict[str, Any], runs: dict[str, Any]) -> str:
    lines = ["Targets (measured, not asserted):", ""]
    lines += [f"- {name}: {value}" for name, value in found.items()]
    lines += ["", "Server RSS before/after (MB) and exit code after SIGTERM:", ""]
    lines += [f"- {label}: {run['server']['rss_mb']}, exit {run['server']['exit_code']}"
              for label, run in runs.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
