"""``onnx-engine verify ARTIFACT``: hashes and parity, as a table; the exit status says pass/fail."""

from __future__ import annotations

import argparse

EXIT_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify", help="re-check an artifact's file hashes and its parity with PyTorch"
    )
    parser.add_argument("artifact", help="artifact folder")
    parser.add_argument("--reference", default=None,
                        help="model to compare with (default: the one in the manifest)")
    parser.add_argument("--atol", type=float, default=None, help="tolerance (default: manifest's)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from export.verify import verify_artifact
    from onnx_engine.commands.runtime_args import check_artifact_folder

    check_artifact_folder(args.artifact, None, "verify")
    result = verify_artifact(args.artifact, reference_model=args.reference, atol=args.atol)
    print(result.report.table())
    for problem in result.file_problems:
        print(f"file check FAILED: {problem}")
    if not result.file_problems:
        print("file hashes: all match the manifest")
    print("VERIFY PASSED" if result.passed else "VERIFY FAILED")
    return 0 if result.passed else EXIT_FAILED
