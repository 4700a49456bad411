"""The README's benchmark table, generated from a results JSON so quoted figures never drift
from the measurement (``onnx-engine bench --markdown``, or ``markdown_table(json.load(...))``)."""

from __future__ import annotations

from typing import Any


def _ratio(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def markdown_table(document: dict[str, Any]) -> str:
    """Per model: p50 latency, throughput and ratios for each row, then cold start and RSS."""
    machine = document["machine"]
    peaks = document.get("peaks") or {}
    lines = [
        f"Measured on {machine['cpu_model']} ({machine['physical_cores']} cores, "
        f"{machine['threads_used']} threads for every contender), onnxruntime "
        f"{machine['packages'].get('onnxruntime')}, torch {machine['packages'].get('torch')}; "
        f"load average at start {machine.get('load_average_at_start')}.",
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
        lines += [
            f"**{model['name']}** ({model['task']}{', random weights' if model['random_weights'] else ''})",
            "",
            f"| contender | variant | batch | seq | p50 ms | p90 ms | p99 ms | {unit} | "
            "vs pipeline | / ort-raw | / floor |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in sorted(model["rows"], key=lambda r: (r["batch"], r["seq"], r["p50_ms"])):
            throughput = row["tokens_per_s"] if generation else row["items_per_s"]
            lines.append(
                f"| {row['contender']} | {row['variant']} | {row['batch']} | {row['seq']} | "
                f"{row['p50_ms']:.1f} | {row['p90_ms']:.1f} | {row['p99_ms']:.1f} | "
                f"{throughput:.1f} | {_ratio(row['speedup_vs_pipeline'])} | "
                f"{_ratio(row['time_vs_ort_raw'], 3)} | {_ratio(row['vs_floor'])} |"
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
            for check in model["targets"]:
                lines.append(
                    f"| {check['target']} | {check['workload']} | {check['measured']:.3g} | "
                    f"{check['comparison']} {check['limit']:g} | {'met' if check['met'] else 'MISSED'} |"
                )
        lines += [f"- {note}" for note in model["notes"]]
        lines.append("")
    return "\n".join(lines)
