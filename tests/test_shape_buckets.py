"""OpenVINO shape buckets (``openvino_shape_buckets``): one-row calls padded to a static
power-of-two length give the dynamic run's outputs for the real tokens (f32, within 1e-5)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from engine import Classifier, Embedder, TokenClassifier
from engine.errors import InputError
from engine.options import RuntimeOptions
from engine.shape_buckets import bucket_length
from onnx_engine.commands.runtime_args import add_runtime_arguments, runtime_options

TEXTS = ["ok", "I love it, and I would buy it again.", "word " * 20, "Paris is in France"]
BUCKETS = RuntimeOptions(openvino_shape_buckets=2)


def same_up_to_scores(got: list[dict], expected: list[dict]) -> bool:
    """Equal labels, words and offsets; scores within 1e-5."""
    def fields(items: list[dict]) -> list[dict]:
        return [{key: value for key, value in item.items() if key != "score"} for item in items]

    scores = [item["score"] for item in got], [item["score"] for item in expected]
    return fields(got) == fields(expected) and np.allclose(*scores, atol=1e-5)


def test_bucket_lengths_are_powers_of_two_from_eight():
    assert [bucket_length(n) for n in (1, 8, 9, 40, 64, 65, 300)] == [8, 8, 16, 64, 64, 128, 512]


def test_a_negative_bucket_count_is_refused():
    with pytest.raises(InputError, match="openvino_shape_buckets"):
        RuntimeOptions(openvino_shape_buckets=-1)


def test_classifier_logits_equal_unpadded_and_batches_stay_dynamic(distilbert):
    plain = Classifier.load(distilbert.artifact, provider="openvino")
    bucketed = Classifier.load(distilbert.artifact, provider="openvino", options=BUCKETS)
    for text in TEXTS:
        np.testing.assert_allclose(bucketed.logits(text), plain.logits(text), atol=1e-5)
    assert len(bucketed.session.buckets) == 2  # the bound: least recently used dropped
    np.testing.assert_allclose(bucketed.logits(TEXTS), plain.logits(TEXTS), atol=1e-5)
    assert same_up_to_scores(bucketed(TEXTS[1]), plain(TEXTS[1]))


def test_token_labels_are_cut_back_to_the_real_tokens(token_classifier_factory):
    artifact = token_classifier_factory("bert-ner").artifact
    plain = TokenClassifier.load(artifact, provider="openvino")
    bucketed = TokenClassifier.load(artifact, provider="openvino", options=BUCKETS)
    for text in TEXTS:
        assert same_up_to_scores(bucketed(text), plain(text))
    assert bucketed.session.buckets


def test_mean_pooled_embeddings_ignore_the_padding(tiny_embedder_factory):
    artifact = tiny_embedder_factory("mean").artifact
    plain = Embedder.load(artifact, provider="openvino")
    bucketed = Embedder.load(artifact, provider="openvino", options=BUCKETS)
    for text in TEXTS:
        np.testing.assert_allclose(bucketed.embed([text]), plain.embed([text]), atol=1e-5)
    assert bucketed.session.buckets


def test_the_cli_flag_reaches_the_options():
    parser = argparse.ArgumentParser()
    add_runtime_arguments(parser)
    args = parser.parse_args(["--provider", "openvino", "--openvino-shape-buckets", "4"])
    assert runtime_options(args).openvino_shape_buckets == 4
