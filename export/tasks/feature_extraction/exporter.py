"""Export-time steps for sentence-embedding models (task ``feature-extraction``).

The graph is the bare encoder (token embeddings out); the pooling it is used with comes from the
sentence-transformers folder (``export.sentence_config``) or, for a plain encoder, from the
``pooling``/``normalize`` options, and is written to the artifact's ``embedding.json``. Parity is
checked against ``SentenceTransformer.encode`` itself, so the artifact is held to what users of
sentence-transformers get, pooling and normalization included.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engine.manifest import TASK_FEATURE_EXTRACTION
from engine.pooling import EMBEDDING_CONFIG_NAME, POOLING_MODES, PoolingConfig
from engine.tasks.feature_extraction import Embedder
from engine.verification.references import write_references
from export.check_set import check_texts
from export.dependencies import require
from export.errors import ExportError
from export.parity import OutputPair, ParityReport
from export.retrieval_set import DOCUMENTS, QUERIES
from export.sentence_config import is_sentence_transformers_folder, read_sentence_config
from export.tasks.base import TaskExporter, exported_fp32, max_input_length, torch_no_grad

# The bar: embeddings within 1e-5 of sentence-transformers, cosine >= 0.99999 per input.
# fp32 ONNX Runtime vs PyTorch differ by ~1e-7 on normalized MiniLM vectors.
EMBEDDING_ATOL = 1e-5
PARITY_MIN_COSINE = 0.99999


def sentence_transformers_modules() -> tuple[Any, Any, Any, Any]:
    """``SentenceTransformer`` and its ``Transformer``, ``Pooling`` and ``Normalize`` modules.

    Raises:
        MissingDependencyError: sentence-transformers is not installed.
    """
    package = require("sentence_transformers")
    modules = require("sentence_transformers.sentence_transformer.modules")
    return package.SentenceTransformer, modules.Transformer, modules.Pooling, modules.Normalize


def reference_texts(max_length: int) -> tuple[str, ...]:
    """The texts ``references.npz`` stores and torch-free ``verify`` embeds in one call: the
    export's check set, the retrieval documents, then the queries (the variant gate judges
    them the same way, besides its calibration texts)."""
    return (*check_texts(max_length), *DOCUMENTS, *QUERIES)


@dataclass(frozen=True)
class EmbeddingReference:
    """The PyTorch side: the sentence-transformers pipeline the artifact must reproduce.

    ``pooling`` is what the model folder or the export options say; ``None`` for a plain encoder
    checked without options (``verify``), which then uses the artifact's own pooling settings.
    """

    model: str
    transformer: Any  # sentence-transformers' Transformer module: the encoder and its tokenizer
    max_length: int
    pooling: PoolingConfig | None
    pipeline: Any | None  # the folder's own SentenceTransformer, for sentence-transformers folders

    @property
    def tokenizer(self) -> Any:
        return self.transformer.tokenizer

    def sentence_transformer(self, pooling: PoolingConfig) -> Any:
        """The ``SentenceTransformer`` to compare with: the folder's own pipeline, or the encoder
        followed by ``pooling`` (and ``Normalize``) for a plain encoder."""
        if self.pipeline is not None:
            return self.pipeline
        sentence_transformer, _, pooling_module, normalize_module = sentence_transformers_modules()
        modes = pooling.modes[0] if len(pooling.modes) == 1 else pooling.modes
        modules = [self.transformer, pooling_module(pooling.token_dimension, pooling_mode=modes)]
        if pooling.normalize:
            modules.append(normalize_module())
        return sentence_transformer(modules=modules, device="cpu")

    def encode(
        self, texts: Sequence[str], pooling: PoolingConfig, batch_size: int = 32
    ) -> np.ndarray:
        """``SentenceTransformer.encode`` as float32 ``[len(texts), dimension]``."""
        with torch_no_grad():
            vectors = self.sentence_transformer(pooling).encode(
                list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)


class FeatureExtractionExporter(TaskExporter):
    """Sentence-transformers folders, or plain encoders with ``pooling`` (and ``normalize``)."""

    task = TASK_FEATURE_EXTRACTION
    optimum_task = "feature-extraction"
    graph_files: ClassVar[dict[str, str]] = {"model": "model.onnx"}
    default_atol = EMBEDDING_ATOL

    @classmethod
    def infers(cls, architecture: str, config: Mapping[str, Any]) -> bool:
        """A bare encoder (``BertModel``); a sentence-transformers folder is told by its files."""
        return architecture.endswith("Model") and not architecture.endswith("PreTrainedModel")

    def __init__(self, pooling: str | None = None, normalize: bool | None = None) -> None:
        if pooling is not None and pooling not in POOLING_MODES:
            raise ExportError(
                f"Unknown pooling {pooling!r}. Choose one of: {', '.join(POOLING_MODES)}."
            )
        self.pooling = pooling
        self.normalize = normalize

    def load_reference(self, model: str) -> EmbeddingReference:
        """Load the model with sentence-transformers, as its users do.

        Raises:
            ExportError: the model cannot be loaded, or pooling options were given for a
                sentence-transformers folder (its own files decide them).
        """
        sentence_transformer, transformer_module, _, _ = sentence_transformers_modules()
        model = local_model_folder(model)
        folder = is_sentence_transformers_folder(model)
        if folder and (self.pooling is not None or self.normalize is not None):
            raise ExportError(
                f"'{model}' is a sentence-transformers folder: its modules.json and "
                "1_Pooling/config.json decide pooling and normalization. "
                "Drop --pooling/--normalize."
            )
        configured_length = None
        try:
            if folder:
                config = read_sentence_config(Path(model))
                pooling, configured_length = config.pooling, config.max_seq_length
                pipeline = sentence_transformer(model, device="cpu")
                transformer = pipeline[0]
            else:
                pipeline = None
                transformer = transformer_module(model)
                pooling = self._pooling_from_options(transformer)
        except (OSError, ValueError) as error:
            raise ExportError(f"Cannot load '{model}' as a sentence encoder: {error}") from error
        if not transformer.tokenizer.is_fast:
            raise ExportError(
                f"'{model}' has no fast tokenizer (tokenizer.json); the engine needs one."
            )
        transformer.auto_model.eval()
        # sentence_bert_config.json's max_seq_length (else the tokenizer's limit) where it is
        # below what the position table allows; the reference is set to cut at the same length.
        wanted = configured_length or transformer.max_seq_length or 10**9
        length = min(wanted, max_input_length(transformer.auto_model, transformer.tokenizer))
        transformer.max_seq_length = length
        return EmbeddingReference(model, transformer, length, pooling, pipeline)

    def _pooling_from_options(self, transformer: Any) -> PoolingConfig | None:
        if self.pooling is None:
            return None
        return PoolingConfig(
            modes=(self.pooling,),
            normalize=bool(self.normalize),
            token_dimension=int(transformer.auto_model.config.hidden_size),
            source="flags",
        )

    def save_tokenizer(self, reference: EmbeddingReference, folder: Path) -> None:
        """sentence-transformers' tokenizer (with ``do_lower_case`` it carries an added Lowercase
        step), its files stating the limit the model really uses.

        A saved ``tokenizer.json`` keeps whatever truncation and padding it was last used with
        (all-MiniLM-L6-v2's: cut and pad to 128) and ``tokenizer_config.json`` may carry a
        stale ``max_length``; other tools reading the artifact (fastembed takes the smaller of
        ``model_max_length`` and ``max_length``) would then cut at 128 where
        sentence-transformers cuts at 256. Both files are rewritten to ``max_seq_length``.
        """
        reference.tokenizer.save_pretrained(str(folder))
        tokenizer_file = folder / "tokenizer.json"
        data = json.loads(tokenizer_file.read_text(encoding="utf-8"))
        data["truncation"] = {"direction": "Right", "max_length": reference.max_length,
                              "strategy": "LongestFirst", "stride": 0}
        data["padding"] = None
        tokenizer_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        config_file = folder / "tokenizer_config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
            config["model_max_length"] = reference.max_length
            if "max_length" in config:
                config["max_length"] = reference.max_length
            config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")

    def write_task_files(self, reference: EmbeddingReference, folder: Path) -> None:
        """Write ``embedding.json``, the pooling the engine applies.

        Raises:
            ExportError: a plain encoder was exported without a pooling option.
        """
        if reference.pooling is None:
            raise ExportError(
                f"'{reference.model}' is a plain encoder (no sentence-transformers modules.json): "
                f"choose its pooling with --pooling {{{','.join(POOLING_MODES[:3])}}} (and "
                "--normalize if its embeddings are compared by cosine after normalizing)."
            )
        text = json.dumps(reference.pooling.to_dict(), indent=2, sort_keys=True) + "\n"
        (folder / EMBEDDING_CONFIG_NAME).write_text(text, encoding="utf-8")
        self.write_references(reference, folder)

    def write_references(self, reference: EmbeddingReference, folder: Path) -> None:
        """Write ``references.npz``: sentence-transformers' embeddings of
        :func:`reference_texts` (``engine.verification.references``)."""
        texts = list(reference_texts(reference.max_length))
        arrays = {
            "texts": np.array(texts),
            "embeddings": reference.encode(texts, reference.pooling).astype(np.float32),
            "documents": np.array(len(DOCUMENTS)),
            "queries": np.array(len(QUERIES)),
        }
        write_references(folder, self.task, arrays)

    def check_parity(
        self, reference: EmbeddingReference, artifact_dir: Path, atol: float
    ) -> ParityReport:
        """Embeddings of the engine (fp32 graph) vs ``SentenceTransformer.encode``."""
        return compare_embedder(exported_fp32(Embedder, artifact_dir), reference, atol)


def local_model_folder(model: str) -> str:
    """``model`` itself when it is a local folder; for a hub id, its downloaded snapshot, so a
    sentence-transformers model on the hub is read from its own files like a local one.

    Raises:
        ExportError: the hub id cannot be downloaded (no network, unknown id).
    """
    if Path(model).exists():
        return model
    hub = require("huggingface_hub")
    try:
        return hub.snapshot_download(model)
    except Exception as error:  # network, authentication and unknown-id errors alike
        raise ExportError(
            f"'{model}' is not a local folder and cannot be downloaded: {error}"
        ) from error


def compare_embedder(
    embedder: Embedder, reference: EmbeddingReference, atol: float
) -> ParityReport:
    """Parity report of a loaded engine embedder (any variant) against sentence-transformers."""
    report = ParityReport(atol=atol, min_cosine=PARITY_MIN_COSINE)
    for pair in check_set_embeddings(embedder, reference):
        report.add(pair.name, pair.text, pair.reference, pair.candidate)
    return report


def check_set_embeddings(embedder: Embedder, reference: EmbeddingReference) -> list[OutputPair]:
    """Engine and sentence-transformers embeddings of each check-set text, one by one and as
    one padded batch (each side batching its own way)."""
    texts = check_texts(reference.max_length)
    pooling = embedder.pooling
    pairs = [
        OutputPair(f"b1[{index}]", text, reference.encode([text], pooling)[0],
                   embedder.embed([text])[0])
        for index, text in enumerate(texts)
    ]
    batch_reference = reference.encode(texts, pooling, batch_size=len(texts))
    batch_engine = embedder.embed(texts, batch_size=len(texts))
    for index, text in enumerate(texts):
        name = f"batch{len(texts)}[{index}]"
        pairs.append(OutputPair(name, text, batch_reference[index], batch_engine[index]))
    return pairs
