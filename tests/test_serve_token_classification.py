"""Serving a token classifier: unmodified ``InferenceClient.token_classification`` and
tritonclient against a real server on 127.0.0.1; answers equal the pipeline's."""

from __future__ import annotations

import json
import warnings

import httpx
import numpy as np
import pytest
import transformers
import tritonclient.http as triton
from helpers import assert_same_entities
from huggingface_hub import InferenceClient
from serve_support import running_server
from tiny_token_classifiers import NER_TEXTS

import engine
from export.check_set import filler_text
from onnx_engine.serving.config import ServeConfig


@pytest.fixture(scope="module")
def served(token_classifier_factory):
    """Both NER models behind one server, and their transformers pipelines."""
    keys = ("bert-ner", "roberta-ner")
    exported = {key: token_classifier_factory(key) for key in keys}
    models = {key: engine.load(item.artifact) for key, item in exported.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipes = {key: transformers.pipeline("token-classification", model=str(item.checkpoint),
                                            device="cpu") for key, item in exported.items()}
    with running_server(ServeConfig(), models) as (url, _):
        yield url, pipes


def _pipeline(pipe, texts, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe(texts, **kwargs)


@pytest.mark.parametrize("key", ["bert-ner", "roberta-ner"])
@pytest.mark.parametrize("strategy", [None, "none", "first", "max"])
def test_inference_client_token_classification(served, key, strategy):
    """The client's parsed elements carry the pipeline's fields; the server groups with
    ``simple`` when the client names no strategy (as the Inference API does)."""
    url, pipes = served
    client = InferenceClient(model=f"{url}/models/{key}")
    elements = client.token_classification(NER_TEXTS[0], aggregation_strategy=strategy)
    theirs = _pipeline(pipes[key], NER_TEXTS[0], aggregation_strategy=strategy or "simple")
    assert len(elements) == len(theirs) > 0
    group = "entity" if strategy == "none" else "entity_group"
    for element, reference in zip(elements, theirs):
        assert getattr(element, group) == reference[group]
        assert (element.word, element.start, element.end) == (
            reference["word"], reference["start"], reference["end"])
        assert abs(element.score - float(reference["score"])) <= 1e-5


def test_hf_route_lists_ignore_labels_and_bad_parameters(served):
    url, pipes = served
    body = {"inputs": list(NER_TEXTS), "parameters": {"aggregation_strategy": "average",
                                                      "ignore_labels": ["LOC"]}}
    answer = httpx.post(f"{url}/models/bert-ner", json=body, timeout=30)
    assert answer.status_code == 200
    assert_same_entities(answer.json(), _pipeline(pipes["bert-ner"], list(NER_TEXTS),
                                                  aggregation_strategy="average",
                                                  ignore_labels=["LOC"]))
    for parameters, message in (
        ({"aggregation_strategy": "longest"}, "must be one of none, simple, first, average, max"),
        ({"stride": 16}, '"stride"'),
        ({"top_k": 2}, "Unknown parameter(s) ['top_k']"),
        ({"ignore_labels": "O"}, "ignore_labels must be a list"),
    ):
        refused = httpx.post(f"{url}/models/bert-ner", timeout=30,
                             json={"inputs": "x", "parameters": parameters})
        assert refused.status_code in (400, 422) and message in refused.json()["error"], parameters


def test_over_long_text_is_refused_unless_truncation_is_asked(served):
    url, pipes = served
    long = filler_text(700)
    refused = httpx.post(f"{url}/models/bert-ner", json={"inputs": long}, timeout=30)
    assert refused.status_code == 413 and "at most 512" in refused.json()["error"]
    cut = httpx.post(f"{url}/models/bert-ner", timeout=30,
                     json={"inputs": long, "parameters": {"truncation": True}})
    assert cut.status_code == 200  # the pipeline truncates by default: same entities
    assert_same_entities(cut.json(), _pipeline(pipes["bert-ner"], long,
                                               aggregation_strategy="simple"))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_v2_answers_one_json_row_per_text(served, binary):
    url, pipes = served
    client = triton.InferenceServerClient(url.split("//", 1)[1])
    tensor = triton.InferInput("text", [len(NER_TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array(NER_TEXTS, dtype=object), binary_data=binary)
    result = client.infer("roberta-ner", [tensor], parameters={"aggregation_strategy": "first"},
                          outputs=[triton.InferRequestedOutput("entities", binary_data=binary)])
    rows = [json.loads(row) for row in result.as_numpy("entities")]
    assert_same_entities(rows, _pipeline(pipes["roberta-ner"], list(NER_TEXTS),
                                         aggregation_strategy="first"))
    metadata = client.get_model_metadata("roberta-ner")
    assert metadata["task"] == "token-classification"
    assert [output["name"] for output in metadata["outputs"]] == ["entities"]
