"""A tiny seeded plain encoder (``BertModel``, no head) for the feature-extraction tests.

It is the encoder of the tiny BERT classifier of the same spec (``tiny_classifiers``), so it
shares that builder's config, seed and real WordPiece vocabulary; only the head is dropped.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import transformers
from tiny_classifiers import build_test_classifier

from onnx_engine.sample_models import TinyClassifierSpec


def build_tiny_encoder(output: Path, spec: TinyClassifierSpec = TinyClassifierSpec("bert")) -> Path:
    """Write a seeded random-weight base model (``AutoModel``) and its tokenizer to ``output``."""
    output = Path(output)
    with tempfile.TemporaryDirectory() as scratch:
        classifier = build_test_classifier(Path(scratch) / "classifier", spec)
        encoder = transformers.AutoModel.from_pretrained(str(classifier)).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(classifier))
    output.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return output
