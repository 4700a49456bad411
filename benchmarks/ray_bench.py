"""Ray Serve against the native server: the same load on both, in one run, on one machine.

Starts ``onnx-engine serve MODEL=ARTIFACT`` (native) and ``onnx-engine serve ... --ray
--replicas 2 --ray-num-cpus-per-replica 1`` (its own local Ray; ``--replicas``,
``--cpus-per-replica`` change the shape) as subprocesses on 127.0.0.1,
runs the same closed-loop load on both (``onnx_engine.loadtest``, every answer checked against
the in-process engine; the servers take turns in rounds), then kills one Ray replica's process
under load and counts what failed. Writes ``benchmarks/results/serve-ray-<name>.{json,md}``.

    python -m benchmarks.ray_bench [--model distilbert-base | ARTIFACT] [--concurrency 1,32]
        [--duration 10] [--rounds 5] [--replicas 2] [--cpus-per-replica 1]
        [--ray-env tuned|default] [--kill-clients 8]

``--ray-env default`` runs Ray Serve with its own defaults (``RAY_SERVE_THROUGHPUT_OPTIMIZED=0``);
``tuned`` with :data:`onnx_engine.serving.ray_app.SERVE_ENV`, what ``serve --ray`` sets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.serve_bench import MODULES, RESULTS, started
from onnx_engine.bench.models import resolve_target
from onnx_engine.commands.loadtest import DEFAULT_TEXTS, load_test, run_meta
from onnx_engine.loadtest import protocols, reference, report, runner
from onnx_engine.serving.ray_app import SERVE_ENV

RAY_ENVS = {"tuned": SERVE_ENV, "default": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"}}
REPLICA_TITLE = "ServeReplica:onnx-engine:model-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="distilbert-base",
                        help="a built-in benchmark model or an artifact folder")
    parser.add_argument("--name", default=None, help="name in the results (default: folder)")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level and server")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--cpus-per-replica", type=int, default=1,
                        help="CPUs (and ONNX Runtime threads) each replica reserves")
    parser.add_argument("--ray-env", choices=sorted(RAY_ENVS), default="tuned")
    parser.add_argument("--kill-clients", type=int, default=8,
                        help="clients loading Ray while one replica is killed (0: skip)")
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/bench"))
    args = parser.parse_args()
    target = resolve_target(args.model, args.cache_dir, log=sys.stderr)
    name = args.name or target.name
    levels = [int(level) for level in args.concurrency.split(",")]
    texts = [line for line in DEFAULT_TEXTS.read_text().splitlines() if line.strip()]
    serve = [sys.executable, "-m", "onnx_engine", "serve", f"{name}={target.artifact}",
             "--port", "0"]
    ray_label = f"ray {args.replicas}x{args.cpus_per_replica} CPU ({args.ray_env})"
    ray_command = [*serve, "--ray", "--replicas", str(args.replicas),
                   "--ray-num-cpus-per-replica", str(args.cpus_per_replica)]
    with contextlib.ExitStack() as stack:
        running = {"native": stack.enter_context(started(serve)),
                   ray_label: stack.enter_context(started(ray_command, RAY_ENVS[args.ray_env]))}
        runs = load_test(MODULES, {k: v["url"] for k, v in running.items()}, name,
                         str(target.artifact), "hf", texts, levels, args.duration, 100_000, {},
                         16, rounds=args.rounds)
        for label, server in running.items():
            runs[label]["server"] = server
        for level in runs[ray_label]["levels"]:
            # /metrics answers for whichever replica Serve picks: no server-wide batch mean.
            level["mean_batch_size"] = None
        kill = (kill_one_replica(running[ray_label], name, str(target.artifact), texts,
                                 args.kill_clients, args.replicas)
                if args.kill_clients else None)
    command = ["python -m benchmarks.ray_bench", *sys.argv[1:]]
    meta = run_meta(" ".join(shlex.quote(a) for a in command),
                    runs["native"]["load_before"])
    meta["ray_env"] = RAY_ENVS[args.ray_env]
    meta["targets"] = targets(runs, ray_label, levels)
    meta["replica_kill"] = kill
    shape = "" if (args.replicas, args.cpus_per_replica) == (2, 1) else (
        f"-{args.replicas}x{args.cpus_per_replica}")
    stem = RESULTS / f"serve-ray-{name}-{args.ray_env}{shape}"
    report.write_json(runs, stem.with_suffix(".json"), meta)
    text = (report.markdown(runs, meta) + "\nRay environment: `" + " ".join(
        f"{k}={v}" for k, v in meta["ray_env"].items()) + "`\n\nTargets (issue 11; measured, "
        "not asserted):\n\n" + "".join(f"- {k}: {v}\n" for k, v in meta["targets"].items())
        + (f"- replica killed under load: {kill}\n" if kill else ""))
    stem.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


def targets(runs: dict[str, Any], ray_label: str, levels: list[int]) -> dict[str, Any]:
    """Ray's added p50 at one client and its throughput against native at the top level."""
    def level(label: str, clients: int) -> dict[str, Any]:
        return next(x for x in runs[label]["levels"] if x["concurrency"] == clients)

    top = max(levels)
    found: dict[str, Any] = {}
    if 1 in levels:
        found["ray_added_p50_ms_at_1"] = round(level(ray_label, 1)["p50_ms"]
                                               - level("native", 1)["p50_ms"], 2)
    found["paired_overhead_p50_ms"] = {label: run["overhead"]["overhead_p50_ms"]
                                       for label, run in runs.items()}
    found[f"ray_throughput_vs_native_at_{top}"] = round(
        level(ray_label, top)["throughput_rps"] / level("native", top)["throughput_rps"], 2)
    found["mixed_up_or_lost"] = sum(x["mixed_up"] + x["lost"] for run in runs.values()
                                    for x in run["levels"])
    return found


def _replicas(server: dict[str, Any]) -> list[psutil.Process]:
    """This server's Ray replica processes (descendants of its driver only)."""
    found = []
    for process in psutil.Process(server["pid"]).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if REPLICA_TITLE in " ".join(process.cmdline()):
                found.append(process)
    return found


def kill_one_replica(server: dict[str, Any], name: str, artifact: str, texts: list[str],
                     clients: int, replicas: int, duration_s: float = 10.0) -> dict[str, Any]:
    """SIGKILL one replica 2 s into a closed-loop load; count statuses, mix-ups, recovery time."""
    import engine

    model = engine.load(artifact)
    wire = protocols.Protocol("hf", model.task, name, {})
    expected = reference.build_reference(model, texts, {})
    tally = runner.Tally(clients)
    victim = _replicas(server)[0]
    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(2.0)
        killed_at.append(time.monotonic())
        os.kill(victim.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()
    asyncio.run(runner.run_level(server["url"], wire, texts, expected, clients, duration_s,
                                 100_000, {}, tally))
    killer.join()
    recovered_s = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive = [p for p in _replicas(server) if p.pid != victim.pid]
        if len(alive) >= replicas:
            recovered_s = round(time.monotonic() - killed_at[0], 1)
            break
        time.sleep(0.2)
    result = tally.result().as_json()
    return {"clients": clients, "duration_s": duration_s, "statuses": result["statuses"],
            "failed": sum(v for k, v in result["statuses"].items() if k != "200")
            + result["lost"], "mixed_up": result["mixed_up"], "lost": result["lost"],
            "replica_process_back_after_s": recovered_s}


if __name__ == "__main__":
    main()
