"""Where a T5 decoder step's time goes at batch 1 (issue 18, part 2).

For each variant (default: what ``auto`` picks, and fp32) it measures, on the full-size built-in
t5-small (random weights) or any T5 artifact:

- the engine's ``generate`` (greedy, ``--steps`` new tokens) per generated token;
- a bare loop over the same three graphs, split into time inside ``session.run`` of the with-past
  decoder and the Python between runs (argmax, feeds, cache dict), so the engine's own overhead
  per step is the difference;
- ONNX Runtime's per-node profile of one with-past step halfway through generation, by op type,
  with the LM head (the nodes reading the vocabulary-sized weight), ``DynamicQuantizeLinear``
  and the cache ``Concat`` singled out, and the run's time outside any kernel;
- the step's weight-read floor: its weight bytes over the copy bandwidth measured here.

Run: ``python -m benchmarks.t5_profile --markdown benchmarks/results/t5-profile.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from onnx_engine.bench.contenders.base import ContenderSettings, ort_session_options
from onnx_engine.bench.floor import measure_bandwidth
from onnx_engine.bench.graph_cost import GraphCostCounter
from onnx_engine.bench.machine import (
    cpu_time_counters,
    load_average,
    machine_info,
    physical_cores,
    stolen_share,
)
from onnx_engine.bench.markdown import stolen_phrase
from onnx_engine.bench.models import resolve_target
from onnx_engine.bench.report import write_results
from onnx_engine.bench.runner import resolve_variants
from onnx_engine.bench.settings import BenchSettings
from onnx_engine.bench.variants import graph_files
from onnx_engine.bench.workloads import WorkloadFactory

_PAST, _PRESENT = "past_key_values.", "present."


def load_engine_model(artifact: Path, variant: str, threads: int) -> Any:
    """The engine's ``Seq2SeqLM`` on the CPU at ``variant`` with ``threads``."""
    from engine.tasks.text2text import DEFAULT_OPTIONS, Seq2SeqLM
    from onnx_engine.bench.variants import load_engine

    return load_engine(Seq2SeqLM, DEFAULT_OPTIONS, ContenderSettings(artifact, None, variant, {},
                                                                     threads))


def _timed_ms(call: Any) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


class BareLoop:
    """Greedy decoding over three bare sessions (no spinning, as the engine loads them), timing
    the with-past runs apart from the Python between them."""

    def __init__(self, graphs: dict[str, Path], threads: int, artifact: Path) -> None:
        import onnxruntime as ort

        from engine.manifest import ArtifactManifest

        options = ort_session_options(threads, spinning=False)
        self.sessions = {role: ort.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])
                         for role, path in graphs.items()}
        self.start = int(ArtifactManifest.read(artifact).generation["decoder_start_token_id"])

    def run(self, ids: np.ndarray, steps: int) -> dict[str, Any]:
        mask = np.ones_like(ids)
        timings: dict[str, float] = defaultdict(float)
        began = time.perf_counter()
        (hidden,) = self.sessions["encoder"].run(None, {"input_ids": ids, "attention_mask": mask})
        timings["encoder_ms"] = (time.perf_counter() - began) * 1e3
        decoder, with_past = self.sessions["decoder"], self.sessions["decoder_with_past"]
        began = time.perf_counter()
        outputs = decoder.run(None, {"input_ids": np.full((1, 1), self.start, np.int64),
                                     "encoder_hidden_states": hidden,
                                     "encoder_attention_mask": mask})
        timings["first_step_ms"] = (time.perf_counter() - began) * 1e3
        names = [node.name for node in decoder.get_outputs()]
        past = {_PAST + n[len(_PRESENT):]: a for n, a in zip(names, outputs)
                if n.startswith(_PRESENT)}
        out_names = [node.name for node in with_past.get_outputs()]
        logits, middle = outputs[0], None
        for step in range(steps - 1):
            tick = time.perf_counter()
            next_ids = logits[:, -1].argmax(-1)[:, None]
            feeds = {"input_ids": next_ids, "encoder_attention_mask": mask, **past}
            if step == steps // 2:
                middle = feeds
            tock = time.perf_counter()
            outputs = with_past.run(None, feeds)
            done = time.perf_counter()
            logits = outputs[0]
            past.update({_PAST + n[len(_PRESENT):]: a for n, a in zip(out_names, outputs)
                         if n.startswith(_PRESENT)})
            timings["python_ms"] += (tock - tick + time.perf_counter() - done) * 1e3
            timings["with_past_run_ms"] += (done - tock) * 1e3
        later = steps - 1
        return {"encoder_ms": timings["encoder_ms"], "first_step_ms": timings["first_step_ms"],
                "with_past_run_ms_per_step": timings["with_past_run_ms"] / later,
                "python_ms_per_step": timings["python_ms"] / later, "middle_feeds": middle}


def node_profile(graph: Path, feeds: dict[str, np.ndarray], threads: int,
                 runs: int) -> dict[str, Any]:
    """ONNX Runtime's per-node profile of ``runs`` calls on ``feeds``: ms per call by op type,
    the LM head's nodes, and the time of a run outside its kernels."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as scratch:
        options = ort_session_options(threads, spinning=False)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 3):
            logits = session.run(["logits"], feeds)[0]
        vocab = int(logits.shape[-1])
        events = json.loads(Path(session.end_profiling()).read_text())
        optimized = onnx.load(options.optimized_model_filepath)
    lm_head = _lm_head_nodes(optimized, vocab)
    runs_seen = [e for e in events if e.get("name") == "model_run"][3:]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = []  # (run ms, {op: ms}, LM head ms) of each timed run
    for run in runs_seen:
        inside = [e for e in kernels if run["ts"] <= e["ts"] <= run["ts"] + run["dur"]]
        by_op: dict[str, float] = defaultdict(float)
        for event in inside:
            by_op[event["args"]["op_name"]] += event["dur"] / 1e3
        head = sum(e["dur"] for e in inside if e["name"][: -len("_kernel_time")] in lm_head)
        per_run.append((run["dur"] / 1e3, by_op, head / 1e3))
    ops = {op for _, by_op, _ in per_run for op in by_op}
    median_by_op = {op: statistics.median(by_op.get(op, 0.0) for _, by_op, _ in per_run)
                    for op in ops}
    run_ms = statistics.median(run for run, _, _ in per_run)
    kernel_ms = sum(median_by_op.values())  # so the op shares add up to it
    head_ms = statistics.median(head for _, _, head in per_run)
    outside = statistics.median(run - sum(by_op.values()) for run, by_op, _ in per_run)
    return {"run_ms": run_ms, "kernel_ms": kernel_ms, "outside_kernels_ms": outside,
            "lm_head_ms": head_ms, "lm_head_nodes": sorted(lm_head),
            "by_op_ms": dict(sorted(median_by_op.items(), key=lambda item: -item[1]))}


def _lm_head_nodes(model: Any, vocab: int) -> set[str]:
    """Nodes that read a weight with a vocabulary-sized axis (the LM head; the embedding Gather
    too, which is cheap), plus the quantization of their activation input."""
    weights = {t.name for t in model.graph.initializer if vocab in tuple(t.dims)}
    producers = {output: node for node in model.graph.node for output in node.output}
    head = {node.name for node in model.graph.node
            if node.op_type != "Gather" and weights & set(node.input)}
    for node in model.graph.node:
        if node.name in head:
            for name in node.input:
                source = producers.get(name)
                if source is not None and source.op_type == "DynamicQuantizeLinear":
                    head.add(source.name)
    return head


def profile_variant(target: Any, variant: str, threads: int, seq: int, steps: int, runs: int,
                    bandwidth: float) -> dict[str, Any]:
    artifact = target.artifact
    graphs = graph_files(artifact, variant)
    factory = WorkloadFactory(artifact / "tokenizer.json", target.manifest.max_length)
    text = factory.text(seq)
    from tokenizers import Tokenizer

    model = load_engine_model(artifact, variant, threads)
    loop = BareLoop(graphs, threads, artifact)
    ids = np.array([Tokenizer.from_file(str(artifact / "tokenizer.json")).encode(text).ids],
                   dtype=np.int64)
    tokens = len(model.generate(text, max_new_tokens=steps)[0].token_ids)
    loop.run(ids, steps)
    # Alternating, so a burst of other work on a shared machine hits both alike.
    engine_ms, bare = [], []
    for _ in range(runs):
        engine_ms.append(_timed_ms(lambda: model.generate(text, max_new_tokens=steps)))
        began = time.perf_counter()
        bare.append(loop.run(ids, steps))
        bare[-1]["call_ms"] = (time.perf_counter() - began) * 1e3
    call_ms = statistics.median(engine_ms)
    engine = {"call_ms": call_ms, "tokens": tokens, "ms_per_token": call_ms / tokens}
    middle = bare[-1].pop("middle_feeds")
    split = {key: statistics.median(run[key] for run in bare) for key in bare[0]
             if key != "middle_feeds"}
    split["ms_per_token"] = split["call_ms"] / steps
    profile = node_profile(graphs["decoder_with_past"], middle, threads, runs * 4)
    weight_bytes = GraphCostCounter(threads).count(graphs["decoder_with_past"], middle).weight_bytes
    floor_ms = weight_bytes / bandwidth * 1e3
    return {"variant": variant, "engine": engine, "bare_loop": split, "profile": profile,
            "weight_bytes": weight_bytes, "weight_floor_ms": floor_ms,
            "engine_vs_floor": engine["ms_per_token"] / floor_ms,
            "past_length": int(next(v for k, v in middle.items() if k.startswith(_PAST)).shape[2])}


def markdown(document: dict[str, Any]) -> str:
    machine = document["machine"]
    lines = [
        f"# T5 decoder step profile, batch 1 ({document['model']})", "",
        f"Measured on {machine['cpu_model']}, {machine['threads_used']} threads; ISA flags: "
        f"{' '.join(machine.get('cpu_isa_flags', [])) or '-'}; 1-minute load average "
        f"{document['load_at_start'][0]:.1f} at start, {document['load_at_end'][0]:.1f} at end"
        f"{stolen_phrase(document.get('cpu_time_stolen_share'))}. "
        f"Copy bandwidth measured here: {document['bandwidth_gb_s']:.1f} GB/s.", "",
        f"Command: `{document['command']}`", "",
        "| variant | engine ms/token | bare loop ms/token | bare with-past run ms | "
        "bare Python between runs ms | "
        "encoder ms | first step ms | profiled run ms | in kernels ms | outside kernels ms | "
        "LM head ms | DynamicQuantizeLinear ms | cache Concat ms | weight MB | weight floor ms | "
        "engine / floor |",
        "|---|" + "---:|" * 15,
    ]
    for entry in document["variants"]:
        prof, bare = entry["profile"], entry["bare_loop"]
        lines.append(
            f"| {entry['variant']} | {entry['engine']['ms_per_token']:.2f} | "
            f"{bare['ms_per_token']:.2f} | {bare['with_past_run_ms_per_step']:.2f} | "
            f"{bare['python_ms_per_step']:.3f} | "
            f"{bare['encoder_ms']:.2f} | {bare['first_step_ms']:.2f} | {prof['run_ms']:.2f} | "
            f"{prof['kernel_ms']:.2f} | {prof['outside_kernels_ms']:.2f} | "
            f"{prof['lm_head_ms']:.2f} | {prof['by_op_ms'].get('DynamicQuantizeLinear', 0):.2f} | "
            f"{prof['by_op_ms'].get('Concat', 0):.3f} | {entry['weight_bytes'] / 1e6:.1f} | "
            f"{entry['weight_floor_ms']:.2f} | {entry['engine_vs_floor']:.2f}x |"
        )
    for entry in document["variants"]:
        lines += ["", f"**{entry['variant']}** with-past step (past length "
                  f"{entry['past_length']}), kernel ms per run by op type:", "",
                  "| op | ms | share |", "|---|---:|---:|"]
        total = entry["profile"]["kernel_ms"]
        for op, ms in entry["profile"]["by_op_ms"].items():
            if ms >= 0.01:
                lines.append(f"| {op} | {ms:.3f} | {ms / total:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="t5-small", help="built-in name or artifact folder")
    parser.add_argument("--variants", default="auto,fp32")
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path("artifacts/bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    threads = args.threads or physical_cores()
    started_load, counters_at_start = load_average(), cpu_time_counters()
    target = resolve_target(args.model, args.cache_dir, log=sys.stderr)
    settings = BenchSettings(variants=tuple(args.variants.split(",")), cache_dir=args.cache_dir)
    notes: list[str] = []
    variants, _ = resolve_variants(target, settings, notes)
    bandwidth = max(measure_bandwidth() for _ in range(3))
    document = {
        "model": target.name, "machine": machine_info(threads, {}), "load_at_start": started_load,
        "command": "python -m benchmarks.t5_profile " + " ".join(argv or sys.argv[1:]),
        "bandwidth_gb_s": bandwidth / 1e9, "notes": notes,
        "variants": [profile_variant(target, v, threads, args.seq, args.steps, args.runs,
                                     bandwidth) for v in variants],
    }
    document["load_at_end"] = load_average()
    document["cpu_time_stolen_share"] = stolen_share(counters_at_start, cpu_time_counters())
    write_results(document, markdown(document), args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
