"""Run Optimum's ONNX exporter into a folder, with its output kept off the user's terminal."""

from __future__ import annotations

from pathlib import Path

from export.dependencies import require
from export.errors import ExportError
from export.quiet import quiet_library_output


def run_optimum_export(model: str, output: Path, optimum_task: str, opset: int | None) -> None:
    """Export ``model`` (hub id or local folder) with ``optimum.exporters.onnx.main_export``.

    Optimum's own validation is skipped: our parity check is stricter (a fixed text set with
    padding, truncation and non-ASCII input, compared through the engine's own tokenizer).

    Raises:
        ExportError: Optimum failed (unsupported architecture, unreachable hub id, ...).
    """
    exporters = require("optimum.exporters.onnx")
    try:
        with quiet_library_output():
            exporters.main_export(
                model,
                output=output,
                task=optimum_task,
                opset=opset,
                do_validation=False,
                library_name="transformers",
            )
    except Exception as error:
        raise ExportError(
            f"Optimum could not export '{model}' for task '{optimum_task}': "
            f"{type(error).__name__}: {error}"
        ) from error

