"""Benchmark one model: load its contenders, time every workload, then floor, cold start and
agreement. ``runner`` calls this once per model and adds the machine and the peaks."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TextIO

import numpy as np

from engine.manifest import TASK_TEXT2TEXT
from engine.timing import TimingPlan, time_alternating
from onnx_engine.bench.agreement import check_texts_for, compare
from onnx_engine.bench.coldstart import measure_cold_start
from onnx_engine.bench.contenders.base import Contender
from onnx_engine.bench.errors import BenchError, ContenderUnavailable
from onnx_engine.bench.graph_cost import GraphCost, GraphCostCounter
from onnx_engine.bench.models import BenchTarget
from onnx_engine.bench.registry import contender_class, load_contender
from onnx_engine.bench.report import ModelReport, ResultRow
from onnx_engine.bench.settings import BenchSettings
from onnx_engine.bench.variants import FP32
from onnx_engine.bench.workloads import Workload, WorkloadFactory
from onnx_engine.tasks import TASKS

Key = tuple[str, str]  # (contender, variant)
_STEP_PLAN = TimingPlan(warmup=3, rounds=10, min_rounds=3, timed_per_turn=5, budget_s=10)


class ModelBench:
    """The measurements of one target, filling ``report``; ``runner`` calls ``load``, then
    ``measure`` per workload, ``cold_starts`` and ``agreement``."""

    def __init__(self, target: BenchTarget, settings: BenchSettings, variants: list[str],
                 threads: int, env: dict[str, str], log: TextIO) -> None:
        self.target, self.settings, self.variants = target, settings, variants
        self.threads, self.env, self.log = threads, env, log
        self.report = ModelReport(target.name, target.task, str(target.artifact),
                                  target.reference, target.random_weights)
        self.contenders: dict[Key, Contender] = {}
        self._probes: dict[str, Contender] = {}
        self._costs = GraphCostCounter(threads)
        self.generation = target.task == TASK_TEXT2TEXT

    def note(self, text: str) -> None:
        self.report.notes.append(text)
        self.log.write(f"note: {text}\n")

    def _load(self, name: str, variant: str, beams: int | None = None) -> Contender:
        return load_contender(self.target, name, variant, self.threads, self.settings.new_tokens,
                              self.settings.beams if beams is None else beams,
                              self.settings.cache_dir)

    def load(self) -> None:
        """Load every contender x variant that can run here; the rest become notes."""
        for name in self.settings.contenders:
            try:
                cls = contender_class(self.target.task, name)
            except ContenderUnavailable as error:
                self.note(f"{name} skipped: {error}")
                continue
            for variant in self.variants if cls.runs_variants else [FP32]:
                try:
                    self.contenders[(name, variant)] = self._load(name, variant)
                except ContenderUnavailable as error:
                    self.note(f"{name} {variant} skipped: {error}")
        if not self.contenders:
            raise BenchError(f"No contender can run {self.target.name}; see the notes above.")

    def workloads(self) -> list[Workload]:
        manifest = self.target.manifest
        factory = WorkloadFactory(self.target.artifact / "tokenizer.json", manifest.max_length)
        result = []
        for batch in self.settings.batches:
            for seq in self.settings.seqs:
                try:
                    result.append(factory.workload(batch, seq))
                except BenchError as error:
                    self.note(f"b{batch} s{seq} skipped: {error}")
        return result

    def measure(self, workload: Workload, on_round: Callable[[], None]) -> None:
        """Time every contender on one workload and add a row each."""
        for contender in self.contenders.values():
            contender.prepare(workload.texts)
        generated = {key: self._generated(c) for key, c in self.contenders.items()} \
            if self.generation else {}
        calls = {key: contender.run for key, contender in self.contenders.items()}
        stats = time_alternating(calls, self.settings.timing, on_round)
        # A beam step runs batch x beams rows: the greedy probe's costs would not be its floor.
        costs = self._variant_costs(workload) \
            if self.settings.floor and self.settings.beams == 1 else {}
        for key, latency in stats.items():
            name, variant = key
            tokens = generated.get(key)
            self.report.rows.append(ResultRow(
                self.target.name, name, variant, workload.batch, workload.seq, latency,
                new_tokens=self.settings.new_tokens if self.generation else None,
                beams=self.settings.beams if self.generation else None,
                generated_tokens=tokens, cost=self._call_cost(costs.get(variant), tokens),
            ))

    def _generated(self, contender: Contender) -> float:
        ids = contender.predictions(contender.run())
        return float(np.mean(np.sum(np.asarray(ids) != -1, axis=1)))

    def _probe(self, variant: str) -> Contender:
        """The ort-raw contender of ``variant``: it knows each graph's feeds for a workload. A
        variant that ort-raw cannot run (bf16: OpenVINO runs the fp32 files) is counted on the
        fp32 graphs it runs."""
        if ("ort-raw", variant) in self.contenders:
            return self.contenders[("ort-raw", variant)]
        if variant not in self._probes:
            try:
                self._probes[variant] = self._load("ort-raw", variant, beams=1)
            except ContenderUnavailable:
                if variant == FP32:
                    raise
                self._probes[variant] = self._probe(FP32)
        return self._probes[variant]

    def _variant_costs(self, workload: Workload) -> dict[str, dict[str, GraphCost]]:
        costs = {}
        for variant in {variant for _, variant in self.contenders}:
            probe = self._probe(variant)
            probe.prepare(workload.texts)
            probes = probe.cost_probes()
            costs[variant] = {role: self._costs.count(graph, feeds)
                              for role, (graph, feeds) in probes.items()}
            if self.generation and "decoder_with_past" in probes:
                self._time_decode_step(variant, workload, probe, probes, costs[variant])
        return costs

    def _call_cost(
        self, costs: dict[str, GraphCost] | None, tokens: float | None
    ) -> GraphCost | None:
        """One call's cost: the classifier graph, or encoder + first step + later steps."""
        if not costs:
            return None
        if not self.generation:
            return costs["model"]
        total = costs["encoder"] + costs["decoder"]
        later_steps = max(0, round(float(tokens or 1)) - 1)
        return total + costs["decoder_with_past"].times(later_steps) if later_steps else total

    def _time_decode_step(self, variant: str, workload: Workload, probe: Contender,
                          probes: dict[str, Any], costs: dict[str, GraphCost]) -> None:
        """Time one bare with-past step halfway through generation, for its own floor."""
        _, feeds = probes["decoder_with_past"]
        session = probe.sessions["decoder_with_past"]
        stats = time_alternating({"step": lambda: session.run(None, feeds)}, _STEP_PLAN)["step"]
        past = next(v for k, v in feeds.items() if k.startswith("past_key_values.")).shape[2]
        self.report.decode_steps.append({
            "variant": variant, "batch": workload.batch, "seq": workload.seq,
            "past_length": int(past), "p50_ms": stats.p50_ms,
            "cost": asdict(costs["decoder_with_past"]),
        })

    def cold_starts(self, texts: tuple[str, ...], on_run: Callable[[], None]) -> None:
        """Median cold start and peak RSS of each loaded contender over ``cold_runs`` processes."""
        for (name, variant), contender in self.contenders.items():
            runs = []
            for _ in range(self.settings.cold_runs):
                try:
                    runs.append(measure_cold_start(type(contender), contender.settings, texts,
                                                   self.env))
                except BenchError as error:
                    self.note(str(error))
                    break
                finally:
                    on_run()
            if runs:
                self.report.cold_starts.append({
                    "contender": name, "variant": variant, "runs": len(runs),
                    "seconds": statistics.median(run.seconds for run in runs),
                    "seconds_all": [run.seconds for run in runs],
                    "peak_rss_mb": statistics.median(run.peak_rss_bytes for run in runs) / 2**20,
                    "imported": list(runs[0].imported),
                })

    def agreement(self) -> None:
        """Each engine variant's predictions against PyTorch's (else engine fp32's); for
        generation, every other contender's tokens too (same decoding settings, same tokens:
        a contender that disagrees at fp32 is decoding something else)."""
        reference, label = self._agreement_reference()
        if reference is None:
            self.note("agreement skipped: neither PyTorch nor engine fp32 can run as a reference.")
            return
        texts = check_texts_for(self.target.task, self.target.manifest.max_length)
        for (name, variant), contender in self.contenders.items():
            compared = name == "engine" or self.generation
            if compared and contender is not reference:
                result = compare(contender, reference, texts, f"{name} {variant}", label)
                self.report.agreement.append(asdict(result))

    def _agreement_reference(self) -> tuple[Contender | None, str]:
        """PyTorch fp32 (loaded for this even when it is not a timed contender), else engine
        fp32."""
        pytorch = TASKS[self.target.task].torch_reference
        if (pytorch, FP32) in self.contenders:
            return self.contenders[(pytorch, FP32)], "pytorch fp32"
        try:
            return self._load(pytorch, FP32), "pytorch fp32"
        except ContenderUnavailable as error:
            self.note(f"agreement against engine fp32 instead of PyTorch: {error}")
            return self.contenders.get(("engine", FP32)), "engine fp32"
