"""Run Optimum's ONNX exporter into a folder, with its output kept off the user's terminal."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from export.dependencies import require
from export.errors import ExportError


def run_optimum_export(model: str, output: Path, optimum_task: str, opset: int | None) -> None:
    """Export ``model`` (hub id or local folder) with ``optimum.exporters.onnx.main_export``.

    Optimum's own validation is skipped: our parity check is stricter (a fixed text set with
    padding, truncation and non-ASCII input, compared through the engine's own tokenizer).

    Raises:
        ExportError: Optimum failed (unsupported architecture, unreachable hub id, ...).
    """
    exporters = require("optimum.exporters.onnx")
    quiet_loggers = [
        logging.getLogger(name)
        for name in logging.root.manager.loggerDict
        if name.split(".")[0] in ("optimum", "transformers")
    ]
    levels = [logger.level for logger in quiet_loggers]
    captured = io.StringIO()
    try:
        for logger in quiet_loggers:
            logger.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():
            # Tracing warnings about constants are expected for these graphs; parity checks them.
            warnings.simplefilter("ignore")
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
    finally:
        for logger, level in zip(quiet_loggers, levels):
            logger.setLevel(level)
