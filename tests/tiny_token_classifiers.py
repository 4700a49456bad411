"""Tiny seeded ``*ForTokenClassification`` models for the token-classification tests.

A BERT with the real bert-base-uncased WordPiece vocabulary (``##`` subwords: the pipeline's
word-aware path) and a RoBERTa with a byte-level BPE trained here on a small corpus (no subword
prefix: the pipeline's fallback heuristic, and byte-level offsets on non-ASCII text). Labels are
IOB2 person/location tags. Random weights alone would label nearly every token alike; the
classifier head's weights are drawn wide so that labels change from token to token and entities
of several tokens appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from tiny_classifiers import CONFIG_CLASSES, fast_tokenizer

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
# Names with accents and a macron, split into several subwords by both tokenizers.
NER_TEXTS = (
    "Zoë Saldaña visited Åre in Tōhoku with Jean-Luc Picard.",
    "My name is Wolfgang and I live in Berlin",
    "Sarah Jessica Parker met Björn Ulvaeus in Malmö 🚀 yesterday",
)


@dataclass(frozen=True)
class TinyTokenClassifierSpec:
    architecture: str = "bert"
    seed: int = 0
    hidden_size: int = 32
    layers: int = 2
    heads: int = 2
    intermediate_size: int = 64
    head_scale: float = 3.0  # std of the head's weights, in units of hidden activations


def build_token_classifier(output: Path, spec: TinyTokenClassifierSpec) -> Path:
    """Write a seeded ``*ForTokenClassification`` checkpoint and its fast tokenizer."""
    output = Path(output)
    # The names of NER_TEXTS are left out of the BPE corpus, so they split into several pieces.
    tokenizer = fast_tokenizer(spec.architecture, "Hello world! Numbers 12345 and #@%&*.", 700)
    config = CONFIG_CLASSES[spec.architecture](
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=514 if spec.architecture == "roberta" else 512,
        type_vocab_size=1 if spec.architecture == "roberta" else 2,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(LABELS),
        id2label=LABELS,
        label2id={label: index for index, label in LABELS.items()},
        initializer_range=0.2,
    )
    torch.manual_seed(spec.seed)
    model = transformers.AutoModelForTokenClassification.from_config(config).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, spec.head_scale / spec.hidden_size ** 0.5)
        model.classifier.bias.zero_()
    output.mkdir(parents=True, exist_ok=True)
    tokenizer.model_max_length = 512
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return output
