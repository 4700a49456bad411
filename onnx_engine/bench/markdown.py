"""The README's benchmark tables, generated from a results JSON so quoted figures never drift
from the measurement (``onnx-engine bench --markdown``, or ``markdown_table(json.load(...))``):
a short summary per model for the README, then every row, cold starts and the targets."""

from __future__ import annotations

from typing import Any

from onnx_engine.bench.targets import ACCURACY_WORKLOAD


def _ratio(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def _load(machine: dict[str, Any], when: str) -> str:
    load = machine.get(f"load_average_at_{when}")
    return f"{load[0]:.1f}" if load else "?"


# Above this share of CPU time stolen by the hypervisor, a run's ratios are not to be trusted
# (seen on a shared 2-core VM: 13% stolen made CTranslate2 3.5x slower and the engine 1.2x).
STOLEN_SHARE_LIMIT = 0.05


def _inconclusive(check: dict[str, Any]) -> str:
    """The mark of a timing target on a run with CPU time stolen (accuracy is not timing)."""
    return "" if check["workload"] == ACCURACY_WORKLOAD else " (inconclusive: CPU time stolen)"


def _stolen_over_limit(machine: dict[str, Any]) -> bool:
    return (machine.get("cpu_time_stolen_share") or 0.0) > STOLEN_SHARE_LIMIT


def stolen_phrase(share: float | None) -> str:
    """``; 4.2% of CPU time stolen by the hypervisor`` for a results header ("" unmeasured)."""
    return "" if share is None else f"; {share:.1%} of CPU time stolen by the hypervisor"


def _shared_warning(machine: dict[str, Any]) -> str:
    loads = [machine.get(f"load_average_at_{when}") for when in ("start", "end")]
    busy = any(load and load[0] > machine["physical_cores"] for load in loads)
    busy = busy or _stolen_over_limit(machine)
    return " (**the machine was shared: other jobs competed for the CPU; absolute times are " \
        "inflated and ratios noisy**)" if busy else ""


_COLUMN_ORDER = (
    "pipeline", "pytorch", "pytorch-bf16", "optimum", "sentence-transformers",
    "sentence-transformers-bf16", "sentence-transformers-onnx", "fastembed", "ort-raw",
    "openvino-raw", "ctranslate2", "engine",
)


def summary_table(model: dict[str, Any]) -> str:
    """The short table for the README: p50 ms per workload (rows) and contender (columns), then
    each engine variant's speed-up over the pipeline and its time over bare ORT."""
    rows = model["rows"]
    columns = sorted({(row["contender"], row["variant"]) for row in rows},
                     key=lambda key: (_COLUMN_ORDER.index(key[0]), key[1]))
    engines = [variant for contender, variant in columns if contender == "engine"]
    embedding = any(c.startswith("sentence-transformers") for c, _ in columns)
    baseline = "sentence-transformers" if embedding else "pipeline"
    by_key = {(r["batch"], r["seq"], r["contender"], r["variant"]): r for r in rows}
    header = ["batch", "seq", *(f"{c} {v} ms" for c, v in columns),
              *(f"engine {v} vs {baseline}" for v in engines),
              *(f"engine {v} / ort-raw" for v in engines)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for batch, seq in sorted({(r["batch"], r["seq"]) for r in rows}):
        cells = [str(batch), str(seq)]
        cells += [f"{by_key[(batch, seq, *key)]['p50_ms']:.1f}" if (batch, seq, *key) in by_key
                  else "-" for key in columns]
        for field, digits in (("speedup_vs_pipeline", 2), ("time_vs_ort_raw", 3)):
            cells += [_ratio(by_key.get((batch, seq, "engine", v), {}).get(field), digits)
                      for v in engines]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table(document: dict[str, Any]) -> str:
    """Per model: p50 latency, throughput and ratios for each row, then cold start and RSS."""
    machine = document["machine"]
    peaks = document.get("peaks") or {}
    lines = [
        f"Measured on {machine['cpu_model']} ({machine['physical_cores']} cores, "
        f"{machine['threads_used']} threads for every contender; ISA flags: "
        f"{' '.join(machine.get('cpu_isa_flags') or []) or 'not read'}), onnxruntime "
        f"{machine['packages'].get('onnxruntime')}, torch {machine['packages'].get('torch')}; "
        f"1-minute load average {_load(machine, 'start')} at start, {_load(machine, 'end')} at end"
        f"{stolen_phrase(machine.get('cpu_time_stolen_share'))}{_shared_warning(machine)}.",
    ]
    if peaks:
        lines.append(
            f"Peaks measured in the same run: fp32 matmul {peaks['fp32_gflops']:.0f} GFLOP/s, "
            f"int8 {peaks['int8_gops'] or 0:.0f} GOP/s, copy bandwidth "
            f"{peaks['bandwidth_gb_s']:.0f} GB/s."
        )
    lines += ["", f"Command: `{document.get('command')}`", ""]
    for model in document["models"]:
        generation = any(row.get("generated_tokens") is not None for row in model["rows"])
        unit = "tokens/s" if generation else "items/s"
        per_token = " ms/token | tokens |" if generation else ""
        beams = model["rows"][0].get("beams") if generation else None
        decoding = "" if beams is None else ", greedy" if beams == 1 else f", {beams} beams"
        lines += [
            f"**{model['name']}** ({model['task']}"
            f"{', random weights' if model['random_weights'] else ''}{decoding})",
            "",
            summary_table(model),
            "",
            "All rows:",
            "",
            f"| contender | variant | batch | seq | p50 ms | p90 ms | p99 ms | {unit} | "
            f"vs pipeline | / ort-raw | / floor |{per_token}",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            + ("---:|---:|" if generation else ""),
        ]
        for row in sorted(model["rows"], key=lambda r: (r["batch"], r["seq"], r["p50_ms"])):
            throughput = row["tokens_per_s"] if generation else row["items_per_s"]
            lines.append(
                f"| {row['contender']} | {row['variant']} | {row['batch']} | {row['seq']} | "
                f"{row['p50_ms']:.1f} | {row['p90_ms']:.1f} | {row['p99_ms']:.1f} | "
                f"{throughput:.1f} | {_ratio(row['speedup_vs_pipeline'])} | "
                f"{_ratio(row['time_vs_ort_raw'], 3)} | {_ratio(row['vs_floor'])} |"
                + (f" {row['ms_per_token']:.2f} | {row['generated_tokens']:.1f} |"
                   if generation else "")
            )
        if model["cold_starts"]:
            lines += ["", "| contender | variant | cold start s | peak RSS MB | RSS vs optimum |",
                      "|---|---|---:|---:|---:|"]
            for entry in model["cold_starts"]:
                lines.append(
                    f"| {entry['contender']} | {entry['variant']} | {entry['seconds']:.2f} | "
                    f"{entry['peak_rss_mb']:.0f} | {_ratio(entry.get('rss_vs_optimum'))} |"
                )
        if model.get("targets"):
            lines += ["", "| target | workload | measured | limit | |", "|---|---|---:|---:|---|"]
            stolen = _stolen_over_limit(machine)
            for check in model["targets"]:
                lines.append(
                    f"| {check['target']} | {check['workload']} | {check['measured']:.3g} | "
                    f"{check['comparison']} {check['limit']:g} | "
                    f"{'met' if check['met'] else 'MISSED'}"
                    f"{_inconclusive(check) if stolen else ''} |"
                )
        lines += [f"- {note}" for note in model["notes"]]
        lines.append("")
    return "\n".join(lines)
