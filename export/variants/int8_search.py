"""Accuracy-aware int8: the fewest matmuls kept in fp32 for the int8 variant to pass its gate.

Plain dynamic int8 fails its gate on the real all-MiniLM-L6-v2 weights (|Δprob| up to 0.09 on
real sentences) because a few matmuls carry most of the error. So both ways of quantizing are
tried: dynamic (activation scales per call), dynamic on the SmoothQuant-scaled graph
(``export.variants.smooth_quant``: activation outlier channels moved into the weights; on real
MiniLM it cut fully quantized |Δprob| from 0.088 to 0.033), and static QDQ (activation ranges
calibrated once on the calibration texts; no per-call quantization, so faster where it holds).
The scaled way is tried first; a later way is searched only for fewer fp32 matmuls than a way
that already passed (keeping more could hardly be faster). A way that fails its
gate fully quantized gets a sensitivity pass: each matmul quantized alone (emulated, see
``export.variants.int8_sensitivity``), its error on a sample of the calibration texts measured,
and then the most sensitive ones are kept in fp32, greedily
by sensitivity, the smallest count that passes found by doubling and bisection. Among the ways
that pass, the faster one is kept; the manifest records every trial, which nodes stayed fp32 and
what that cost in speed against the fully quantized graph.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.options import RuntimeOptions
from engine.variants.records import VariantFigures, VariantGate
from export.dependencies import require
from export.variants.int8_sensitivity import matmul_sensitivity
from export.variants.quantize import (
    QuantizeSettings,
    StaticCalibration,
    excluded_nodes,
    quantize_int8,
)
from export.variants.smooth_quant import smooth_graph

DYNAMIC = "dynamic"
SMOOTHED = "dynamic-smoothquant"
STATIC = "static"
METHODS = (SMOOTHED, DYNAMIC, STATIC)


@dataclass(frozen=True)
class SearchProbe:
    """What the search may ask of a candidate graph file; supplied by the task's checker.

    Everything but ``options`` is the same whichever way the trial graphs run, so one probe is
    made per variant and re-pointed (``run_as``) at each precision a search is tried in.

    Attributes:
        judge: the gate's figures for a graph run with given options (the check set and all
            calibration texts).
        time: a short timing of a graph run with given options, to choose between passing
            candidates and to record what keeping matmuls in fp32 cost.
        feeds: tokenized calibration inputs one text each, for static activation ranges.
        sample_feeds: a few padded batches of calibration texts to rank matmuls on.
        scores: the model's activation of its logits (softmax or sigmoid).
        options: how the trial graphs run (OpenVINO's for int8-openvino, in its precision).
    """

    judge: Callable[[Path, RuntimeOptions], VariantFigures]
    time: Callable[[Path, RuntimeOptions], float]
    feeds: Sequence[Mapping[str, Any]]
    sample_feeds: Sequence[Mapping[str, Any]]
    scores: Callable[[Any], Any]
    options: RuntimeOptions

    def figures(self, graph: Path) -> VariantFigures:
        """The gate's figures for ``graph`` run as the trials run."""
        return self.judge(graph, self.options)

    def latency_ms(self, graph: Path) -> float:
        """A short timing of ``graph`` run as the trials run."""
        return self.time(graph, self.options)

    def run_as(self, options: RuntimeOptions) -> SearchProbe:
        """This probe with trial graphs run with ``options``."""
        return replace(self, options=options)


@dataclass(frozen=True)
class Candidate:
    """One trial graph: how it was quantized, which nodes stayed fp32, its figures and a copy
    of its file."""

    method: str
    kept: tuple[str, ...]
    figures: VariantFigures
    file: Path
    made_with: Mapping[str, Any]


def search_int8(
    source: Path,
    target: Path,
    settings: QuantizeSettings,
    gate: VariantGate,
    probe: SearchProbe,
    max_kept_share: float = 0.5,
) -> dict[str, Any]:
    """Write the passing int8 graph with the fewest fp32 matmuls to ``target``.

    ``target`` is also the slot every trial is written to (the probe opens it where the variant
    will live). When no way passes with at most ``max_kept_share`` of the matmuls kept in fp32
    (beyond that int8 saves little), the candidate closest to passing is written, and the gate
    then fails it with its figures.

    Returns:
        How the variant was made and every trial, for the manifest.

    Raises:
        MissingDependencyError: onnx or onnxruntime's quantization tools are not installed.
    """
    matmuls = matmul_nodes(source, settings)
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="onnx-engine-int8-") as scratch:
        folder = Path(scratch)
        calibration = StaticCalibration(probe.feeds, folder / "ranges.json")
        found: dict[str, tuple[Candidate, Path]] = {}
        for method in METHODS:
            limit = max(1, int(len(matmuls[method]) * max_kept_share)) if max_kept_share else 0
            kept_by_passing = [len(candidate.kept) for candidate, _ in found.values()
                               if passes(candidate, gate)]
            if kept_by_passing:
                limit = min(limit, min(kept_by_passing) - 1)
            try:
                way = _Way(method, source, matmuls[method],
                           calibration if method == STATIC else None)
                if method == SMOOTHED:
                    smoothed = folder / "smoothed.onnx"
                    scaled = smooth_graph(source, smoothed, probe.feeds)
                    if not scaled["smoothed_inputs"]:  # it would repeat the dynamic way
                        trials.append({"method": method, "skipped": "no matmul input to scale"})
                        continue
                    way = replace(way, source=smoothed, made_with=scaled)
                found[method] = _search_method(way, target, settings, gate, probe, limit,
                                               folder, trials)
            except OSError:  # a full disk is no trial's result: the caller reports it
                raise
            except Exception as error:  # the quantizers raise anything; record and go on
                trials.append({"method": method, "error": f"{type(error).__name__}: {error}"[:300]})
        if not found:
            raise RuntimeError(f"int8 quantization failed every way: {trials}")
        chosen, cost = choose_candidate(found, gate, probe, target)
        shutil.copyfile(chosen.file, target)
    return {
        **chosen.made_with,
        "accuracy_aware": {
            "method": chosen.method,
            "matmuls": len(matmuls[chosen.method]),
            "kept_fp32_nodes": list(chosen.kept),
            "speed_cost": cost,
            "trials": trials,
            "passed": passes(chosen, gate),
        },
    }


def matmul_nodes(source: Path, settings: QuantizeSettings) -> dict[str, list[str]]:
    """The MatMul nodes each way may quantize, minus the layer groups kept in fp32 anyway.

    Dynamic int8 quantizes only matmuls with a weight (SmoothQuant scaling keeps their names);
    static QDQ also the attention products.
    """
    onnx = require("onnx")
    model = onnx.load(str(source), load_external_data=False)
    weights = {initializer.name for initializer in model.graph.initializer}
    kept = set(excluded_nodes(model, settings.keep_fp32))
    matmuls = [node for node in model.graph.node
               if node.op_type == "MatMul" and node.name not in kept]
    weighted = [node.name for node in matmuls if any(name in weights for name in node.input)]
    return {DYNAMIC: weighted, SMOOTHED: weighted, STATIC: [node.name for node in matmuls]}


@dataclass(frozen=True)
class _Way:
    """One way of quantizing: the graph it quantizes, the matmuls it may keep in fp32, static
    activation ranges (None: dynamic) and how its graph was prepared, for the manifest."""

    method: str
    source: Path
    matmuls: Sequence[str]
    calibration: StaticCalibration | None
    made_with: Mapping[str, Any] = field(default_factory=dict)


def _search_method(
    way: _Way,
    target: Path,
    settings: QuantizeSettings,
    gate: VariantGate,
    probe: SearchProbe,
    limit: int,
    folder: Path,
    trials: list[dict[str, Any]],
) -> tuple[Candidate, Path]:
    """The best candidate of one way of quantizing, keeping at most ``limit`` matmuls in fp32,
    and its fully quantized graph (for cost)."""

    def trial(kept: Sequence[str]) -> Candidate:
        made_with = quantize_int8(way.source, target, settings, way.calibration, keep_nodes=kept)
        return judged_trial(way.method, kept, {**made_with, **way.made_with}, target, folder,
                            probe, gate, trials)

    full = trial(())
    if passes(full, gate) or limit <= 0:
        return full, full.file
    order = _by_sensitivity(way.source, settings, probe, way.matmuls, way.calibration)
    trials.append({"method": way.method, "sensitivity": [[name, error] for name, error in order]})
    return fewest_kept(trial, [name for name, _ in order], full, gate, limit), full.file


def judged_trial(
    method: str,
    kept: Sequence[str],
    made_with: Mapping[str, Any],
    target: Path,
    folder: Path,
    probe: SearchProbe,
    gate: VariantGate,
    trials: list[dict[str, Any]],
) -> Candidate:
    """The graph just written to ``target``, judged by the probe, kept as a copy in ``folder``
    and recorded in ``trials`` (what the manifest lists)."""
    figures = probe.figures(target)
    file = folder / f"{method}-{len(kept)}.onnx"
    shutil.copyfile(target, file)
    problems = gate.violations(figures)
    trials.append({
        "method": method, "kept": len(kept), "passed": not problems,
        "max_prob_diff": round(figures.max_prob_diff, 5),
        "agreement": round(figures.agreement, 5), "flips": len(figures.flips),
        **({"min_cosine": round(figures.min_cosine, 6)} if figures.min_cosine is not None
           else {}),
    })
    return Candidate(method, tuple(kept), figures, file, made_with)


def fewest_kept(
    trial: Callable[[Sequence[str]], Candidate],
    order: Sequence[str],
    full: Candidate,
    gate: VariantGate,
    limit: int,
) -> Candidate:
    """The passing trial that keeps the fewest of ``order`` (most sensitive first) in fp32, by
    doubling (1, 2, 4, ... up to ``limit``) and then bisection; where none passes, the trial
    closest to passing (``full`` is the fully quantized one)."""
    best, failing, passing = full, 0, None
    count = 1
    while True:  # doubling: 1, 2, 4, ... until the gate holds
        candidate = trial(order[:count])
        if passes(candidate, gate):
            best, passing = candidate, count
            break
        best, failing = _closer(best, candidate), count
        if count >= limit:
            break
        count = min(count * 2, limit)
    while passing is not None and passing - failing > 1:  # bisection: the fewest that pass
        middle = (passing + failing) // 2
        candidate = trial(order[:middle])
        if passes(candidate, gate):
            best, passing = candidate, middle
        else:
            failing = middle
    return best


def _by_sensitivity(
    source: Path,
    settings: QuantizeSettings,
    probe: SearchProbe,
    matmuls: list[str],
    calibration: StaticCalibration | None,
) -> list[tuple[str, float]]:
    """Each matmul with the error of quantizing it alone, most sensitive first."""
    ranges = None
    if calibration is not None:  # written by the fully quantized static trial
        cached = require("onnxruntime.quantization.calibrate").load_tensors_data(calibration.cache)
        ranges = {
            name: tuple(float(np.asarray(value).reshape(-1)[0]) for value in data.range_value)
            for name, data in cached.data.items()
        }
    errors = matmul_sensitivity(
        source, matmuls, probe.sample_feeds, probe.scores, settings.per_channel, ranges
    )
    return [(name, round(error, 6)) for name, error in errors]


def passes(candidate: Candidate, gate: VariantGate) -> bool:
    """Whether the trial's figures meet the gate."""
    return not gate.violations(candidate.figures)


def _closer(first: Candidate, second: Candidate) -> Candidate:
    """The candidate nearer to its gate, by the score difference it is judged on."""
    return min(first, second, key=lambda item: item.figures.max_prob_diff)


def choose_candidate(
    found: Mapping[str, tuple[Candidate, Path]], gate: VariantGate, probe: SearchProbe, slot: Path
) -> tuple[Candidate, dict[str, Any]]:
    """The faster passing candidate (else the one closest to passing) and its cost in speed.

    Graphs are timed only where it decides something: between several passing ways, and
    against the fully quantized graph where matmuls were kept in fp32. Each is timed from
    ``slot``, the file the probe opens.
    """
    timings: dict[Path, float] = {}

    def latency_ms(file: Path) -> float:
        if file not in timings:
            shutil.copyfile(file, slot)
            timings[file] = probe.latency_ms(slot)
        return timings[file]

    passing = [method for method, (candidate, _) in found.items() if passes(candidate, gate)]
    if len(passing) > 1:
        method = min(passing, key=lambda name: latency_ms(found[name][0].file))
    elif passing:
        method = passing[0]
    else:
        method = min(found, key=lambda name: found[name][0].figures.max_prob_diff)
    chosen, full = found[method]
    cost: dict[str, Any] = {"compared_ms": {
        name: round(timings[found[name][0].file], 3) for name in passing if
        found[name][0].file in timings
    }}
    if chosen.kept:
        kept_ms, full_ms = latency_ms(chosen.file), latency_ms(full)
        cost.update(latency_ms=round(kept_ms, 3), fully_quantized_latency_ms=round(full_ms, 3),
                    slowdown=round(kept_ms / full_ms, 3))
    return chosen, cost
