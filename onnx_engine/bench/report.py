"""Benchmark results: rows, the ratios between contenders, the end table and the JSON file.

Ratios are taken within one run on the same workload, which is what holds on a shared machine
(absolute times drift). ``speedup_vs_pipeline`` above 1 means faster than the transformers
pipeline; ``time_vs_ort_raw`` is a contender's time over the bare ONNX Runtime call on the same
variant, so for ``engine`` it is 1 + our overhead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.timing import LatencyStats
from onnx_engine.bench.graph_cost import GraphCost

PIPELINE, ORT_RAW = "pipeline", "ort-raw"
# What users of embedding models run instead of a transformers pipeline: the speed-up baseline
# of models that have no ``pipeline`` row.
SENTENCE_TRANSFORMERS = "sentence-transformers"
REFERENCE_VARIANT = "fp32"


@dataclass(frozen=True)
class ResultRow:
    """One (contender, variant, batch, seq): latency percentiles, throughput, ratios, floor."""

    model: str
    contender: str
    variant: str
    batch: int
    seq: int
    stats: LatencyStats
    new_tokens: int | None = None
    beams: int | None = None  # seq2seq: 1 greedy
    generated_tokens: float | None = None  # mean per row, for tokens/s
    cost: GraphCost | None = None  # FLOPs and weight bytes of one call
    floor_ms: float | None = None
    cold_start_s: float | None = None
    peak_rss_mb: float | None = None
    speedup_vs_pipeline: float | None = None
    time_vs_ort_raw: float | None = None

    @property
    def items_per_s(self) -> float:
        return self.batch / (self.stats.p50_ms / 1e3)

    @property
    def tokens_per_s(self) -> float | None:
        if self.generated_tokens is None:
            return None
        return self.batch * self.generated_tokens / (self.stats.p50_ms / 1e3)

    @property
    def ms_per_token(self) -> float | None:
        """Milliseconds per generated position: the call over the tokens each row produced
        (a batch's rows advance together), so contenders that stop at different lengths compare
        per step."""
        if not self.generated_tokens:
            return None
        return self.stats.p50_ms / self.generated_tokens

    @property
    def vs_floor(self) -> float | None:
        return self.stats.p50_ms / self.floor_ms if self.floor_ms else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(asdict(self.stats))
        data.update(asdict(self.cost) if self.cost else {})
        del data["stats"], data["cost"]
        data.update(items_per_s=self.items_per_s, tokens_per_s=self.tokens_per_s,
                    ms_per_token=self.ms_per_token, vs_floor=self.vs_floor)
        return data


def with_ratios(rows: Iterable[ResultRow]) -> list[ResultRow]:
    """Rows with ``speedup_vs_pipeline`` and ``time_vs_ort_raw`` filled in where both exist."""
    rows = list(rows)
    p50 = {(r.model, r.contender, r.variant, r.batch, r.seq): r.stats.p50_ms for r in rows}
    result = []
    for row in rows:
        pipeline = p50.get((row.model, PIPELINE, REFERENCE_VARIANT, row.batch, row.seq)) or \
            p50.get((row.model, SENTENCE_TRANSFORMERS, REFERENCE_VARIANT, row.batch, row.seq))
        ort_variant = row.variant if (row.model, ORT_RAW, row.variant, row.batch, row.seq) in p50 \
            else REFERENCE_VARIANT
        ort_raw = p50.get((row.model, ORT_RAW, ort_variant, row.batch, row.seq))
        result.append(replace(
            row,
            speedup_vs_pipeline=pipeline / row.stats.p50_ms if pipeline else None,
            time_vs_ort_raw=row.stats.p50_ms / ort_raw if ort_raw else None,
        ))
    return result


@dataclass
class ModelReport:
    """Everything measured for one model."""

    name: str
    task: str
    artifact: str
    reference: str | None
    random_weights: bool
    variants: dict[str, Any] = field(default_factory=dict)
    rows: list[ResultRow] = field(default_factory=list)
    cold_starts: list[dict[str, Any]] = field(default_factory=list)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    decode_steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [row.to_dict() for row in self.rows]
        return data


# (row field, header, width, decimals); None decimals: text, left-aligned.
_COLUMNS = (
    ("contender", "contender", 9, None), ("variant", "variant", 7, None),
    ("batch", "b", 3, 0), ("seq", "seq", 4, 0), ("p50_ms", "p50 ms", 9, 2),
    ("p90_ms", "p90 ms", 9, 2), ("p99_ms", "p99 ms", 9, 2), ("throughput", "items/s", 9, 1),
    ("speedup_vs_pipeline", "x pipe", 7, 2), ("time_vs_ort_raw", "/ort-raw", 8, 3),
    ("vs_floor", "/floor", 6, 2), ("cold_start_s", "cold s", 6, 2), ("peak_rss_mb", "RSS MB", 7, 0),
)


def _cell(value: Any, width: int, decimals: int | None) -> str:
    if decimals is None:
        return f"{value:<{width}}"
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{decimals}f}"


def table(report: ModelReport) -> str:
    """A plain-text table of one model's rows, grouped by workload; throughput is tokens/s for
    generation."""
    generation = any(row.generated_tokens is not None for row in report.rows)
    titles = [("tokens/s" if key == "throughput" and generation else title, width, decimals)
              for key, title, width, decimals in _COLUMNS]
    header = [f"{title:<{width}}" if decimals is None else f"{title:>{width}}"
              for title, width, decimals in titles]
    lines = [f"== {report.name} ({report.task}) ==", " ".join(header)]
    for row in sorted(report.rows, key=lambda r: (r.batch, r.seq)):
        data = row.to_dict()
        data["throughput"] = row.tokens_per_s if generation else row.items_per_s
        lines.append(" ".join(_cell(data.get(key), width, decimals)
                              for key, _, width, decimals in _COLUMNS))
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_markdown(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_results(document: dict[str, Any], text: str, json_path: Path | None,
                  markdown_path: Path | None) -> None:
    """Print a benchmark script's Markdown and write it and its JSON where asked."""
    print(text)
    if json_path:
        write_json(json_path, document)
    if markdown_path:
        write_markdown(markdown_path, text)
