"""Cross-encoder reranking (task text-ranking) against sentence-transformers' CrossEncoder.

Tiny seeded random-weight one-label BERT/RoBERTa classifiers (``tiny_rerankers``): two saved as
CrossEncoder folders (sigmoid, identity activation; max_length 32 so pairs are cut), one plain
classifier folder. ``Reranker.rank``/``predict`` must equal ``CrossEncoder.rank``/``predict``:
same order, scores within 1e-5 (fp32 ONNX Runtime vs PyTorch differ by ~1e-7 here).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny_rerankers
import torch
from tiny_classifiers import build_test_classifier
from tiny_rerankers import CROSS_ENCODER_MAX_LENGTH, cross_encoder

import engine
from engine.errors import InputError
from engine.tasks.reranking import ACTIVATION_KEY, Reranker
from engine.verification.reference_check import check_variant
from export.errors import ExportError
from export.model_source import infer_task
from export.tasks.reranking import RerankingExporter
from export.variants.optimize import OptimizeSettings, optimize_artifact
from onnx_engine.cli import main
from onnx_engine.sample_models import TinyClassifierSpec

reranker_factory = tiny_rerankers.reranker_factory  # the session fixture, shared
ATOL = 1e-5
QUERY = "How do I bake bread at home?"
DOCUMENTS = [
    "Knead the dough until smooth and let it rise for an hour.",
    "The striker scored twice in the second half.",
    "",
    "Café naïve résumé: 東京タワーは高い。 🚀",
    "bread " * 60,  # over max_length with the query: cut longest-first
    "Preheat the oven and bake the loaf for forty minutes.",
]
KEYS = ("ce-bert", "ce-bert-identity", "plain-roberta")


@pytest.fixture(scope="module", params=KEYS)
def pair(request, reranker_factory):
    """(engine Reranker, CrossEncoder) on the same tiny checkpoint."""
    exported = reranker_factory(request.param)
    return engine.load(exported.artifact), cross_encoder(exported.checkpoint)


def _assert_same_ranking(ours, theirs, with_text: bool) -> None:
    assert [entry["corpus_id"] for entry in ours] == [entry["corpus_id"] for entry in theirs]
    np.testing.assert_allclose([entry["score"] for entry in ours],
                               [float(entry["score"]) for entry in theirs], atol=ATOL, rtol=0)
    for entry, expected in zip(ours, theirs):
        assert set(entry) == set(expected) == ({"corpus_id", "score", "text"} if with_text
                                               else {"corpus_id", "score"})
        if with_text:
            assert entry["text"] == expected["text"]


def test_a_cross_encoder_folder_is_inferred_as_text_ranking(reranker_factory):
    assert infer_task(str(reranker_factory("ce-bert").checkpoint)) == "text-ranking"
    assert infer_task(str(reranker_factory("plain-roberta").checkpoint)) == "text-classification"


@pytest.mark.parametrize("key, activation", [
    ("ce-bert", "sigmoid"), ("ce-bert-identity", "none"), ("plain-roberta", "sigmoid"),
])
def test_load_gives_a_reranker_with_the_cross_encoders_activation(reranker_factory, key,
                                                                   activation):
    exported = reranker_factory(key)
    model = engine.load(exported.artifact)
    assert isinstance(model, engine.Reranker) and model.task == "text-ranking"
    # its own surface (rank/predict), not a classifier's pipeline call
    assert not isinstance(model, engine.Classifier) and not callable(model)
    assert model.activation == activation
    config = json.loads((exported.artifact / "config.json").read_text(encoding="utf-8"))
    assert config[ACTIVATION_KEY] == activation
    expected = CROSS_ENCODER_MAX_LENGTH if key.startswith("ce-") else 512
    reference = cross_encoder(exported.checkpoint)
    assert model.tokenizer.max_length == expected == reference.max_seq_length


@pytest.mark.parametrize("top_k", [None, 1, 3, 10])
@pytest.mark.parametrize("return_documents", [False, True])
def test_rank_equals_cross_encoder_rank(pair, top_k, return_documents):
    model, reference = pair
    ours = model.rank(QUERY, DOCUMENTS, top_k=top_k, return_documents=return_documents)
    theirs = reference.rank(QUERY, DOCUMENTS, top_k=top_k, return_documents=return_documents,
                            show_progress_bar=False)
    assert len(ours) == min(top_k or len(DOCUMENTS), len(DOCUMENTS))
    _assert_same_ranking(ours, theirs, return_documents)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_predict_equals_cross_encoder_predict(pair, batch_size):
    model, reference = pair
    pairs = [(QUERY, document) for document in DOCUMENTS] + [["a", "b"], ("bread " * 50, "x" * 9)]
    ours = model.predict(pairs, batch_size=batch_size)
    theirs = reference.predict(pairs, batch_size=batch_size, show_progress_bar=False)
    assert ours.shape == theirs.shape == (len(pairs),) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=0)
    raw = reference.predict(pairs, activation_fn=torch.nn.Identity(), show_progress_bar=False)
    np.testing.assert_allclose(model.predict(pairs, activation="none"), raw, atol=ATOL, rtol=0)
    one = model.predict(["hello", "world"])  # one pair: one score, as CrossEncoder
    assert np.ndim(one) == 0
    assert one == pytest.approx(float(reference.predict(["hello", "world"])), abs=ATOL)


def test_pairs_are_cut_longest_first_at_max_length_as_cross_encoder_tokenizes(pair):
    model, reference = pair
    n = reference.max_seq_length  # each word is one token at least: every pair is over
    pairs = [("bread " * n, "oven " * 5), ("bread " * 3, "oven " * n), ("a " * n, "b " * n)]
    ours = model.tokenizer.encode(pairs)
    theirs = reference.tokenizer([p[0] for p in pairs], [p[1] for p in pairs], padding=True,
                                 truncation="longest_first", max_length=reference.max_seq_length)
    np.testing.assert_array_equal(ours.input_ids, np.array(theirs["input_ids"]))
    assert ours.input_ids.shape[1] == n


@pytest.mark.parametrize("call, message", [
    (lambda m: m.rank(QUERY, []), "documents must be a non-empty list"),
    (lambda m: m.rank(QUERY, "one document"), "documents must be a non-empty list"),
    (lambda m: m.rank(QUERY, ["ok", 3]), "document #1 is int"),
    (lambda m: m.rank("", ["a"]), "query must be a non-empty string"),
    (lambda m: m.rank(None, ["a"]), "query must be a non-empty string"),
    (lambda m: m.rank(QUERY, ["a"], top_k=0), "top_k must be a positive integer"),
    (lambda m: m.rank(QUERY, ["a"], top_k=True), "top_k must be a positive integer"),
    (lambda m: m.rank(QUERY, ["a"], batch_size=0), "batch_size must be a positive integer"),
    (lambda m: m.rank(QUERY, ["a"], activation="softmax"),
     "Unknown activation 'softmax'. Choose one of: sigmoid, none"),
    (lambda m: m.predict([]), "pairs must be a non-empty list"),
    (lambda m: m.predict([("a", "b", "c")]), "pair #0"),
    (lambda m: m.predict([("a", 1)]), "pair #0"),
    (lambda m: m.rank(QUERY, ["\ud800"]), "not valid Unicode"),
])
def test_bad_input_is_refused_with_a_clear_input_error(reranker_factory, call, message):
    model = Reranker.load(reranker_factory("ce-bert").artifact)
    with pytest.raises(InputError, match=message):
        call(model)


def test_export_refuses_a_classifier_with_more_than_one_label(tmp_path):
    checkpoint = build_test_classifier(tmp_path / "two", TinyClassifierSpec("bert", num_labels=2))
    with pytest.raises(ExportError, match="2 labels; a reranker scores with one"):
        RerankingExporter().load_reference(str(checkpoint))


def test_export_records_parity_against_cross_encoder(reranker_factory):
    manifest = json.loads((reranker_factory("ce-bert").artifact / "manifest.json").read_text())
    assert manifest["task"] == "text-ranking" and manifest["parity"]["passed"] is True
    assert manifest["parity"]["atol"] == ATOL
    names = [row["name"] for row in manifest["parity"]["rows"]]
    assert "query[0]" in names and "b1[0]" in names


def test_cli_rerank_prints_the_ranking(reranker_factory, capsys):
    artifact = reranker_factory("ce-bert").artifact
    assert main(["rerank", str(artifact), QUERY, *DOCUMENTS[:3], "--top-k", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = Reranker.load(artifact).rank(QUERY, DOCUMENTS[:3], top_k=2, return_documents=True)
    _assert_same_ranking(printed, expected, with_text=True)
    assert main(["rerank", str(artifact), QUERY, "a", "b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(len(line.split("\t")) == 3 for line in lines)
    assert main(["rerank", str(artifact), QUERY, "a", "--top-k", "0"]) == 2
    assert "error: --top-k must be a positive integer" in capsys.readouterr().err


def test_variants_are_gated_on_scores_and_rank_order(reranker_factory, copy_artifact):
    artifact = copy_artifact(reranker_factory("ce-bert").artifact)
    manifest = optimize_artifact(OptimizeSettings(artifact, variants=("fused", "int8"),
                                                  timing_runs=1, quiet=True))
    fused, int8 = manifest.variants["fused"], manifest.variants["int8"]
    assert fused.passed, fused.reason
    assert fused.figures.max_abs_diff <= 1e-4 and fused.figures.agreement == 1.0
    assert fused.figures.retrieval_agreement == 1.0
    assert int8.figures.retrieval_agreement is not None and int8.figures.inputs == 12  # queries
    assert int8.passed == (int8.figures.max_prob_diff <= 0.03
                           and int8.figures.clearest_flip_gap <= 0.06), int8.reason
    loaded = engine.load(artifact, variant="fused")
    assert isinstance(loaded, Reranker) and loaded.variant == "fused"
    # torch-free: the stored references judge the variant as optimize did against PyTorch
    verdict = check_variant(Reranker, loaded.artifact, fused)
    assert verdict.passed and verdict.figures.max_abs_diff <= 1e-4


def test_bench_runs_engine_ort_raw_and_cross_encoder(reranker_factory, tmp_path):
    out = tmp_path / "bench.json"
    status = main([
        "bench", str(reranker_factory("ce-bert").artifact), "--batch", "2", "--seq", "8",
        "--contenders", "engine,ort-raw,sentence-transformers", "--warmup", "1", "--rounds", "2",
        "--min-rounds", "1", "--cold-runs", "0", "--no-floor", "--no-progress",
        "--json", str(out),
    ])
    assert status == 0
    model = json.loads(out.read_text())["models"][0]
    assert model["task"] == "text-ranking"
    rows = {row["contender"]: row for row in model["rows"]}
    assert set(rows) == {"engine", "ort-raw", "sentence-transformers"}, model["notes"]
    assert rows["sentence-transformers"]["speedup_vs_pipeline"] == pytest.approx(1.0)
    (agreement,) = model["agreement"]
    assert agreement["reference"] == "pytorch fp32" and agreement["agreement"] == 1.0
