"""What differs between tasks at export time, behind one small interface.

The export driver (``export.exporter``) is the same for every task: run Optimum, write files and
manifest, check parity, move into place. A ``TaskExporter`` supplies the task-specific parts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from engine.artifact import Artifact
from engine.options import RuntimeOptions
from engine.tasks.base import ArtifactModel
from export.dependencies import require
from export.errors import ExportError
from export.parity import DEFAULT_ATOL, ParityReport

Model = TypeVar("Model", bound=ArtifactModel)

# Tokenizers that say "no limit" use this sentinel (transformers' VERY_LARGE_INTEGER is 1e30).
_NO_LIMIT = 1_000_000


def exported_fp32(engine_class: type[Model], artifact_dir: Path) -> Model:
    """The engine on an artifact's exported fp32 graphs, before its parity is recorded.

    The exporter checks its staging folder with this (which ``load`` would refuse: no parity
    report yet), and ``verify`` re-checks a finished one. Hashes are checked by the callers
    (export just wrote them; verify reports them itself). Never an optimized variant.
    """
    artifact = Artifact.open(
        artifact_dir, task=engine_class.task, verify_hashes=False, require_parity=False
    )
    return engine_class.from_artifact(artifact, RuntimeOptions(provider="cpu", variant="fp32"))


class TaskExporter(ABC):
    """Task-specific steps of an export; subclasses are stateless apart from their settings."""

    task: str  # the manifest task name, e.g. "text-classification"
    optimum_task: str  # the task name Optimum's exporter takes
    graph_files: ClassVar[dict[str, str]]  # role in the manifest -> ONNX file Optimum writes
    default_atol: float = DEFAULT_ATOL  # parity tolerance unless the caller gives one

    @classmethod
    def infers(cls, architecture: str, config: Mapping[str, Any]) -> bool:
        """Whether a model whose config.json names ``architecture`` is for this task, when the
        user gives no ``--task`` (``export.model_source.infer_task``); by default never."""
        return False

    @classmethod
    def claims(cls, model: str) -> bool:
        """Whether the model's own files name this task (a saved sentence-transformers
        ``CrossEncoder``, say), asked before any config is read; by default never."""
        return False

    @abstractmethod
    def load_reference(self, model: str) -> Any:
        """Load the PyTorch model (and tokenizer) that the export is checked against."""

    @abstractmethod
    def check_parity(self, reference: Any, artifact_dir: Path, atol: float) -> ParityReport:
        """Run the engine on ``artifact_dir`` and PyTorch on the same inputs, and compare."""

    def generation_settings(self, reference: Any) -> dict[str, Any]:
        """Task settings the engine needs besides the graphs (decoding ids for seq2seq)."""
        return {}

    def config_overrides(self, reference: Any) -> dict[str, Any]:
        """Keys written into the artifact's config.json on top of what Optimum saved."""
        return {}

    def save_tokenizer(self, reference: Any, folder: Path) -> None:
        reference.tokenizer.save_pretrained(str(folder))

    def write_task_files(  # noqa: B027 (an optional hook: most tasks write no extra files)
        self, reference: Any, folder: Path
    ) -> None:
        """Write task files the engine reads besides graphs, config and tokenizer (hashed like
        them), e.g. the pooling settings of a sentence-embedding model."""


def load_pretrained(model: str, model_class: str, description: str) -> tuple[Any, Any]:
    """Load ``model`` with ``transformers.<model_class>`` and its fast tokenizer, in eval mode.

    Raises:
        ExportError: the model cannot be loaded as ``description`` (missing folder, unreachable
            hub id, wrong architecture), or it has no fast tokenizer for the engine to use.
    """
    transformers = require("transformers")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        torch_model = getattr(transformers, model_class).from_pretrained(model)
    except (OSError, ValueError) as error:
        raise ExportError(f"Cannot load '{model}' as {description}: {error}") from error
    if not tokenizer.is_fast:
        raise ExportError(
            f"'{model}' has no fast tokenizer (tokenizer.json); the engine needs one."
        )
    return torch_model.eval(), tokenizer


def tokenizer_limit(tokenizer: Any) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < _NO_LIMIT else None


def max_input_length(model: Any, tokenizer: Any, default: int = 512) -> int:
    """The longest input the model accepts: the tokenizer's limit and the position table's.

    RoBERTa-style embeddings start positions after the padding index, so their usable length is
    ``max_position_embeddings - padding_idx - 1`` (514 -> 512 for roberta-base).
    """
    limits = [limit for limit in (tokenizer_limit(tokenizer),) if limit]
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
        padding_idx = getattr(embeddings, "padding_idx", None)
        limits.append(positions - (padding_idx + 1 if padding_idx is not None else 0))
    return min(limits) if limits else default


def torch_no_grad():
    return require("torch").inference_mode()
