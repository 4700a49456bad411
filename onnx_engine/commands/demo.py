"""``onnx-engine demo``: the built-in end-to-end run behind the README's first command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_MISMATCH = 1
DEMO_TOLERANCE = 1e-5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="export, verify and run built-in models; engine beside PyTorch"
    )
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/demo"),
                        help="where the demo's checkpoints and artifacts go")
    parser.add_argument("--model", default=None,
                        help="a real classifier checkpoint (hub id or folder) "
                        "instead of the tiny one")
    parser.add_argument("--t5-model", default=None,
                        help="a real T5 checkpoint (hub id or folder) instead of the tiny one")
    parser.add_argument("--provider", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("-q", "--quiet", action="store_true", help="no export progress output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from onnx_engine.demo.semantic_search import run_embedding_demo
    from onnx_engine.demo.side_by_side import (
        DemoSettings,
        demo_max_difference,
        run_classifier_demo,
        run_seq2seq_demo,
    )

    settings = DemoSettings(
        workdir=args.workdir, classifier_model=args.model, provider=args.provider, quiet=args.quiet,
        t5_model=args.t5_model,
    )
    differences = [run_classifier_demo(settings, sys.stdout)]
    differences.append(run_seq2seq_demo(settings, sys.stdout))
    differences.append(run_embedding_demo(args.workdir, args.provider, args.quiet, sys.stdout))
    worst = demo_max_difference(differences)
    verdict = "PASS" if worst <= DEMO_TOLERANCE else "FAIL"
    print(f"\ndemo {verdict}: engine vs PyTorch max |Δ| = {worst:.2e} "
          f"(tolerance {DEMO_TOLERANCE:.0e})")
    return 0 if verdict == "PASS" else EXIT_MISMATCH
