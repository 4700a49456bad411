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


def build_test_classifier(output: Path, spec: TinyClassifierSpec) -> Path:
    """A seeded tiny ``*ForSequenceClassification`` of ``spec.architecture``."""
    if spec.architecture == "distilbert":
        return build_tiny_classifier(output, spec)
    with tempfile.TemporaryDirectory() as scratch:
        if spec.architecture == "roberta":
            tokenizer = _roberta_tokenizer(Path(scratch))
        else:
            tokenizer = transformers.BertTokenizerFast(vocab_file=str(wordpiece_vocab_file()))
    config_class = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig}
    config = config_class[spec.architecture](
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=514 if spec.architecture == "roberta" else 512,
        type_vocab_size=1 if spec.architecture == "roberta" else 2,
        **classifier_config_fields(spec, len(tokenizer), tokenizer.pad_token_id),
    )
    return save_seeded_classifier(output, config, tokenizer, spec.seed)


def _roberta_tokenizer(folder: Path) -> transformers.RobertaTokenizerFast:
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
