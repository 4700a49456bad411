"""What a benchmark runs on: an artifact folder, a checkpoint, or a built-in full-size model.

No model hub is reachable here, so the built-in names build the real architectures with RANDOM
weights (distilbert-base-uncased and t5-small dimensions; the compute is the same as the trained
models) and export them once. Built checkpoints and artifacts are cached under ``cache_dir`` with
the spec they were built from, so repeated runs skip the slow export and a changed spec rebuilds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from engine.manifest import (
    MANIFEST_NAME,
    TASK_CLASSIFICATION,
    TASK_FEATURE_EXTRACTION,
    TASK_TEXT2TEXT,
    ArtifactManifest,
)
from onnx_engine.bench.errors import BenchError

_SPEC_FILE = "bench-spec.json"


@dataclass(frozen=True)
class BuiltinModel:
    """A full-size architecture the benchmark can build without the hub."""

    name: str
    task: str
    description: str
    spec: Callable[[], object]  # the export-side spec dataclass, imported lazily
    build: Callable[[Path], Path]  # writes the PyTorch checkpoint, returns its folder
    random_weights: bool = True


def _distilbert_spec() -> object:
    from onnx_engine.sample_models import FULL_SIZE_DISTILBERT

    return FULL_SIZE_DISTILBERT


def _build_distilbert(folder: Path) -> Path:
    from onnx_engine.sample_models import FULL_SIZE_DISTILBERT, build_tiny_classifier

    return build_tiny_classifier(folder, FULL_SIZE_DISTILBERT)


def _t5_spec() -> object:
    from onnx_engine.sample_models import FULL_SIZE_T5_SMALL

    return FULL_SIZE_T5_SMALL


def _build_t5(folder: Path) -> Path:
    from onnx_engine.sample_models import FULL_SIZE_T5_SMALL, build_tiny_t5

    return build_tiny_t5(folder, FULL_SIZE_T5_SMALL)


# The real-weights classifier: all-MiniLM-L6-v2's trained encoder with a seeded 2-label head (its
# labels mean nothing; its numerics, which decide int8 / bf16 accuracy and speed, are real).
_MINILM_CLASSIFIER_SPEC = "all-MiniLM-L6-v2 encoder + BertForSequenceClassification head, seed 0"


def _build_minilm_classifier(folder: Path) -> Path:
    from onnx_engine.sample_models import build_minilm_classifier

    return build_minilm_classifier(folder)


def _minilm_folder(_: Path | None = None) -> Path:
    """The installed all-MiniLM-L6-v2 package folder: real weights, nothing to build."""
    from onnx_engine.sample_models import real_minilm_folder

    return real_minilm_folder()


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.name: model
    for model in (
        BuiltinModel("distilbert-base", TASK_CLASSIFICATION,
                     "distilbert-base-uncased dimensions, 2 labels, RANDOM weights",
                     _distilbert_spec, _build_distilbert),
        BuiltinModel("t5-small", TASK_TEXT2TEXT, "t5-small dimensions, RANDOM weights",
                     _t5_spec, _build_t5),
        BuiltinModel("minilm-classifier", TASK_CLASSIFICATION,
                     "all-MiniLM-L6-v2 REAL encoder weights + seeded 2-label head",
                     lambda: _MINILM_CLASSIFIER_SPEC, _build_minilm_classifier,
                     random_weights=False),
        BuiltinModel("all-minilm-l6-v2", TASK_FEATURE_EXTRACTION,
                     "sentence-transformers all-MiniLM-L6-v2, REAL weights (installed package)",
                     lambda: str(_minilm_folder()), _minilm_folder, random_weights=False),
    )
}


@dataclass(frozen=True)
class BenchTarget:
    """One model to benchmark: its artifact and the PyTorch checkpoint it was exported from.

    ``reference`` is what the pytorch, pipeline and optimum contenders load; it is ``None`` when
    the manifest's source model is neither a local folder nor usable offline.
    """

    name: str
    task: str
    artifact: Path
    reference: str | None
    random_weights: bool

    @property
    def manifest(self) -> ArtifactManifest:
        return ArtifactManifest.read(self.artifact)


def is_artifact(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file()


def target_for_artifact(artifact: Path, name: str | None = None,
                        random_weights: bool = False) -> BenchTarget:
    """A target for an existing artifact; its manifest names the PyTorch reference."""
    manifest = ArtifactManifest.read(artifact)
    source = manifest.source_model
    reference = source if Path(source).is_dir() else None
    return BenchTarget(name or artifact.name, manifest.task, artifact, reference, random_weights)


def resolve_target(model: str, cache_dir: Path, rebuild: bool = False,
                   log: TextIO | None = None) -> BenchTarget:
    """Turn an artifact folder, a built-in name or a checkpoint into a ready-to-run target.

    Raises:
        BenchError: the name is neither an artifact, a built-in model nor a checkpoint folder.
        ExportError: building or exporting the model failed (e.g. its task is not exportable).
    """
    path = Path(model)
    if is_artifact(path):
        return target_for_artifact(path)
    if model in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[model]
        folder = cache_dir / builtin.name
        key = repr(builtin.spec())
        artifact = _cached_export(folder, key, builtin.task, builtin.build, rebuild, log)
        return target_for_artifact(artifact, name=builtin.name,
                                   random_weights=builtin.random_weights)
    if path.is_dir():
        resolved = path.resolve()
        task = checkpoint_task(resolved)
        slug = f"{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
        artifact = _cached_export(cache_dir / slug, str(resolved), task, lambda _: resolved,
                                  rebuild, log)
        return target_for_artifact(artifact, name=resolved.name)
    raise BenchError(
        f"{model!r} is not an artifact folder, a checkpoint folder or a built-in model "
        f"({', '.join(BUILTIN_MODELS)}). Export one with 'onnx-engine export MODEL OUT'."
    )


def checkpoint_task(checkpoint: Path) -> str:
    """The engine task for a Hugging Face checkpoint, read from its ``config.json``.

    Raises:
        BenchError: no config, or an architecture the engine does not serve.
    """
    if (checkpoint / "modules.json").is_file():
        return TASK_FEATURE_EXTRACTION  # a sentence-transformers folder
    config = checkpoint / "config.json"
    if not config.is_file():
        raise BenchError(f"'{checkpoint}' has no config.json: it is not a transformers checkpoint.")
    architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    for architecture in architectures:
        if architecture.endswith("ForSequenceClassification"):
            return TASK_CLASSIFICATION
        if architecture.endswith("ForConditionalGeneration"):
            return TASK_TEXT2TEXT
    raise BenchError(
        f"'{checkpoint}' is a {architectures or 'model without architectures'}; the benchmark "
        "runs sequence classifiers, encoder-decoder (T5) models and sentence-transformers folders."
    )


def _cached_export(folder: Path, key: str, task: str, build: Callable[[Path], Path],
                   rebuild: bool, log: TextIO | None) -> Path:
    """``folder/artifact`` exported from ``build(folder/checkpoint)``, reused while ``key``
    holds."""
    from export.exporter import ExportSettings, export_model

    artifact = folder / "artifact"
    stamp = folder / _SPEC_FILE
    if not rebuild and is_artifact(artifact) and stamp.is_file() and stamp.read_text() == key:
        return artifact
    if log is not None:
        log.write(f"building and exporting {folder.name} into {folder} (cached for next runs)\n")
    checkpoint = build(folder / "checkpoint")
    export_model(ExportSettings(model=str(checkpoint), output=artifact, task=task, force=True,
                                quiet=log is None))
    stamp.write_text(key)
    return artifact
