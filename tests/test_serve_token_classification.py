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
        ({"aggregation_strategy": "longest"},
         "Unknown aggregation_strategy 'longest'. Choose one of: none, simple, first, "
         "average, max."),
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


@pytest.mark.parametrize("protocol", ["hf", "v2"])
def test_loadtest_checks_every_entity_list(served, token_classifier_factory, protocol, tmp_path,
                                           capsys):
    """A bounded ``onnx-engine loadtest`` against the real server passes every answer (the
    served ``simple`` entities equal the in-process TokenClassifier's) on HF and V2."""
    from onnx_engine.cli import main

    url, _ = served
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(NER_TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "result.json"
    artifact = token_classifier_factory("bert-ner").artifact
    code = main(["loadtest", url, "--model", "bert-ner", "--artifact", str(artifact),
                 "--protocol", protocol, "--concurrency", "1,4", "--duration", "0.5",
                 "--max-requests", "24", "--texts", str(texts), "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    levels = json.loads(out.read_text())["servers"]["server"]["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    assert all(0 < level["statuses"].get("200", 0) <= 24 and level["mixed_up"] == level["lost"] == 0
               for level in levels)


def test_loadtest_catches_the_entities_of_another_text(served, token_classifier_factory):
    """Each text's expected entities swapped for the next text's: every answer is a mix-up."""
    import asyncio

    from onnx_engine.loadtest.protocols import Protocol
    from onnx_engine.loadtest.reference import Reference, build_reference
    from onnx_engine.loadtest.runner import run_level

    url, _ = served
    model = engine.load(token_classifier_factory("bert-ner").artifact)
    texts = list(NER_TEXTS)
    right = build_reference(model, texts, {})
    assert len({json.dumps(right.expected[text]) for text in texts}) == len(texts)
    shifted = Reference({text: right.expected[texts[(index + 1) % len(texts)]]
                         for index, text in enumerate(texts)}, model.task)
    protocol = Protocol("hf", model.task, "bert-ner", {})
    count = 2 * len(texts)
    level = asyncio.run(run_level(url, protocol, texts, shifted, 2, 5.0, count, {})).result()
    assert level.requests == count and level.mixed_up == count
    level = asyncio.run(run_level(url, protocol, texts, right, 2, 5.0, count, {})).result()
    assert level.requests == count and level.mixed_up == 0 and level.statuses == {"200": count}
