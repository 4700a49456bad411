"""``onnx-engine verify ARTIFACT``: hashes, then every variant re-run here against the PyTorch
outputs stored in the artifact, as a table; the exit status says pass/fail.

Torch-free by default (the runtime-only install can run it where the artifact is deployed).
``--against-pytorch [MODEL]`` re-runs the PyTorch model instead (torch and transformers needed).
"""

from __future__ import annotations

import argparse

EXIT_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="re-check an artifact's file hashes and every variant against its stored PyTorch "
             "outputs, on this machine (torch-free)",
    )
    parser.add_argument("artifact", help="artifact folder")
    parser.add_argument("--force", action="store_true",
                        help="re-run variants whose verdict is recorded for this machine")
    parser.add_argument("--against-pytorch", nargs="?", const="", default=None, metavar="MODEL",
                        help="re-run the PyTorch model instead (default MODEL: the manifest's); "
                             "needs torch and transformers")
    parser.add_argument("--reference", default=None,
                        help="the PyTorch model to compare with (implies --against-pytorch MODEL)")
    parser.add_argument("--atol", type=float, default=None,
                        help="parity tolerance (default: manifest's; implies --against-pytorch)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from onnx_engine.commands.runtime_args import check_artifact_folder

    check_artifact_folder(args.artifact, None, "verify")
    if args.against_pytorch is not None or args.reference is not None or args.atol is not None:
        return _against_pytorch(args.artifact, args.against_pytorch or args.reference, args.atol)
    from engine.verification.verdicts import VERDICTS_NAME
    from engine.verification.verify_here import report_table, verify_here

    report = verify_here(args.artifact, force=args.force)
    for problem in report.file_problems:
        print(f"file check FAILED: {problem}")
    if not report.file_problems:
        print("file hashes: all match the manifest")
    if report.missing_references:
        print(f"references: none. {report.missing_references}")
        print("VERIFY FAILED")
        return EXIT_FAILED
    print(report_table(report))
    if report.recorded:
        print(f"verdicts recorded for this machine in {args.artifact}/{VERDICTS_NAME}")
    print("VERIFY PASSED" if report.passed else "VERIFY FAILED")
    return 0 if report.passed else EXIT_FAILED


def _against_pytorch(artifact: str, model: str | None, atol: float | None) -> int:
    """The export's parity check re-run against PyTorch (``export.verify``)."""
    from export.verify import verify_artifact

    result = verify_artifact(artifact, reference_model=model or None, atol=atol)
    print(result.report.table())
    for problem in result.file_problems:
        print(f"file check FAILED: {problem}")
    if not result.file_problems:
        print("file hashes: all match the manifest")
    print("VERIFY PASSED" if result.passed else "VERIFY FAILED")
    return 0 if result.passed else EXIT_FAILED
