"""The README's figure: p50 latency against sequence length, one panel per model and batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onnx_engine.bench.errors import BenchError
from onnx_engine.bench.report import ModelReport


def plot_latency(reports: Sequence[ModelReport], path: Path) -> Path:
    """Write a PNG with one line per (contender, variant); log-scale latency axis.

    Raises:
        BenchError: matplotlib is not installed, or there is nothing to plot.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers and CI
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise BenchError(
            "--plot needs matplotlib: pip install -c constraints.txt 'onnx-engine[bench]'."
        ) from error
    panels = [(report, batch) for report in reports
              for batch in sorted({row.batch for row in report.rows})]
    if not panels:
        raise BenchError("No measured rows to plot.")
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for axis, (report, batch) in zip(axes[0], panels):
        rows = [row for row in report.rows if row.batch == batch]
        for key in sorted({(row.contender, row.variant) for row in rows}):
            line = sorted((r.seq, r.stats.p50_ms) for r in rows if (r.contender, r.variant) == key)
            axis.plot([s for s, _ in line], [ms for _, ms in line], marker="o",
                      label=f"{key[0]} {key[1]}")
        suffix = f", {rows[0].new_tokens} new tokens" if rows[0].new_tokens else ""
        axis.set_title(f"{report.name}, batch {batch}{suffix}", fontsize=10)
        axis.set_xlabel("input tokens")
        axis.set_ylabel("p50 latency (ms)")
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
