"""``onnx-engine bench [ARTIFACT...]``: engine vs bare ORT, PyTorch, pipeline and Optimum.

Without an artifact it builds the full-size built-in models (random weights, cached under
``--cache-dir``). Prints a table, and writes the JSON (with machine and exact command) and the
latency plot when asked.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from engine.timing import TimingPlan
from onnx_engine.bench.settings import DEFAULT_MODELS, BenchSettings
from onnx_engine.bench.variants import VARIANT_CHOICES

# torch's OpenMP threads otherwise spin after each op and fight ONNX Runtime's threads when the
# two alternate in one process (Optimum T5 at batch 8: 732 ms instead of ~300 ms, ONNX-FACTS), and
# on a shared machine spinning threads slowed PyTorch's own forward 4-10x. It must be set before
# torch is imported, so here at the edge; ``--omp-wait-policy default`` leaves OpenMP's own.
DEFAULT_OMP_WAIT_POLICY = "PASSIVE"
_RECORDED_ENVIRONMENT = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _joined(values: tuple[object, ...]) -> str:
    return ",".join(map(str, values))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark the engine against bare ORT, PyTorch, the pipeline and Optimum"
    )
    parser.add_argument("artifacts", nargs="*", metavar="ARTIFACT",
                        help="artifact folders to bench")
    parser.add_argument("--model", action="append", default=[], metavar="NAME|CHECKPOINT",
                        help=f"built-in model ({', '.join(DEFAULT_MODELS)}) or a checkpoint "
                             "folder to export and bench; repeatable (default without ARTIFACT: "
                             "every built-in)")
    defaults = BenchSettings()
    parser.add_argument("--batch", type=_int_list, default=defaults.batches,
                        help=f"default {_joined(defaults.batches)}")
    parser.add_argument("--seq", type=_int_list, default=defaults.seqs,
                        help="input tokens incl. special tokens "
                        f"(default {_joined(defaults.seqs)})")
    parser.add_argument("--new-tokens", type=int, default=defaults.new_tokens,
                        help="generated tokens (seq2seq)")
    parser.add_argument("--beams", type=int, default=defaults.beams,
                        help="beams of seq2seq generation (default 1: greedy)")
    parser.add_argument("--contenders", type=_name_list, default=defaults.contenders,
                        help=f"default {_joined(defaults.contenders)}")
    parser.add_argument("--variants", type=_name_list, default=defaults.variants,
                        help=f"any of {_joined(VARIANT_CHOICES)} "
                        f"(default {_joined(defaults.variants)})")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every contender (default: physical cores)")
    parser.add_argument("--warmup", type=int, default=defaults.timing.warmup,
                        help="untimed calls per contender")
    parser.add_argument("--rounds", type=int, default=defaults.timing.rounds,
                        help="alternating rounds per workload")
    parser.add_argument("--min-rounds", type=int, default=defaults.timing.min_rounds)
    parser.add_argument("--budget", type=float, default=defaults.timing.budget_s,
                        help="seconds per workload after which no new round starts")
    parser.add_argument("--cold-runs", type=int, default=defaults.cold_runs,
                        help="fresh processes per contender for cold start and RSS (0: skip)")
    parser.add_argument("--no-floor", action="store_true", help="skip peaks and FLOP counts")
    parser.add_argument("--no-agreement", action="store_true", help="skip the agreement check")
    parser.add_argument("--json", type=Path, default=None, help="write results as JSON")
    parser.add_argument("--plot", type=Path, default=None, help="write latency vs seq as PNG")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the README table (markdown, with the command)")
    parser.add_argument("--cache-dir", type=Path, default=defaults.cache_dir,
                        help="where built-in models are built once (default artifacts/bench)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild cached built-in models")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--omp-wait-policy", choices=("PASSIVE", "ACTIVE", "default"),
                        default=DEFAULT_OMP_WAIT_POLICY,
                        help="OMP_WAIT_POLICY for torch's threads (default PASSIVE: no spinning)")
    parser.set_defaults(handler=run)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, with every option spelled out."""
    parts = ["onnx-engine", "bench", *map(str, args.artifacts)]
    for model in args.model:
        parts += ["--model", model]
    parts += ["--batch", _joined(args.batch), "--seq", _joined(args.seq),
              "--new-tokens", str(args.new_tokens), "--beams", str(args.beams),
              "--contenders", _joined(args.contenders),
              "--variants", _joined(args.variants), "--warmup", str(args.warmup),
              "--rounds", str(args.rounds), "--min-rounds", str(args.min_rounds),
              "--budget", f"{args.budget:g}", "--cold-runs", str(args.cold_runs),
              "--omp-wait-policy", args.omp_wait_policy]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    parts += [flag for flag, on in (("--no-floor", args.no_floor),
                                    ("--no-agreement", args.no_agreement)) if on]
    for flag in ("json", "plot", "markdown"):
        if getattr(args, flag):
            parts += [f"--{flag}", str(getattr(args, flag))]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    if args.omp_wait_policy != "default":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    else:
        os.environ.pop("OMP_WAIT_POLICY", None)
    from onnx_engine.bench.markdown import markdown_table
    from onnx_engine.bench.plot import plot_latency
    from onnx_engine.bench.report import table, write_json, write_markdown
    from onnx_engine.bench.runner import run_benchmark
    from onnx_engine.bench.targets import targets_table

    settings = BenchSettings(
        batches=args.batch, seqs=args.seq, new_tokens=args.new_tokens, beams=args.beams,
        contenders=args.contenders, variants=args.variants, threads=args.threads,
        timing=TimingPlan(warmup=args.warmup, rounds=args.rounds,
                          min_rounds=min(args.min_rounds, args.rounds), budget_s=args.budget),
        cold_runs=args.cold_runs, floor=not args.no_floor, agreement=not args.no_agreement,
        cache_dir=args.cache_dir, rebuild=args.rebuild,
    )
    models = [*map(str, args.artifacts), *args.model] or list(DEFAULT_MODELS)
    environment = {key: os.environ[key] for key in _RECORDED_ENVIRONMENT if key in os.environ}
    command = command_line(args)
    document, reports = run_benchmark(
        models, settings, environment, sys.stderr,
        progress=not args.no_progress and sys.stderr.isatty(), command=command,
    )
    for report, model in zip(reports, document["models"]):
        print(table(report))
        print(f"targets ({model['name']}; reported, not asserted):")
        print(targets_table(model["targets"]) or "(none measured)")
        print()
    if args.plot:
        plot_latency(reports, args.plot)
        document["plot"] = str(args.plot)
    if args.json:
        write_json(args.json, document)
    if args.markdown:
        write_markdown(args.markdown, markdown_table(document))
    written = [str(path) for path in (args.json, args.plot, args.markdown) if path]
    if written:
        print(f"wrote {', '.join(written)}", file=sys.stderr)
    return 0
