"""Tiny seeded single-label classifiers used as cross-encoder rerankers, and their artifacts.

Built locally (no hub): the tiny BERT and RoBERTa classifiers of ``tiny_classifiers`` with one
label, saved as sentence-transformers ``CrossEncoder`` folders (``CrossEncoder.save_pretrained``)
or left plain, then exported with ``--task text-ranking`` (a CrossEncoder folder infers it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny_classifiers import build_test_classifier

from export.exporter import ExportSettings, export_model
from onnx_engine.sample_models import TinyClassifierSpec

# The CrossEncoder's max_length is short, so ordinary pairs are cut longest-first.
CROSS_ENCODER_MAX_LENGTH = 32


@dataclass(frozen=True)
class RerankerSpec:
    """A tiny reranker: its classifier, and how it is saved (``activation`` None: plain)."""

    architecture: str
    seed: int
    cross_encoder: bool = True
    activation: str | None = "sigmoid"  # CrossEncoder's activation_fn: sigmoid or identity


RERANKER_SPECS = {
    "ce-bert": RerankerSpec("bert", seed=11),
    "ce-bert-identity": RerankerSpec("bert", seed=12, activation="identity"),
    "plain-roberta": RerankerSpec("roberta", seed=13, cross_encoder=False, activation=None),
}


@dataclass(frozen=True)
class ExportedReranker:
    key: str
    checkpoint: Path
    artifact: Path


def build_reranker(output: Path, spec: RerankerSpec) -> Path:
    """The seeded one-label classifier of ``spec``, saved as a CrossEncoder folder or plain."""
    classifier = build_test_classifier(
        output / "classifier", TinyClassifierSpec(spec.architecture, num_labels=1, seed=spec.seed)
    )
    if not spec.cross_encoder:
        return classifier
    import torch
    from sentence_transformers import CrossEncoder

    activation = torch.nn.Identity() if spec.activation == "identity" else None
    model = CrossEncoder(str(classifier), device="cpu", max_length=CROSS_ENCODER_MAX_LENGTH,
                         activation_fn=activation)
    model.save_pretrained(str(output / "cross-encoder"))
    return output / "cross-encoder"


def cross_encoder(checkpoint: Path):
    """sentence-transformers' CrossEncoder on a checkpoint, as a user loads it."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(checkpoint), device="cpu")


@pytest.fixture(scope="session")
def reranker_factory(tmp_path_factory):
    """Builds and exports a tiny reranker on first request, then returns the cached one."""
    cache: dict[str, ExportedReranker] = {}

    def get(key: str) -> ExportedReranker:
        if key not in cache:
            root = tmp_path_factory.mktemp(key)
            checkpoint = build_reranker(root, RERANKER_SPECS[key])
            task = None if RERANKER_SPECS[key].cross_encoder else "text-ranking"
            artifact = root / "artifact"
            export_model(ExportSettings(model=str(checkpoint), output=artifact, task=task,
                                        quiet=True))
            cache[key] = ExportedReranker(key, checkpoint, artifact)
        return cache[key]

    return get
