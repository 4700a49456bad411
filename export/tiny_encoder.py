"""A tiny seeded plain encoder (``BertModel`` and kin, no head) for feature-extraction tests.

It is the encoder of the tiny classifier of the same spec (``export.tiny_models``), so it shares
that module's configs, seeds and real WordPiece vocabulary; only the head is dropped.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from export.dependencies import require
from export.tiny_models import TinyClassifierSpec, build_tiny_classifier


def build_tiny_encoder(output: Path, spec: TinyClassifierSpec = TinyClassifierSpec("bert")) -> Path:
    """Write a seeded random-weight base model (``AutoModel``) and its tokenizer to ``output``."""
    transformers = require("transformers")
    output = Path(output)
    with tempfile.TemporaryDirectory() as scratch:
        classifier = build_tiny_classifier(Path(scratch) / "classifier", spec)
        encoder = transformers.AutoModel.from_pretrained(str(classifier)).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(classifier))
    output.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return output
