"""Load-test results as JSON, a markdown table and a plot; several servers side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import MissingDependencyError

Runs = dict[str, dict[str, Any]]  # server label -> one loadtest run (see commands/loadtest.py)


def write_json(runs: Runs, path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "servers": runs}, indent=2) + "\n", encoding="utf-8")


def markdown(runs: Runs, meta: dict[str, Any]) -> str:
    """One row per server and concurrency; throughput ratios against the first server."""
    first = next(iter(runs.values()))
    base = {level["concurrency"]: level["throughput_rps"] for level in first["levels"]}
    lines = [
        f"Load test of `{first['model']}` ({first['task']}, {first['protocol']} protocol), "
        f"closed-loop clients, {first['duration_s']} s per level.",
        f"Machine: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, ISA flags "
        f"{' '.join(meta.get('cpu_isa_flags') or []) or 'unknown'}, load average before/after "
        f"{meta.get('load_before')} / {meta.get('load_after')}. "
        f"Command: `{meta.get('command', '')}`",
        "",
        "| server | clients | req/s | vs first | p50 ms | p90 ms | p99 ms | mean batch | "
        "statuses | mixed-up | lost |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for label, run in runs.items():
        for level in run["levels"]:
            ratio = level["throughput_rps"] / base[level["concurrency"]] if base.get(
                level["concurrency"]) else None
            statuses = ", ".join(f"{k}: {v}" for k, v in level["statuses"].items())
            lines.append(
                f"| {label} | {level['concurrency']} | {level['throughput_rps']:.1f} | "
                f"{_num(ratio, 'x')} | {_num(level['p50_ms'])} | {_num(level['p90_ms'])} | "
                f"{_num(level['p99_ms'])} | {_num(level['mean_batch_size'])} | {statuses} | "
                f"{level['mixed_up']} | {level['lost']} |"
            )
    lines += ["", "One client, an in-process engine call and a request alternated "
              "(same texts, same load):", ""]
    lines += [f"- {label}: in-process p50 {run['overhead']['in_process_p50_ms']} ms, server p50 "
              f"{run['overhead']['server_p50_ms']} ms, "
              f"overhead {run['overhead']['overhead_p50_ms']} "
              f"ms ({run['overhead']['pairs']} pairs)" for label, run in runs.items()]
    return "\n".join(lines) + "\n"


def plot(runs: Runs, path: Path) -> None:
    """Throughput and p50 latency against concurrency, one line per server."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise MissingDependencyError(
            "--plot needs matplotlib: pip install 'onnx-engine[bench]'."
        ) from error
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, run in runs.items():
        levels = run["levels"]
        clients = [level["concurrency"] for level in levels]
        left.plot(clients, [level["throughput_rps"] for level in levels], marker="o", label=label)
        right.plot(clients, [level["p50_ms"] for level in levels], marker="o", label=label)
    for axis, title in ((left, "throughput (req/s)"), (right, "p50 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _num(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"
