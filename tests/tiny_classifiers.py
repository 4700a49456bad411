"""Tiny seeded BERT and RoBERTa classifiers for the tests (DistilBERT comes from the package).

They share the package's seeding, labels and saving (``onnx_engine.sample_models``); only the
tokenizer and config differ. RoBERTa's byte-level BPE is trained here on a small corpus, so no hub
is needed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import tokenizers
import transformers

from export.check_set import SENTENCES, filler_text
from onnx_engine.sample_models import (
    TinyClassifierSpec,
    build_tiny_classifier,
    classifier_config_fields,
    save_seeded_classifier,
    wordpiece_vocab_file,
)

CONFIG_CLASSES = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig}


def build_test_classifier(output: Path, spec: TinyClassifierSpec) -> Path:
    """A seeded tiny ``*ForSequenceClassification`` of ``spec.architecture``."""
    if spec.architecture == "distilbert":
        return build_tiny_classifier(output, spec)
    tokenizer = fast_tokenizer(spec.architecture)
    config = CONFIG_CLASSES[spec.architecture](
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=514 if spec.architecture == "roberta" else 512,
        type_vocab_size=1 if spec.architecture == "roberta" else 2,
        **classifier_config_fields(spec, len(tokenizer), tokenizer.pad_token_id),
    )
    return save_seeded_classifier(output, config, tokenizer, spec.seed)


def fast_tokenizer(
    architecture: str, last_line: str = "Hello world! Numbers 12345 and symbols #@%&*.",
    vocab_size: int = 600,
) -> transformers.PreTrainedTokenizerFast:
    """The tokenizer of a tiny ``bert`` or ``roberta`` test model: the real bert-base-uncased
    WordPiece vocabulary, or a byte-level BPE trained here on the check set (for offsets on
    non-ASCII text), its corpus ending with ``last_line``."""
    if architecture != "roberta":
        return transformers.BertTokenizerFast(vocab_file=str(wordpiece_vocab_file()))
    trainer = tokenizers.ByteLevelBPETokenizer()
    corpus = [*SENTENCES, filler_text(200), last_line]
    trainer.train_from_iterator(
        corpus * 4,
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    with tempfile.TemporaryDirectory() as scratch:
        trainer.save_model(scratch)
        return transformers.RobertaTokenizerFast(
            vocab_file=str(Path(scratch) / "vocab.json"),
            merges_file=str(Path(scratch) / "merges.txt"),
        )
