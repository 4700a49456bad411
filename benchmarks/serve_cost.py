"""Where a request's time goes: one client, then CPU milliseconds per request per server process.

Sends ``--requests`` sequential requests (one text each) to a running server and reports the
client's p50/p99, the app's own ``x-total-time`` p50 (inside the replica or native server), and
the CPU time each process under ``--pid`` (the server's or Ray driver's process and all its
descendants: Ray's proxy, replicas, raylet, ...) spent per request, plus their idle CPU. The
difference between a Ray and a native server is then attributed to processes, not guessed.

    python -m benchmarks.serve_cost URL --pid PID [--model clf] [--requests 500]
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import httpx
import numpy as np
import psutil

TEXTS = ["the plot was dull and far too long", "a wonderful, moving film"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--pid", type=int, required=True, help="the server's (or Ray driver's) pid")
    parser.add_argument("--model", default="clf")
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    route = f"{args.url}/models/{args.model}"
    with httpx.Client(timeout=30) as client:
        for index in range(30):  # warm-up
            client.post(route, json={"inputs": TEXTS[index % 2]}).raise_for_status()
        idle_before = _cpu_seconds(args.pid)
        time.sleep(3.0)
        idle_after = _cpu_seconds(args.pid)
        latencies, inside = [], []
        before = _cpu_seconds(args.pid)
        for index in range(args.requests):
            started = time.perf_counter()
            response = client.post(route, json={"inputs": TEXTS[index % 2]})
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            inside.append(float(response.headers["x-total-time"]))
        after = _cpu_seconds(args.pid)
    per_request = _delta(before, after, 1000 / args.requests)
    idle = _delta(idle_before, idle_after, 100 / 3.0)
    print(json.dumps({
        "requests": args.requests,
        "client_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "client_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "app_p50_ms": round(float(np.percentile(inside, 50)), 2),
        "cpu_ms_per_request": {k: round(v, 2) for k, v in per_request.most_common() if v >= 0.05},
        "idle_cpu_percent": {k: round(v, 1) for k, v in idle.most_common() if v >= 0.2},
    }, indent=2))


def _cpu_seconds(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (title, user + system CPU seconds) for ``root`` and its descendants."""
    parent = psutil.Process(root)
    found = {}
    for process in [parent, *parent.children(recursive=True)]:
        try:
            times = process.cpu_times()
            found[process.pid] = (" ".join(process.cmdline())[:60], times.user + times.system)
        except psutil.Error:
            continue
    return found


def _delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
           scale: float) -> collections.Counter:
    totals: collections.Counter = collections.Counter()
    for pid, (title, seconds) in after.items():
        if pid in before:
            totals[title] += (seconds - before[pid][1]) * scale
    return totals


if __name__ == "__main__":
    main()
