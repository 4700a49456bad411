"""The export driver: Optimum export, artifact files, manifest, parity gate, atomic move."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.artifact import CONFIG_NAME, TOKENIZER_NAME, file_record
from engine.errors import ParityError
from engine.manifest import MANIFEST_NAME, TASK_CLASSIFICATION, ArtifactManifest, TokenizerSpec
from engine.version import __version__
from export.dependencies import check_installed
from export.errors import ArtifactWriteError, ExportError
from export.model_source import check_model_source, infer_task
from export.optimum_export import run_optimum_export
from export.progress import StageProgress
from export.signature import graph_spec, opset_of
from export.staging import check_output_free, staged_output
from export.tasks import export_task
from export.tasks.base import TaskExporter

_KEPT_TOKENIZER_FILES = (TOKENIZER_NAME, "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class ExportSettings:
    """What to export and where; ``force`` replaces an existing output folder.

    ``task`` None infers it from the model's config (``export.model_source.infer_task``).
    ``atol`` defaults to the task's parity tolerance; ``task_options`` are settings only one task
    takes (feature-extraction: ``pooling``, ``normalize``).
    """

    model: str
    output: Path
    task: str | None = TASK_CLASSIFICATION
    opset: int | None = None
    force: bool = False
    quiet: bool = False
    atol: float | None = None
    task_options: Mapping[str, Any] = field(default_factory=dict)


def task_exporter(task: str, options: Mapping[str, Any] | None = None) -> TaskExporter:
    """The exporter of ``task``, built with its task-specific ``options``.

    Raises:
        ExportError: unknown task, or an option this task does not take.
    """
    exporter_class = export_task(task).exporter
    options = {key: value for key, value in (options or {}).items() if value is not None}
    try:
        return exporter_class(**options)
    except TypeError as error:
        raise ExportError(
            f"Option(s) {', '.join(sorted(options))} do not apply to task '{task}'."
        ) from error


def export_model(settings: ExportSettings) -> ArtifactManifest:
    """Export a Hugging Face model to a checked artifact folder.

    The artifact is assembled in a staging folder and moved to ``settings.output`` only after the
    engine's output matched PyTorch's on the check set, so a failed export leaves nothing behind.

    Raises:
        OutputExistsError: the output exists and ``force`` is not set.
        ExportError: the model is neither a local folder nor reachable on the hub (said in a
            second, see ``export.model_source``), its task cannot be inferred, or it cannot be
            loaded or exported.
        ParityError: the exported model disagrees with PyTorch; the message names the worst input.
        ArtifactWriteError: a file cannot be written (a full disk, a read-only folder); nothing
            is left behind and an existing output is untouched.
    """
    check_installed("torch", "transformers", "optimum")  # before a hub request is made
    if settings.task is not None:
        task_exporter(settings.task, settings.task_options)  # a bad task or option first
    output = Path(settings.output)
    check_output_free(output, settings.force)
    check_model_source(settings.model)
    task = settings.task or infer_task(settings.model)
    exporter = task_exporter(task, settings.task_options)
    progress = StageProgress(total=4, quiet=settings.quiet)
    with progress.stage(f"loading {settings.model}"):
        reference = exporter.load_reference(settings.model)
    try:
        return _export_staged(exporter, reference, settings, output, progress)
    except OSError as error:  # a full disk or a read-only folder: the output is untouched
        raise ArtifactWriteError.from_os_error(error, output) from None


def _export_staged(
    exporter: TaskExporter,
    reference: Any,
    settings: ExportSettings,
    output: Path,
    progress: StageProgress,
) -> ArtifactManifest:
    """Write, check and move the artifact into place (see ``export_model``)."""
    with staged_output(output, settings.force) as staging:
        with progress.stage(f"exporting ONNX ({exporter.optimum_task})"):
            raw = staging / "optimum"
            run_optimum_export(settings.model, raw, exporter.optimum_task, settings.opset)
            _collect_files(exporter, reference, raw, staging)
            manifest = _write_manifest(exporter, reference, settings, staging)
        with progress.stage("checking parity against PyTorch"):
            atol = exporter.default_atol if settings.atol is None else settings.atol
            report = exporter.check_parity(reference, staging, atol)
        if not report.passed:
            raise ParityError(f"Export of '{settings.model}' rejected: {report.summary()}")
        with progress.stage("writing artifact"):
            manifest = replace(manifest, parity=report.to_dict())
            manifest.write(staging)
    return manifest


def _collect_files(exporter: TaskExporter, reference: object, raw: Path, staging: Path) -> None:
    """Move the graphs and config Optimum wrote into the artifact; save the tokenizer ourselves."""
    for file_name in exporter.graph_files.values():
        source = raw / file_name
        if not source.is_file():
            raise ExportError(f"Optimum did not write '{file_name}' (found {sorted(_names(raw))}).")
        shutil.move(str(source), staging / file_name)
        data = raw / f"{file_name}_data"
        if data.exists():  # graphs over 2 GB keep their weights in a side file
            shutil.move(str(data), staging / data.name)
    config = json.loads((raw / CONFIG_NAME).read_text(encoding="utf-8"))
    config.update(exporter.config_overrides(reference))
    (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(raw)
    exporter.write_task_files(reference, staging)
    # Saved apart and copied selectively: tokenizer.json holds the whole vocabulary, so vocab.txt,
    # merges.txt or spiece.model would only be unhashed-looking duplicates in the artifact.
    with tempfile.TemporaryDirectory() as scratch:
        exporter.save_tokenizer(reference, Path(scratch))
        if not (Path(scratch) / TOKENIZER_NAME).is_file():
            raise ExportError("The tokenizer has no tokenizer.json (fast tokenizer) to ship.")
        for name in _KEPT_TOKENIZER_FILES:
            if (Path(scratch) / name).is_file():
                shutil.copyfile(Path(scratch) / name, staging / name)


def _write_manifest(
    exporter: TaskExporter, reference, settings: ExportSettings, staging: Path
) -> ArtifactManifest:
    graphs = {
        role: graph_spec(staging / file_name, file_name)
        for role, file_name in exporter.graph_files.items()
    }
    tokenizer = reference.tokenizer
    manifest = ArtifactManifest(
        task=exporter.task,
        source_model=_model_reference(settings.model),
        engine_version=__version__,
        opset=opset_of(staging / next(iter(exporter.graph_files.values()))),
        max_length=reference.max_length,
        graphs=graphs,
        files={name: file_record(staging / name) for name in sorted(_names(staging))},
        tokenizer=TokenizerSpec(pad_id=int(tokenizer.pad_token_id), pad_token=tokenizer.pad_token),
        generation=exporter.generation_settings(reference),
    )
    manifest.write(staging)
    return manifest


def _names(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.is_file() and path.name != MANIFEST_NAME]


def _model_reference(model: str) -> str:
    """A local checkpoint is recorded by absolute path so ``verify`` finds it from anywhere."""
    path = Path(model)
    return str(path.resolve()) if path.exists() else model
