"""``onnx-engine pack ARTIFACT OUT --variant NAME``: a deployable artifact of one variant."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pack", help="write a deployable artifact with only one variant's files (sizes printed)"
    )
    parser.add_argument("artifact", type=Path, help="artifact folder to pack from")
    parser.add_argument("output", type=Path, help="folder to write the packed artifact to")
    parser.add_argument("--variant", required=True,
                        help="the variant to keep (fp32, fused, int8, ...; it must have passed "
                        "its gate)")
    parser.add_argument("--ort-format", action="store_true",
                        help="also convert its graphs to ONNX Runtime's .ort form and write the "
                        "required_operators.config a reduced-size ONNX Runtime build takes")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.packing import PackSettings, pack_artifact
    from onnx_engine.commands.runtime_args import check_artifact_folder

    check_artifact_folder(args.artifact, None, "pack")
    report = pack_artifact(PackSettings(
        artifact=args.artifact, output=args.output, variant=args.variant, force=args.force,
        ort_format=args.ort_format,
    ))
    print(report.table())
    print(f"packed the '{report.variant}' variant into {args.output}")
    return 0
