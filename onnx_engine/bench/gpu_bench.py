"""The GPU benchmark of ``benchmarks/gpu_check.sh``: engine fp32/fp16 on CUDA vs PyTorch eager
fp32/fp16 on the same GPU, plus the per-step host<->device copies of IO-binding decoding.

Workloads (the issue's): classifier b1 s8, b1 s128, b32 s128; T5 greedy and 4-beam, 32 new tokens,
b1 and b8. Every call is strings in, host results out, on both sides (the engine's ``logits`` /
``generate``; PyTorch's tokenizer + forward or ``generate`` + ``.cpu()``, which also synchronizes
the GPU), timed with the alternating rounds of :mod:`engine.timing`. ``device="cpu"`` runs the
same code on the CPU with fp32 only: that is how the test suite checks it without a GPU.

    python -m onnx_engine.bench.gpu_bench prepare --cache-dir artifacts/bench   # prints 2 paths
    python -m onnx_engine.bench.gpu_bench run CLF_ARTIFACT T5_ARTIFACT --out benchmarks/results
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.manifest import TASK_CLASSIFICATION, TASK_TEXT2TEXT
from engine.timing import TimingPlan, time_alternating
from onnx_engine.bench.gpu_report import (
    ENGINE,
    TORCH,
    machine,
    markdown,
    ratios,
    targets,
    write_results,
)
from onnx_engine.bench.models import BenchTarget, target_for_artifact
from onnx_engine.bench.workloads import WorkloadFactory

FP32, FP16 = "fp32", "fp16"
T5_SOURCE_TOKENS = 32


@dataclass(frozen=True)
class GpuBenchPlan:
    """What is measured; the defaults are the issue's workloads."""

    device: str = "cuda"
    classifier_shapes: tuple[tuple[int, int], ...] = ((1, 8), (1, 128), (32, 128))
    t5_batches: tuple[int, ...] = (1, 8)
    t5_beams: tuple[int, ...] = (1, 4)
    new_tokens: int = 32
    source_tokens: int = T5_SOURCE_TOKENS
    timing: TimingPlan = field(default_factory=lambda: TimingPlan(
        warmup=3, rounds=10, min_rounds=3, timed_per_turn=2, budget_s=10.0))

    @property
    def precisions(self) -> tuple[str, ...]:
        # fp16 variants are CUDA-only in the engine, and fp16 GEMMs on CPU measure nothing useful.
        return (FP32, FP16) if self.device == "cuda" else (FP32,)


def _engine(target: BenchTarget, engine_class: type, precision: str, device: str) -> Any:
    return engine_class.load(target.artifact, provider=device, variant=precision)


def _torch_model(target: BenchTarget, auto_class: str, precision: str, device: str) -> Any:
    import transformers

    model = getattr(transformers, auto_class).from_pretrained(target.reference).eval().to(device)
    return model.half() if precision == FP16 else model


def _classifier_calls(target, plan, texts, loaded) -> dict[str, Callable[[], object]]:
    import torch

    tokenizer = loaded["tokenizer"]
    calls: dict[str, Callable[[], object]] = {}
    for precision in plan.precisions:
        engine, model = loaded[ENGINE, precision], loaded[TORCH, precision]
        calls[f"{ENGINE} {precision}"] = (
            lambda engine=engine: engine.logits(texts, batch_size=len(texts))
        )

        def torch_call(model=model) -> object:
            with torch.inference_mode():
                batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
                return model(**batch.to(plan.device)).logits.float().cpu().numpy()

        calls[f"{TORCH} {precision}"] = torch_call
    return calls


def _t5_calls(target, plan, texts, beams, loaded) -> dict[str, Callable[[], object]]:
    import torch

    tokenizer = loaded["tokenizer"]
    calls: dict[str, Callable[[], object]] = {}
    for precision in plan.precisions:
        engine, model = loaded[ENGINE, precision], loaded[TORCH, precision]
        calls[f"{ENGINE} {precision}"] = lambda engine=engine: engine.generate(
            texts, max_new_tokens=plan.new_tokens, num_beams=beams, batch_size=len(texts)
        )

        def torch_call(model=model) -> object:
            with torch.inference_mode():
                batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
                output = model.generate(**batch.to(plan.device), max_new_tokens=plan.new_tokens,
                                        num_beams=beams, do_sample=False)
                ids = output.cpu().numpy()
            return tokenizer.batch_decode(ids, skip_special_tokens=True)

        calls[f"{TORCH} {precision}"] = torch_call
    return calls


def _load_all(target: BenchTarget, plan: GpuBenchPlan, engine_class: type, auto_class: str
              ) -> dict[Any, Any]:
    import transformers

    loaded: dict[Any, Any] = {
        "tokenizer": transformers.AutoTokenizer.from_pretrained(target.reference)
    }
    for precision in plan.precisions:
        loaded[ENGINE, precision] = _engine(target, engine_class, precision, plan.device)
        loaded[TORCH, precision] = _torch_model(target, auto_class, precision, plan.device)
    return loaded


def _rows(model: str, label: str, stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"model": model, "workload": label, "contender": name,
         **{key: round(value, 4) if isinstance(value, float) else value
            for key, value in asdict(stat).items()}}
        for name, stat in stats.items()
    ]


def bench_classifier(target: BenchTarget, plan: GpuBenchPlan) -> list[dict[str, Any]]:
    """Latency rows of every classifier workload and contender."""
    from engine.tasks.classification import Classifier

    loaded = _load_all(target, plan, Classifier, "AutoModelForSequenceClassification")
    factory = WorkloadFactory(target.artifact / "tokenizer.json", target.manifest.max_length)
    rows: list[dict[str, Any]] = []
    try:
        for batch, seq in plan.classifier_shapes:
            workload = factory.workload(batch, seq)
            calls = _classifier_calls(target, plan, list(workload.texts), loaded)
            rows += _rows("classifier", workload.label, time_alternating(calls, plan.timing))
    finally:
        _release(loaded)
    return rows


def bench_t5(target: BenchTarget, plan: GpuBenchPlan) -> list[dict[str, Any]]:
    """Latency rows of greedy and beam generation per batch, every contender."""
    from engine.tasks.text2text import Seq2SeqLM

    loaded = _load_all(target, plan, Seq2SeqLM, "AutoModelForSeq2SeqLM")
    factory = WorkloadFactory(target.artifact / "tokenizer.json", target.manifest.max_length)
    rows: list[dict[str, Any]] = []
    try:
        for beams in plan.t5_beams:
            for batch in plan.t5_batches:
                texts = list(factory.workload(batch, plan.source_tokens).texts)
                label = f"{'greedy' if beams == 1 else f'beam{beams}'} b{batch}"
                calls = _t5_calls(target, plan, texts, beams, loaded)
                rows += _rows("t5", label, time_alternating(calls, plan.timing))
    finally:
        _release(loaded)
    return rows


def _release(loaded: dict[Any, Any]) -> None:
    loaded.clear()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def decode_copies(target: BenchTarget, plan: GpuBenchPlan) -> list[dict[str, Any]]:
    """Host<->device copies per decoder step of bound greedy and beam decoding (engine fp32)."""
    from engine.tasks.text2text import DEFAULT_OPTIONS, Seq2SeqLM
    from onnx_engine.bench.transfers import DOWN, UP, TransferCounter

    options = DEFAULT_OPTIONS.with_overrides(provider=plan.device, io_binding="on", variant=FP32)
    model = Seq2SeqLM.load(target.artifact, options=options)
    factory = WorkloadFactory(target.artifact / "tokenizer.json", target.manifest.max_length)
    rows = []
    for beams in plan.t5_beams:
        for batch in plan.t5_batches:
            texts = list(factory.workload(batch, plan.source_tokens).texts)
            with TransferCounter() as counter:
                model.generate(texts, max_new_tokens=plan.new_tokens, num_beams=beams)
            steps = counter.count(DOWN)["logits"]
            rows.append({
                "workload": f"{'greedy' if beams == 1 else f'beam{beams}'} b{batch}",
                "decoder_steps": steps,
                "kv_cache_copies": counter.cache_copies(),
                "uploads_per_step": round(sum(counter.count(UP).values()) / steps, 2),
                "downloads_per_step": round(sum(counter.count(DOWN).values()) / steps, 2),
                "upload_bytes_per_step": round(counter.bytes(UP) / steps),
                "download_bytes_per_step": round(counter.bytes(DOWN) / steps),
                "uploads": dict(counter.count(UP)),
                "downloads": dict(counter.count(DOWN)),
            })
    return rows


def fp16_gates(target: BenchTarget) -> dict[str, Any]:
    """The fp16 variant's gate record as the manifest holds it: verdict, figures, provider."""
    from engine.variants.choice import variant_records

    record = variant_records(target.manifest).get(FP16)
    if record is None:
        return {"made": False}
    data = record.to_dict()
    return {"made": True, **{key: data.get(key) for key in ("passed", "checked_on", "reason",
                                                              "figures", "gate")}}


def prepare(cache_dir: Path, log: Any = sys.stderr) -> tuple[Path, Path]:
    """The built-in full-size classifier and T5-small artifacts with an fp16 variant gated on the
    provider that works here (CUDA on a GPU machine); built once, then reused from ``cache_dir``.
    """
    from engine.cuda_probe import cuda_unusable_reason
    from export.variants.optimize import OptimizeSettings, optimize_artifact
    from onnx_engine.bench.models import resolve_target

    wanted = "cuda" if cuda_unusable_reason() is None else "cpu"  # where optimize gates fp16
    artifacts = []
    for name in ("distilbert-base", "t5-small"):
        target = resolve_target(name, cache_dir, log=log)
        gate = fp16_gates(target)
        if not gate["made"] or gate["checked_on"] != wanted:
            log.write(f"making and gating the fp16 variant of {name} (on {wanted})\n")
            optimize_artifact(OptimizeSettings(target.artifact, variants=(FP16,), timing_runs=1,
                                                quiet=True))
            gate = fp16_gates(target)
        log.write(f"fp16 {name}: passed={gate['passed']} checked_on={gate['checked_on']} "
                  f"{gate['reason'] or ''}\n")
        artifacts.append(target.artifact)
    return artifacts[0], artifacts[1]


def run(classifier: Path, t5: Path, plan: GpuBenchPlan, command: str) -> dict[str, Any]:
    """Measure everything; returns the JSON document."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    targets_by_task = {TASK_CLASSIFICATION: target_for_artifact(classifier, "classifier"),
                       TASK_TEXT2TEXT: target_for_artifact(t5, "t5")}
    for task, target in targets_by_task.items():
        if target.task != task or target.reference is None:
            raise SystemExit(f"gpu_bench: '{target.artifact}' is not a {task} artifact with its "
                             "PyTorch checkpoint folder beside it (the manifest's source_model).")
    latency = bench_classifier(targets_by_task[TASK_CLASSIFICATION], plan)
    latency += bench_t5(targets_by_task[TASK_TEXT2TEXT], plan)
    speedups = ratios(latency)
    return {"command": command, "started": started, "machine": machine(plan.device),
            "plan": {**asdict(plan), "timing": asdict(plan.timing)},
            "fp16_gates": {name: fp16_gates(target) for name, target in targets_by_task.items()},
            "latency": latency, "speedups": speedups, "targets": targets(speedups),
            "copies": decode_copies(targets_by_task[TASK_TEXT2TEXT], plan)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnx_engine.bench.gpu_bench",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="build the models and gate their fp16 variants")
    prep.add_argument("--cache-dir", type=Path, default=Path("artifacts/bench"))
    bench = commands.add_parser("run", help="benchmark and count copies; write gpu-*.json/.md")
    bench.add_argument("classifier", type=Path, help="classifier artifact (with fp16 variant)")
    bench.add_argument("t5", type=Path, help="T5 artifact (with fp16 variant)")
    bench.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    bench.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    bench.add_argument("--budget", type=float, default=10.0, help="seconds per workload")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        print(*prepare(args.cache_dir))
        return 0
    plan = GpuBenchPlan(device=args.device, timing=TimingPlan(
        warmup=3, rounds=10, min_rounds=3, timed_per_turn=2, budget_s=args.budget))
    command = " ".join(["python -m onnx_engine.bench.gpu_bench", *(argv or sys.argv[1:])])
    document = run(args.classifier, args.t5, plan, command)
    path = write_results(document, args.out)
    print(markdown(document))
    print(f"wrote {path} and {path.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
