"""Token classification: the engine's entities equal ``transformers.pipeline`` for every
aggregation strategy, on WordPiece and byte-level BPE tiny models with non-ASCII names."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import transformers
from helpers import assert_same_entities
from tiny_token_classifiers import NER_TEXTS

import engine
from engine import InputError, TokenClassifier
from engine.manifest import ArtifactManifest
from engine.tasks.token_classification import AGGREGATION_STRATEGIES
from export.check_set import filler_text
from onnx_engine.cli import main


@pytest.fixture(scope="module")
def pipelines():
    """One transformers pipeline per checkpoint (its loading costs more than its calls)."""
    cache = {}

    def get(exported):
        if exported.key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[exported.key] = transformers.pipeline(
                    "token-classification", model=str(exported.checkpoint), device="cpu")
        return cache[exported.key]

    return get


def pipeline_answer(pipe, texts, **kwargs):
    with warnings.catch_warnings():  # "Tokenizer does not support real words" (BPE fallback)
        warnings.simplefilter("ignore")
        return pipe(texts, **kwargs)


@pytest.mark.parametrize("strategy", AGGREGATION_STRATEGIES)
def test_entities_equal_the_pipeline_for_each_strategy(any_token_classifier, pipelines, strategy):
    ner = engine.load(any_token_classifier.artifact)
    pipe = pipelines(any_token_classifier)
    texts = list(NER_TEXTS)
    theirs = pipeline_answer(pipe, texts, aggregation_strategy=strategy)
    assert sum(map(len, theirs)) >= 3, "the reference finds too few entities to test anything"
    assert_same_entities(ner(texts, aggregation_strategy=strategy), theirs)
    # One string gives one list of entities, as the pipeline's answer for one string.
    assert_same_entities(ner(texts[0], aggregation_strategy=strategy),
                         pipeline_answer(pipe, texts[0], aggregation_strategy=strategy))


def test_the_reference_output_is_not_trivial(any_token_classifier, pipelines):
    """Several labels, O among them, entities of several tokens, and word aggregation that
    changes the grouping: otherwise the equality above would prove little."""
    pipe = pipelines(any_token_classifier)
    texts = list(NER_TEXTS)
    tokens = pipeline_answer(pipe, texts, ignore_labels=[])
    assert {"O", "B-PER", "B-LOC"} <= {entity["entity"] for row in tokens for entity in row}
    simple = pipeline_answer(pipe, texts, aggregation_strategy="simple")
    first = pipeline_answer(pipe, texts, aggregation_strategy="first")
    assert {entity["entity_group"] for row in simple for entity in row} == {"PER", "LOC"}
    assert any(entity["end"] - entity["start"] > 4 for row in simple + first for entity in row)
    assert simple != first
    non_ascii = [e for e in tokens[0] if not e["word"].isascii() or e["start"] > 20]
    assert non_ascii, "offsets past the accented names are compared too"


def test_every_token_with_no_ignored_labels_and_upper_case_strategy(
    any_token_classifier, pipelines
):
    ner = engine.load(any_token_classifier.artifact)
    pipe = pipelines(any_token_classifier)
    for kwargs in ({"ignore_labels": []}, {"ignore_labels": ["O", "B-LOC"]},
                   {"aggregation_strategy": "SIMPLE", "ignore_labels": ["PER"]}):
        assert_same_entities(ner(list(NER_TEXTS), **kwargs),
                             pipeline_answer(pipe, list(NER_TEXTS), **kwargs))


def test_empty_text_and_over_long_text_are_answered_as_the_pipeline_does(
    any_token_classifier, pipelines
):
    """"" has no tokens to label ([]); a text over 512 tokens is truncated, as the pipeline
    truncates it (its entities past the cut are not found)."""
    ner = engine.load(any_token_classifier.artifact)
    pipe = pipelines(any_token_classifier)
    long = filler_text(700)
    for strategy in ("none", "average"):
        ours = ner(["", long], aggregation_strategy=strategy)
        assert_same_entities(ours, pipeline_answer(pipe, ["", long], aggregation_strategy=strategy))
        assert ours[0] == [] and ours[1] and ours[1][-1]["end"] < len(long)


def test_load_gives_a_token_classifier_and_the_export_recorded_pipeline_parity(
    any_token_classifier
):
    ner = engine.load(any_token_classifier.artifact)
    assert isinstance(ner, TokenClassifier) and ner.variant == "fp32"
    assert ner.labels == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    manifest = ArtifactManifest.read(any_token_classifier.artifact)
    assert manifest.task == "token-classification"  # inferred from *ForTokenClassification
    rows = manifest.parity["rows"]
    assert manifest.parity["passed"] and all(row["passed"] for row in rows)
    assert {row["name"].split("[")[0] for row in rows} >= {
        f"pipeline {strategy}" for strategy in AGGREGATION_STRATEGIES}
    # Batched logits equal the same text alone (padding is cut off per text).
    alone = ner.token_logits([NER_TEXTS[1]])[0].logits
    batched = ner.token_logits(list(NER_TEXTS), batch_size=3)[1].logits
    np.testing.assert_allclose(batched, alone, atol=1e-5)


@pytest.mark.parametrize("texts, kwargs, message", [
    ([], {}, "empty list"),
    (42, {}, "not a string"),
    (["fine", 3], {}, "text #1 is int"),
    ("text", {"aggregation_strategy": "longest"},
     r"Unknown aggregation_strategy 'longest'\. Choose one of: none, simple, first, average, "
     r"max\."),
    ("text", {"aggregation_strategy": None}, "Unknown aggregation_strategy None"),
    ("text", {"ignore_labels": "O"}, "ignore_labels must be a list of label strings"),
    ("text", {"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_bad_input_is_refused_with_a_clear_message(token_classifier_factory, texts, kwargs,
                                                   message):
    ner = engine.load(token_classifier_factory("bert-ner").artifact)
    with pytest.raises(InputError, match=message):
        ner(texts, **kwargs)


def test_cli_ner_prints_one_json_line_per_text(token_classifier_factory, pipelines, capsys):
    exported = token_classifier_factory("bert-ner")
    status = main(["ner", str(exported.artifact), *NER_TEXTS[:2],
                   "--aggregation-strategy", "first", "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and [line["text"] for line in lines] == list(NER_TEXTS[:2])
    theirs = pipeline_answer(pipelines(exported), list(NER_TEXTS[:2]), aggregation_strategy="first")
    assert_same_entities([line["entities"] for line in lines], theirs)
    assert main(["ner", str(exported.artifact), NER_TEXTS[0]]) == 0  # readable: one per entity
    out = capsys.readouterr().out.splitlines()
    simple = pipeline_answer(pipelines(exported), NER_TEXTS[0], aggregation_strategy="simple")
    assert out[0] == NER_TEXTS[0] and len(out) == 1 + len(simple)
    assert out[1].split()[1:3] == [simple[0]["entity_group"], f"{simple[0]['score']:.4f}"]


def test_cli_ner_refuses_an_unknown_strategy_and_another_task(token_classifier_factory,
                                                              distilbert, capsys):
    artifact = str(token_classifier_factory("bert-ner").artifact)
    with pytest.raises(SystemExit) as exit_info:
        main(["ner", artifact, "x", "--aggregation-strategy", "longest"])
    assert exit_info.value.code == 2 and "invalid choice: 'longest'" in capsys.readouterr().err
    assert main(["ner", str(distilbert.artifact), "x"]) == 2
    assert "onnx-engine classify" in capsys.readouterr().err  # the command for that task


def test_cli_export_with_task_flag_writes_a_token_classification_artifact(
    token_classifier_factory, tmp_path, capsys
):
    checkpoint = token_classifier_factory("roberta-ner").checkpoint
    out = tmp_path / "ner"
    assert main(["export", str(checkpoint), str(out), "--task", "token-classification"]) == 0
    assert "(token-classification, opset" in capsys.readouterr().err
    assert isinstance(engine.load(out), TokenClassifier)


def test_torch_free_verify_passes_on_the_stored_references(token_classifier_factory, capsys):
    assert main(["verify", str(token_classifier_factory("roberta-ner").artifact)]) == 0
