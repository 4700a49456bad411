"""Variants of embedding models: the cosine and retrieval gates, and `optimize` end to end."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from helpers import corrupting_recipe, timed_elsewhere

from engine.errors import ArtifactError
from engine.tasks.feature_extraction import Embedder
from engine.variants.choice import variant_records
from engine.variants.records import AUTO, FP32, FUSED, INT8
from export.retrieval_set import DOCUMENTS, QUERIES
from export.tasks.feature_extraction.variants import (
    EMBEDDING_GATES,
    compare_embeddings,
    gate_texts,
)
from export.variants.calibration import DEFAULT_SENTENCES
from export.variants.gates import gate_verdict, gates_with_overrides
from export.variants.optimize import OptimizeSettings, default_recipes, optimize_artifact

TEXTS = gate_texts(64)


def _reference(seed: int = 0) -> np.ndarray:
    """Unit vectors with a topic structure: each query sits near its three documents."""
    generator = np.random.default_rng(seed)
    topics = generator.normal(size=(len(QUERIES), 32))
    vectors = generator.normal(size=(len(TEXTS), 32))
    first_document = len(TEXTS) - len(QUERIES) - len(DOCUMENTS)
    for index in range(len(DOCUMENTS)):
        vectors[first_document + index] += 3 * topics[index // 3]
    for index in range(len(QUERIES)):
        vectors[len(TEXTS) - len(QUERIES) + index] += 3 * topics[index]
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _verdict(variant: str, candidate: np.ndarray, reference: np.ndarray) -> tuple[bool, str]:
    figures = compare_embeddings(candidate, reference, TEXTS, "cosine")
    return gate_verdict(EMBEDDING_GATES[variant], figures)


def test_identical_embeddings_pass_every_gate():
    reference = _reference()
    figures = compare_embeddings(reference, reference, TEXTS, "cosine")
    assert figures.min_cosine == pytest.approx(1.0) and figures.retrieval_agreement == 1.0
    assert figures.agreement == 1.0 and figures.max_abs_diff == 0.0
    for gate in EMBEDDING_GATES.values():
        assert gate_verdict(gate, figures) == (True, "")


def test_small_noise_passes_int8_but_not_fused():
    reference = _reference()
    noisy = reference + np.random.default_rng(1).normal(scale=0.005, size=reference.shape)
    assert _verdict(INT8, noisy.astype(np.float32), reference)[0]
    passed, reason = _verdict(FUSED, noisy.astype(np.float32), reference)
    assert not passed and "max |Δlogits|" in reason


def test_a_vector_turned_away_fails_the_cosine_gate_and_names_the_text():
    reference = _reference()
    damaged = reference.copy()
    damaged[3] = -damaged[3]  # one check-set text (a sentence) points the other way
    passed, reason = _verdict(INT8, damaged, reference)
    assert not passed and "min cosine" in reason and TEXTS[3][:20] in reason


def test_changed_rankings_fail_the_retrieval_gate_with_cosines_intact():
    reference = _reference()
    swapped = reference.copy()
    first_document = len(TEXTS) - len(QUERIES) - len(DOCUMENTS)
    # Rotate the documents between topics: each vector is intact, each ranking is wrong.
    documents = slice(first_document, first_document + len(DOCUMENTS))
    swapped[documents] = np.roll(reference[documents], 3, axis=0)
    figures = compare_embeddings(swapped, reference, TEXTS, "cosine")
    passed, reason = gate_verdict(EMBEDDING_GATES[INT8], figures)
    assert not passed and "top-10 retrieval agreement" in reason and "top-1 agreement" in reason


def test_non_finite_embeddings_fail():
    reference = _reference()
    broken = reference.copy()
    broken[0, 0] = np.nan
    passed, reason = _verdict(INT8, broken, reference)
    assert not passed and "NaN" in reason


def test_gate_overrides_reach_the_embedding_limits():
    gates = gates_with_overrides("feature-extraction", (INT8,), ("int8.min_cosine=0.95",))
    assert gates[INT8].min_cosine == 0.95
    assert gates[INT8].min_retrieval_agreement == EMBEDDING_GATES[INT8].min_retrieval_agreement


def test_optimize_gates_a_damaged_variant_out_and_auto_avoids_it(tiny_embedder_factory, tmp_path,
                                                                 caplog):
    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_embedder_factory("mean").artifact, artifact)
    recipes = default_recipes()
    recipes[INT8] = corrupting_recipe(recipes[INT8], tmp_path)  # last projection negated
    manifest = optimize_artifact(
        OptimizeSettings(artifact=artifact, variants=(FUSED, INT8), timing_runs=1, quiet=True),
        recipes=recipes,
    )
    records = variant_records(manifest)
    assert records[FUSED].passed, records[FUSED].reason
    assert records[FUSED].figures.min_cosine >= 0.9999
    assert not records[INT8].passed and "min cosine" in records[INT8].reason
    assert records[INT8].gate == EMBEDDING_GATES[INT8]
    fp32 = Embedder.load(artifact, variant=FP32)
    fused = Embedder.load(artifact, variant=FUSED)
    texts = list(QUERIES)
    np.testing.assert_allclose(fused.embed(texts), fp32.embed(texts), atol=1e-4)
    assert Embedder.load(artifact, variant=AUTO).variant in (FP32, FUSED)
    with pytest.raises(ArtifactError, match="failed its accuracy gate"):
        Embedder.load(artifact, variant=INT8)
    # Timings from another CPU: auto times the passing variants here and keeps the faster.
    timed_elsewhere(artifact)
    with caplog.at_level(logging.WARNING):
        retimed = Embedder.load(artifact, variant=AUTO)
    assert f"picked '{retimed.variant}'" in caplog.text and retimed.variant in (FP32, FUSED)
    np.testing.assert_allclose(retimed.embed(texts), fp32.embed(texts), atol=1e-4)


def test_int8_search_keeps_the_most_sensitive_matmuls_for_a_tight_cosine_bound(
    tiny_embedder_factory, tmp_path
):
    """The accuracy-aware int8 search runs for embedding models: under a cosine bound tighter
    than fully quantized int8 measures, it keeps matmuls in fp32, most sensitive first (ranked
    on padded batches of varying length), and the result holds the bound or is refused."""
    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_embedder_factory("mean").artifact, artifact)
    calibration = tmp_path / "texts.txt"
    calibration.write_text("\n".join(DEFAULT_SENTENCES.read_text().splitlines()[:40]))
    quick = {"artifact": artifact, "variants": (INT8,), "timing_runs": 1, "quiet": True,
             "calibration": calibration}
    full = optimize_artifact(OptimizeSettings(**quick)).variants[INT8]
    assert full.passed and not full.made_with["model"]["accuracy_aware"]["kept_fp32_nodes"]
    trials = full.made_with["model"]["accuracy_aware"]["trials"]
    fully_quantized = [trial["min_cosine"] for trial in trials if trial.get("kept") == 0]
    bound = 1 - (1 - max(fully_quantized)) / 4  # no way passes fully quantized
    record = optimize_artifact(OptimizeSettings(
        **quick, gate_overrides=(f"int8.min_cosine={bound}",)
    )).variants[INT8]
    search = record.made_with["model"]["accuracy_aware"]
    ranked = next(trial["sensitivity"] for trial in search["trials"]
                  if trial.get("method") == search["method"] and "sensitivity" in trial)
    assert all(error >= 0 for _, error in ranked) and ranked[0][1] > 0
    kept = search["kept_fp32_nodes"]
    tried = {trial["kept"]: trial for trial in search["trials"]
             if trial.get("method") == search["method"] and "kept" in trial}
    assert tried[0]["min_cosine"] < bound
    assert kept == [name for name, _ in ranked[: len(kept)]]
    if record.passed:
        assert kept and record.figures.min_cosine >= bound
        assert tried[len(kept) - 1]["passed"] is False  # one fewer did not pass: the fewest
        texts = list(QUERIES)
        np.testing.assert_allclose(Embedder.load(artifact, variant=INT8).embed(texts),
                                   Embedder.load(artifact, variant=FP32).embed(texts), atol=0.05)
    else:
        assert "min cosine" in record.reason


def test_the_gate_embeds_the_stored_texts_as_verify_does(tiny_embedder_factory):
    """Dynamic int8 scales an activation by its whole padded batch, so which texts share a
    call changes the outputs: the texts ``references.npz`` stores are embedded in one call of
    their own, as torch-free ``verify`` embeds them, and the calibration texts apart."""
    from engine.verification.references import REFERENCES_NAME, read_references
    from export.tasks.feature_extraction.variants import embedding_figures

    artifact = tiny_embedder_factory("mean").artifact
    embedder = Embedder.load(artifact, provider="cpu", variant=FP32)
    calls: list[list[str]] = []
    plain = embedder.embed

    def recorded(texts, **kwargs):
        calls.append(list(texts))
        return plain(texts, **kwargs)

    class OwnOutputs:  # the reference: the fp32 engine itself
        def encode(self, texts, pooling):
            return plain(list(texts))

    embedder.embed = recorded
    extra = ["A calibration text.", "Another one, a little longer than the first."]
    figures = embedding_figures(embedder, OwnOutputs(), extra)
    stored = [str(text) for text in
              read_references(artifact / REFERENCES_NAME, "feature-extraction")["texts"]]
    assert calls == [extra, stored]
    assert figures.min_cosine == pytest.approx(1.0, abs=1e-6)
