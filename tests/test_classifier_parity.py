"""The engine's classifier output against PyTorch and transformers.pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_same_results, hf_pipeline, torch_logits

import engine
from engine import Classifier
from export.check_set import SENTENCES, check_texts

ATOL_LOGITS = 1e-4  # the export gate; fp32 graphs measure ~1e-6 here
ATOL_SCORES = 1e-5  # what the pipeline contract promises
PIPELINE_TEXTS = ["", "a", *SENTENCES]  # the pipeline itself does not truncate by default


def test_logits_match_pytorch_batch_one_and_padded(any_classifier):
    classifier = Classifier.load(any_classifier.artifact)
    texts = check_texts(classifier.tokenizer.max_length)
    padded = classifier.logits(texts, batch_size=len(texts))
    reference = torch_logits(any_classifier.checkpoint, texts)
    np.testing.assert_allclose(padded, reference, atol=ATOL_LOGITS, rtol=0)
    assert (padded.argmax(-1) == reference.argmax(-1)).all()
    for index, text in enumerate(texts):
        single = classifier.logits(text)
        np.testing.assert_allclose(single[0], reference[index], atol=ATOL_LOGITS, rtol=0)


@pytest.mark.parametrize(
    "texts, kwargs",
    [
        (PIPELINE_TEXTS[2], {}),
        (PIPELINE_TEXTS, {}),
        (PIPELINE_TEXTS[3], {"top_k": 1}),
        (PIPELINE_TEXTS, {"top_k": 1}),
        (PIPELINE_TEXTS[2], {"top_k": None}),
        (PIPELINE_TEXTS, {"top_k": None}),
        (PIPELINE_TEXTS, {"top_k": 2}),
    ],
    ids=["str", "list", "str-top1", "list-top1", "str-all", "list-all", "list-top2"],
)
def test_call_returns_what_the_pipeline_returns(any_classifier, texts, kwargs):
    ours = Classifier.load(any_classifier.artifact)(texts, **kwargs)
    theirs = hf_pipeline(any_classifier.checkpoint)(texts, **kwargs)
    assert_same_results(ours, theirs, atol=ATOL_SCORES)


def test_function_to_apply_override_matches_pipeline(distilbert):
    ours = Classifier.load(distilbert.artifact)(list(SENTENCES), function_to_apply="sigmoid")
    theirs = hf_pipeline(distilbert.checkpoint)(list(SENTENCES), function_to_apply="sigmoid")
    assert_same_results(ours, theirs, atol=ATOL_SCORES)


def test_predict_proba_is_a_distribution_in_input_order(distilbert):
    classifier = Classifier.load(distilbert.artifact)
    texts = check_texts(64)
    probabilities = classifier.predict_proba(texts)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    one_by_one = np.concatenate([classifier.predict_proba(text) for text in texts])
    np.testing.assert_allclose(probabilities, one_by_one, atol=1e-6)


def test_small_batches_equal_one_batch(distilbert):
    classifier = Classifier.load(distilbert.artifact)
    texts = check_texts(128) * 3
    np.testing.assert_allclose(
        classifier.logits(texts, batch_size=2), classifier.logits(texts, batch_size=64), atol=1e-5
    )


def test_overlong_text_is_truncated_like_autotokenizer(distilbert):
    classifier = Classifier.load(distilbert.artifact)
    long_text = "good " * 2000
    reference = torch_logits(distilbert.checkpoint, [long_text])  # truncation=True, 512
    np.testing.assert_allclose(classifier.logits(long_text), reference, atol=ATOL_LOGITS)


def test_engine_load_picks_the_classifier_from_the_manifest(distilbert):
    loaded = engine.load(distilbert.artifact)
    assert isinstance(loaded, Classifier)
    assert loaded.labels == ["NEGATIVE", "POSITIVE"]


def test_artifact_is_self_describing(any_classifier):
    folder = any_classifier.artifact
    manifest = json.loads((folder / "manifest.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    graph = manifest["graphs"]["model"]
    logits = next(output for output in graph["outputs"] if output["name"] == "logits")
    assert logits["dtype"] == "float32"
    assert isinstance(logits["shape"][0], str)  # dynamic batch axis
    assert logits["shape"][1] == len(config["id2label"])
    input_ids = next(item for item in graph["inputs"] if item["name"] == "input_ids")
    assert all(isinstance(dim, str) for dim in input_ids["shape"])  # dynamic batch and sequence
    assert manifest["task"] == "text-classification"
    assert manifest["max_length"] == 512
    assert manifest["parity"]["passed"] and manifest["parity"]["max_abs_diff"] <= ATOL_LOGITS
    assert len(manifest["parity"]["rows"]) >= 2 * 8
    assert {"model.onnx", "tokenizer.json", "config.json"} <= set(manifest["files"])
    assert all(len(record["sha256"]) == 64 for record in manifest["files"].values())


PAIRS = [
    {"text": "A man is playing a guitar.", "text_pair": "Someone makes music."},
    {"text": "The cat sleeps.", "text_pair": "word " * 600},  # longest-first truncation
    {"text": "Only a text, no pair."},
]


@pytest.mark.parametrize(
    "texts, kwargs",
    [(PAIRS[0], {}), (PAIRS, {}), (PAIRS[2], {}), (PAIRS[0], {"top_k": None}),
     (PAIRS, {"top_k": 2})],
    ids=["pair", "pairs", "text-only-dict", "pair-all", "pairs-top2"],
)
def test_sentence_pairs_match_the_pipeline(classifier_factory, texts, kwargs):
    model = classifier_factory("bert-3")  # BERT: pairs also differ in token_type_ids
    ours = Classifier.load(model.artifact)(texts, **kwargs)
    theirs = hf_pipeline(model.checkpoint)(texts, truncation=True, **kwargs)
    assert_same_results(ours, theirs, atol=ATOL_SCORES)
