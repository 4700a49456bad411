"""The GPU check's results: speedups against PyTorch, the issue's targets, the machine, and the
JSON and markdown files (``benchmarks/results/gpu-<gpu model>.{json,md}``)."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path
from typing import Any

from onnx_engine.bench.machine import package_versions

ENGINE, TORCH = "engine", "pytorch"
# The targets on an H100/H200-class GPU: (task, workload label, contender, peer, ratio).
TARGETS = (
    ("classifier", "b1 s128", "engine fp16", "pytorch fp32", 4.0),
    ("classifier", "b1 s128", "engine fp16", "pytorch fp16", 1.5),
    ("t5", "greedy b1", "engine fp16", "pytorch fp32", 3.0),
    ("t5", "beam4 b1", "engine fp16", "pytorch fp32", 2.5),
)


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Peer p50 / contender p50 for each engine row against each PyTorch row of its workload."""
    out = []
    by_workload: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        p50s = by_workload.setdefault((row["model"], row["workload"]), {})
        p50s[row["contender"]] = row["p50_ms"]
    for (model, workload), p50 in by_workload.items():
        for ours in (name for name in p50 if name.startswith(ENGINE)):
            for peer in (name for name in p50 if name.startswith(TORCH)):
                out.append({"model": model, "workload": workload, "contender": ours,
                            "peer": peer, "speedup": round(p50[peer] / p50[ours], 3)})
    return out


def targets(speedups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, met or missed (reported, never asserted)."""
    found = {(r["model"], r["workload"], r["contender"], r["peer"]): r["speedup"] for r in speedups}
    out = []
    for model, workload, ours, peer, wanted in TARGETS:
        measured = found.get((model, workload, ours, peer))
        out.append({"target": f"{model} {workload}: {ours} >= {wanted}x {peer}",
                    "measured": measured,
                    "status": "not measured" if measured is None
                    else ("met" if measured >= wanted else "MISSED")})
    return out


def machine(device: str) -> dict[str, Any]:
    """GPU model, driver, CUDA/cuDNN and package versions: every figure is quoted with them."""
    from onnx_engine.bench.gpu_prereqs import nvidia_gpus

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "device": device, "packages": package_versions()}
    info["gpus"], info["gpu_problem"] = nvidia_gpus()
    import onnxruntime

    info["onnxruntime"] = {"version": onnxruntime.__version__,
                           "providers": onnxruntime.get_available_providers()}
    try:
        import torch

        info["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                         "cudnn": torch.backends.cudnn.version() if device == "cuda" else None}
    except ImportError:
        info["torch"] = None
    return info


def markdown(document: dict[str, Any]) -> str:
    """The result tables: latency per workload, the speedups, the targets and the copies."""
    gpu = "; ".join(document["machine"]["gpus"]) or document["machine"]["device"]
    lines = [f"# GPU check: {gpu}", "", f"Command: `{document['command']}`", "",
             "| model | workload | contender | p50 ms | p90 ms | samples |",
             "|---|---|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['workload']} | {r['contender']} | {r['p50_ms']:.2f} | "
              f"{r['p90_ms']:.2f} | {r['samples']} |" for r in document["latency"]]
    lines += ["", "| model | workload | engine | vs | speedup |", "|---|---|---|---|---:|"]
    lines += [f"| {r['model']} | {r['workload']} | {r['contender']} | {r['peer']} | "
              f"{r['speedup']:.2f}x |" for r in document["speedups"]]
    lines += ["", "| target | measured | status |", "|---|---:|---|"]
    lines += [f"| {t['target']} | {t['measured'] if t['measured'] is not None else '-'} | "
              f"{t['status']} |" for t in document["targets"]]
    lines += ["", "IO-binding decode, engine fp32: copies per decoder step",
              "", "| workload | steps | KV-cache copies | uploads/step | downloads/step | "
              "up bytes/step | down bytes/step |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {c['workload']} | {c['decoder_steps']} | {c['kv_cache_copies']} | "
              f"{c['uploads_per_step']} | {c['downloads_per_step']} | "
              f"{c['upload_bytes_per_step']} | {c['download_bytes_per_step']} |"
              for c in document["copies"]]
    return "\n".join(lines) + "\n"


def write_results(document: dict[str, Any], out: Path) -> Path:
    """``out/gpu-<gpu model>.json`` and ``.md``; returns the JSON path."""
    gpu = (document["machine"]["gpus"] or [document["machine"]["device"]])[0].split(",")[0]
    stem = "gpu-" + (re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-") or "unknown")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(document))
    return out / f"{stem}.json"
