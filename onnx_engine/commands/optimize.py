"""``onnx-engine optimize ARTIFACT --fusion --int8 --fp16 --bf16 --int8-openvino --int4 | --all``:
add gated variants.

The same flags on ``onnx-engine export`` run this right after the export. The exit status is 1
when a requested variant failed its accuracy gate (it is recorded, with the reason, and never
used), so scripts notice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_GATE_FAILED = 1
_FLAG_VARIANTS = (("fusion", "fused"), ("int8", "int8"), ("fp16", "fp16"), ("bf16", "bf16"),
                  ("int8_openvino", "int8-openvino"), ("int4", "int4"))
# --all leaves out int8-openvino (its calibration and search take minutes and need NNCF) and
# int4 (T5 only; 4-bit weights fail the token gate on small models: ask for it by name).
_NOT_IN_ALL = ("int8-openvino", "int4")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "optimize",
        help="add fused / int8 / fp16 / bf16 / int8-openvino / int4 variants, each checked against "
        "PyTorch"
    )
    parser.add_argument("artifact", type=Path, help="artifact folder written by export")
    parser.add_argument("--reference", default=None,
                        help="PyTorch model to compare with (default: the manifest's source)")
    add_variant_arguments(parser)
    parser.add_argument("--retime", action="store_true",
                        help="only time the existing passing variants on this CPU and record it, "
                        "so variant='auto' ranks them for this machine (no PyTorch needed)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=run)


def add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """The variant flags shared by ``optimize`` and ``export``."""
    from export.variants.quantize import SENSITIVE_LAYERS

    group = parser.add_argument_group("optimized variants")
    group.add_argument("--fusion", action="store_true",
                       help="ORT transformer optimizer (fused attention/layer norm); fp32")
    group.add_argument("--int8", action="store_true",
                       help="int8 (CPU): dynamic or calibrated static, the most sensitive "
                       "matmuls kept in fp32 until it passes its gate")
    group.add_argument("--fp16", action="store_true", help="fused + float16 (CUDA)")
    group.add_argument("--bf16", action="store_true",
                       help="bf16 through OpenVINO (CPUs with AMX or AVX512-BF16; needs the "
                       "openvino extra)")
    group.add_argument("--int8-openvino", action="store_true",
                       help="calibrated int8 through OpenVINO (NNCF: SmoothQuant, the most "
                       "sensitive matmuls kept in fp32 until it passes its gate; needs the "
                       "openvino and export extras)")
    group.add_argument("--int4", action="store_true",
                       help="T5: 4-bit decoder weights and a fused decoder step (CPU; the "
                       "encoder in int8)")
    group.add_argument("--all", action="store_true",
                       help="fused, int8, fp16 and bf16 (bf16 only where OpenVINO can run it "
                       "here); not int8-openvino, whose calibration takes minutes, nor int4")
    group.add_argument("--gate", action="append", default=[], metavar="VARIANT.FIELD=VALUE",
                       help="change an accuracy limit, e.g. int8.max_prob_diff=0.05 (fields: "
                       "max_abs_diff, max_prob_diff, min_agreement; 'none' drops a limit)")
    group.add_argument("--int8-per-tensor", action="store_true",
                       help="one weight scale per tensor instead of per channel")
    group.add_argument("--int8-reduce-range", action="store_true",
                       help="7-bit weights, for x86 CPUs without VNNI")
    group.add_argument("--int8-keep-fp32", action="append", default=[],
                       choices=sorted(SENSITIVE_LAYERS), help="keep these layers in fp32")
    group.add_argument("--calibration", type=Path, default=None, metavar="FILE",
                       help="texts, one per line, to calibrate int8 on and to gate classifier "
                       "variants on besides the check set (default: the check set plus "
                       "benchmarks/data/real_sentences.txt)")
    group.add_argument("--timing-runs", type=int, default=5,
                       help="timed rounds per workload when ranking variant speed (default 5)")


def requested_variants(args: argparse.Namespace) -> tuple[str, ...]:
    """The variants the flags ask for; ``--all`` leaves bf16 out (saying why) where it cannot
    run."""
    names = tuple(name for flag, name in _FLAG_VARIANTS
                  if getattr(args, flag, False) or (args.all and name not in _NOT_IN_ALL))
    if args.all and not args.bf16:
        from engine.openvino import bf16_unusable_reason

        unusable = bf16_unusable_reason()
        if unusable is not None:
            print(f"--all: no bf16 variant: {unusable}", file=sys.stderr)
            return tuple(name for name in names if name != "bf16")
    return names


def optimize_and_report(args: argparse.Namespace, artifact: Path, reference: str | None) -> int:
    """Run the optimizer for the flags in ``args``, print the variant table, return the status."""
    from export.variants.optimize import OptimizeSettings, QuantizeSettings, optimize_artifact

    variants = requested_variants(args)
    settings = OptimizeSettings(
        artifact=artifact,
        variants=variants,
        gate_overrides=tuple(args.gate),
        reference_model=reference,
        quantize=QuantizeSettings(
            per_channel=not args.int8_per_tensor,
            reduce_range=args.int8_reduce_range,
            keep_fp32=tuple(args.int8_keep_fp32),
        ),
        calibration=args.calibration,
        timing_runs=args.timing_runs,
        quiet=args.quiet,
    )
    manifest = optimize_artifact(settings)
    print(variant_table(manifest))
    print(auto_choice_line(manifest))
    failed = [name for name in variants if not manifest.variants[name].passed]
    if failed:
        print(f"kept out of use (failed their gate): {', '.join(failed)}", file=sys.stderr)
        return EXIT_GATE_FAILED
    return 0


def run(args: argparse.Namespace) -> int:
    from engine.errors import InputError
    from onnx_engine.commands.runtime_args import check_artifact_folder

    check_artifact_folder(args.artifact, None, "optimize")
    if args.retime and not requested_variants(args):
        from export.variants.optimize import retime_artifact

        manifest = retime_artifact(args.artifact, args.timing_runs, args.quiet)
        print(variant_table(manifest))
        print(auto_choice_line(manifest))
        return 0
    if not requested_variants(args):
        raise InputError(
            "Choose the variants to make: --fusion, --int8, --fp16, --bf16, --int8-openvino, "
            "--int4 or "
            "--all (or --retime to time the existing ones on this CPU)."
        )
    return optimize_and_report(args, args.artifact, args.reference)


def variant_table(manifest: Any) -> str:
    """One line per variant: target, gate, measured figures, CPU latency (ms per workload)."""
    from engine.variants.choice import variant_records
    from engine.variants.records import FP32, RUNTIME_ONNXRUNTIME, VARIANT_NAMES

    names = _figure_names(manifest.task)
    header = f"{'variant':<8} {'target':<6} {'gate':<30} {'measured vs PyTorch':<44} {'cpu ms':<16}"
    lines = [header + " result"]
    records = variant_records(manifest)
    order = sorted(records, key=lambda name: VARIANT_NAMES.index(name))
    for name in order:
        record = records[name]
        cpu = record.speeds.get("cpu")
        latency = " / ".join(f"{value:.2f}" for value in cpu.latency_ms.values()) if cpu else "-"
        verdict = "passed" if record.passed else f"FAILED: {record.reason}"
        measured = _measured(record.figures, names)
        if name == FP32 and manifest.parity:
            measured = f"{names[0]} {manifest.parity['max_abs_diff']:.1e} (export)"
        if record.passed and record.checked_on == "cpu" and record.target == "cuda":
            verdict += " (checked on CPU)"
        target = record.target if record.runtime == RUNTIME_ONNXRUNTIME else f"{record.target}/ov"
        lines.append(
            f"{name:<8} {target:<6} {_limits(record.gate, names):<30} {measured:<44} "
            f"{latency:<16} {verdict}"
        )
    return "\n".join(lines)


def auto_choice_line(manifest: Any) -> str:
    from engine.cpu import current_cpu
    from engine.tasks.text2text import BATCH_ROWS, BATCH_WORKLOAD
    from engine.variants.choice import (
        auto_for_batches,
        openvino_variants_unusable,
        select_variant,
        variant_records,
    )
    from engine.variants.records import AUTO

    unusable = openvino_variants_unusable(variant_records(manifest).values())
    cpu, _ = select_variant(manifest, AUTO, on_cuda=False, openvino_unusable=unusable)
    cuda, _ = select_variant(manifest, AUTO, on_cuda=True)
    batched = auto_for_batches(manifest, cpu, BATCH_WORKLOAD, current_cpu())
    for_batches = (f" ({batched.name} for generate calls of {BATCH_ROWS} or more decoder rows, "
                   "timed faster there)" if batched else "")
    return (
        f"--variant auto picks: {cpu}{for_batches} on CPU, {cuda} on CUDA (CPU timings taken on "
        f"{current_cpu().describe()}; on another CPU 'auto' re-times them at load)"
    )


def _figure_names(task: str) -> tuple[str, str]:
    """What ``max_abs_diff`` and ``max_prob_diff`` measure for the task: logits and
    probabilities, or for embeddings the vectors' elements and the similarity scores."""
    from export.tasks import export_task

    return export_task(task).figure_names


def _limits(gate: Any, names: tuple[str, str]) -> str:
    if gate is None:
        return "(export parity)"
    parts = []
    if gate.max_abs_diff is not None:
        parts.append(f"{names[0]}<={gate.max_abs_diff:g}")
    if gate.max_prob_diff is not None:
        parts.append(f"{names[1]}<={gate.max_prob_diff:g}")
    if gate.min_agreement > 0:
        parts.append(f"top1>={gate.min_agreement:.0%}")
    if gate.max_prob_diff is not None:  # see VariantGate.violations
        parts.append("flips<=2x")
    if gate.flip_margin is not None:
        parts.append(f"flip<={gate.flip_margin:g}")
    if gate.min_cosine is not None:
        parts.append(f"cos>={gate.min_cosine:g}")
    if gate.min_retrieval_agreement is not None:
        parts.append(f"top10>={gate.min_retrieval_agreement:.0%}")
    return " ".join(parts)


def _measured(figures: Any, names: tuple[str, str]) -> str:
    if figures is None:
        return "-"
    text = (
        f"{names[0]} {figures.max_abs_diff:.1e} {names[1]} {figures.max_prob_diff:.1e} "
        f"top1 {figures.agreement:.1%}"
    )
    if figures.flips:
        text += f" ({len(figures.flips)} flips, gap<={figures.clearest_flip_gap:.2g})"
    if figures.sequence_agreement is not None:  # seq2seq: tokens, flips, whole outputs
        text += f" flip {figures.clearest_flip:.2g} seq {figures.sequence_agreement:.0%}"
    if figures.min_cosine is not None:  # embeddings: direction first, then retrieval ranking
        text = f"cos {figures.min_cosine:.4f} top10 {figures.retrieval_agreement:.0%} " + text
    return text
