"""A whole benchmark run: machine, peaks, each model's measurements, ratios, floors, JSON.

The machine's peaks are measured before and (for runs over a minute) after the models, and the
better of each is kept: on a shared machine a peak measured during someone else's burst would be
too low and flatter every measured / floor ratio.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from onnx_engine.bench.errors import BenchError, ContenderUnavailable
from onnx_engine.bench.floor import MachinePeaks, measure_peaks
from onnx_engine.bench.graph_cost import GraphCost
from onnx_engine.bench.machine import (
    cpu_time_counters,
    load_average,
    machine_info,
    physical_cores,
    stolen_share,
)
from onnx_engine.bench.model_bench import ModelBench
from onnx_engine.bench.models import BenchTarget, resolve_target
from onnx_engine.bench.report import ModelReport, with_ratios
from onnx_engine.bench.settings import BenchSettings
from onnx_engine.bench.targets import check_targets
from onnx_engine.bench.variants import (
    AUTO,
    FP32,
    build_missing_variant,
    graph_files,
    resolve_auto,
    resolve_auto_for_batches,
)
from onnx_engine.progress_bar import ProgressBar

SCHEMA_VERSION = 1
# Runs shorter than this (smoke tests) measure the peaks once: little can drift in a minute.
_REMEASURE_AFTER_S = 60.0


def run_benchmark(
    models: Sequence[str], settings: BenchSettings, env: dict[str, str], log: TextIO,
    progress: bool = True, command: str | None = None,
) -> tuple[dict[str, Any], list[ModelReport]]:
    """Benchmark each model (artifact folder, built-in name or checkpoint) and build the JSON.

    Raises:
        BenchError: a model cannot be resolved, or no contender can run it.
        ExportError: building a built-in model or exporting a checkpoint failed.
    """
    started = time.time()
    counters_at_start = cpu_time_counters()
    threads = settings.threads or physical_cores()
    machine = machine_info(threads, env)
    peaks = [measure_peaks(threads)] if settings.floor else []
    reports = []
    for model in models:
        target = resolve_target(model, settings.cache_dir, settings.rebuild, log)
        reports.append(_bench_model(target, settings, threads, env, log, progress))
    if settings.floor and time.time() - started > _REMEASURE_AFTER_S:
        peaks.append(measure_peaks(threads))
    best = MachinePeaks.best(peaks) if peaks else None
    for report in reports:
        _finish(report, best)
    machine["load_average_at_end"] = load_average()
    machine["cpu_time_stolen_share"] = stolen_share(counters_at_start, cpu_time_counters())
    document = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": time.time() - started,
        "machine": machine,
        "settings": settings.to_dict(),
        "peaks": best.to_dict() if best else None,
        "models": [report.to_dict() for report in reports],
    }
    for model in document["models"]:
        model["targets"] = check_targets(model, machine.get("cpu_isa_flags"))
    return document, reports


def _bench_model(target: BenchTarget, settings: BenchSettings, threads: int,
                 env: dict[str, str], log: TextIO, progress: bool) -> ModelReport:
    notes: list[str] = []
    variants, auto = resolve_variants(target, settings, notes)
    # T5's auto runs batched calls on another variant where one is faster there: timed too
    for_batches = resolve_auto_for_batches(target.artifact, auto) if auto else None
    if for_batches is not None and for_batches not in variants:
        variants.append(for_batches)
    bench = ModelBench(target, settings, variants, threads, env, log)
    for text in notes:
        bench.note(text)
    bench.report.variants = {"requested": list(settings.variants), "run": variants, "auto": auto,
                             "auto_for_batches": for_batches}
    log.write(f"loading {target.name} contenders ...\n")
    bench.load()
    workloads = bench.workloads()
    rounds = settings.timing.rounds
    bar = ProgressBar(total=len(workloads) * rounds + len(bench.contenders) * settings.cold_runs,
                      label=f"bench {target.name}", enabled=progress)
    for workload in workloads:
        before = bar.done
        bench.measure(workload, on_round=lambda: bar.update(1))
        bar.update(rounds - (bar.done - before))  # rounds a time budget cut short
    if settings.cold_runs and workloads:
        bench.cold_starts(workloads[0].texts[:1], on_run=lambda: bar.update(1))
    bar.close()
    if settings.agreement:
        bench.agreement()
    return bench.report


def resolve_variants(target: BenchTarget, settings: BenchSettings,
                     notes: list[str]) -> tuple[list[str], str | None]:
    """Concrete variants to run (``auto`` replaced by the engine's pick), building missing ones
    for the benchmark's own cached models; returns them and what ``auto`` resolved to."""
    chosen, auto = [], None
    for variant in settings.variants:
        if variant == AUTO:
            variant = auto = resolve_auto(target.artifact)
        if variant in chosen:
            continue
        try:
            _ensure_variant(target, variant, settings.cache_dir)
        except ContenderUnavailable as error:
            notes.append(f"variant {variant} skipped: {error}")
            continue
        chosen.append(variant)
    if not chosen:
        raise BenchError(
            f"None of the variants {list(settings.variants)} exists for {target.name}."
        )
    return chosen, auto


def _ensure_variant(target: BenchTarget, variant: str, cache_dir: Path) -> None:
    if variant == FP32:
        return
    try:
        graph_files(target.artifact, variant)
    except ContenderUnavailable:
        if not _inside(target.artifact, cache_dir):
            raise  # never modify a user's artifact; the message says how to build the variant
        build_missing_variant(target.artifact, variant)
        graph_files(target.artifact, variant)


def _inside(path: Path, folder: Path) -> bool:
    return Path(folder).resolve() in Path(path).resolve().parents


def _finish(report: ModelReport, peaks: MachinePeaks | None) -> None:
    """Ratios between contenders, floors, and each contender's cold start copied into its rows."""
    cold = {(c["contender"], c["variant"]): c for c in report.cold_starts}
    rows = []
    for row in with_ratios(report.rows):
        start = cold.get((row.contender, row.variant), {})
        floor = peaks.floor_seconds(row.cost) * 1e3 if peaks and row.cost else None
        rows.append(replace(row, floor_ms=floor, cold_start_s=start.get("seconds"),
                            peak_rss_mb=start.get("peak_rss_mb")))
    report.rows = rows
    for entry in report.cold_starts:
        optimum = cold.get(("optimum", entry["variant"])) or cold.get(("optimum", FP32))
        entry["rss_vs_optimum"] = entry["peak_rss_mb"] / optimum["peak_rss_mb"] if optimum else None
    for step in report.decode_steps:
        if peaks:

            step["floor_ms"] = peaks.floor_seconds(GraphCost(**step["cost"])) * 1e3
            step["vs_floor"] = step["p50_ms"] / step["floor_ms"]
