"""The T5 part of the bad-input corpus: odd inputs equal transformers, bad ones are our errors.

Each bad case names what transformers 4.57's ``model.generate`` / forward pass does with it
(observed on the same tiny checkpoint): several return output silently (a NaN length penalty,
``max_new_tokens=1.5``), others fail deep inside with TypeError/ZeroDivisionError/IndexError.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from helpers import SUM_RTOL
from serve_support import running_server

from engine import InputError, Seq2SeqLM
from engine.seq2seq.beam_search import BeamSearch
from engine.seq2seq.decoding import GreedySearch
from engine.seq2seq.generation_args import length_penalty_range
from onnx_engine.cli import main as cli_main
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.errors import BackendError
from onnx_engine.serving.tasks.base import OutputTensor
from onnx_engine.serving.v2_codec import encode_response, parse_request

ATOL = 1e-4


@pytest.fixture(scope="module")
def lm(t5_v1_1) -> Seq2SeqLM:
    return Seq2SeqLM.load(t5_v1_1.artifact)


def _ids(sequences) -> list[list[int]]:
    return [sequence.token_ids.tolist() for sequence in sequences]


ODD_SOURCES = {
    # transformers: each is tokenized to at least </s> and decoded normally
    "empty": "",
    "whitespace-only": "  \t\n ",
    "newline": "\n",
    "special-token strings": "</s> <pad> <unk> hello",
    "emoji and CJK": "東京 🚀 naïve café",
    "control characters": "a\x00b\x07c",
}


@pytest.mark.parametrize("source", list(ODD_SOURCES.values()), ids=list(ODD_SOURCES))
@pytest.mark.parametrize("num_beams", [1, 3])
def test_odd_sources_generate_what_transformers_generates(lm, t5_v1_1, source, num_beams):
    ours = lm.generate([source], max_new_tokens=6, num_beams=num_beams)
    theirs = t5_v1_1.reference.generate([source], max_new_tokens=6, num_beams=num_beams)
    assert _ids(ours) == theirs.token_ids


@pytest.mark.parametrize("target", ["", "   "], ids=["empty", "whitespace"])
def test_an_empty_target_scores_eos_alone_like_transformers(lm, t5_v1_1, target):
    reference = t5_v1_1.reference
    source = "translate English to German: hello"
    labels = reference.tokenizer(text_target=[target], return_tensors="pt")["input_ids"]
    assert labels.tolist() == [[1]]  # just </s>
    with torch.inference_mode():
        loss = float(reference.model(**reference.tokenizer([source], return_tensors="pt"),
                                     labels=labels).loss)
    np.testing.assert_allclose(lm.score([source], [target]), [-loss], atol=ATOL, rtol=SUM_RTOL)
    forced = lm.logits([source], [target])
    assert forced.logits.shape == (1, 1, reference.model.config.vocab_size)
    expected, _ = reference.target_logits([source], [target])
    np.testing.assert_allclose(forced.logits, expected, atol=ATOL, rtol=0)


def test_more_beams_than_vocabulary_returns_what_transformers_returns(lm, t5_v1_1):
    # transformers keeps num_beams hypotheses per input (the surplus start "impossible");
    # the engine does the same instead of failing inside ONNX Runtime with a Concat shape error.
    vocab = t5_v1_1.reference.model.config.vocab_size
    num_beams = vocab + 21
    ours = lm.generate(["hello world"], max_new_tokens=3, num_beams=num_beams)
    theirs = t5_v1_1.reference.generate(["hello world"], max_new_tokens=3, num_beams=num_beams)
    assert _ids(ours) == theirs.token_ids
    np.testing.assert_allclose(
        [s.score for s in ours], theirs.sequence_scores, atol=ATOL, rtol=SUM_RTOL
    )


# (keyword arguments, our message, what transformers does: observed)
BAD_GENERATE = {
    "max_new_tokens 0": ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer",
                         "ValueError: `max_new_tokens` must be greater than 0"),
    "max_new_tokens -1": ({"max_new_tokens": -1}, "max_new_tokens must be a positive integer",
                          "ValueError: `max_new_tokens` must be greater than 0"),
    "max_new_tokens 1.5": ({"max_new_tokens": 1.5}, "max_new_tokens must be a positive integer",
                           "returns 2 tokens silently"),
    "max_new_tokens '3'": ({"max_new_tokens": "3"}, "max_new_tokens must be a positive integer",
                           "TypeError: '<=' not supported between 'str' and 'int'"),
    "max_new_tokens True": ({"max_new_tokens": True}, "max_new_tokens must be a positive integer",
                            "treats True as 1"),
    "max_new_tokens 1e9": ({"max_new_tokens": 10**9}, "exceeds this model's output limit of 512",
                           "allocates and decodes until EOS or 1e9 tokens"),
    "num_beams 0": ({"num_beams": 0}, "num_beams must be a positive integer",
                    "ZeroDivisionError: integer division or modulo by zero"),
    "num_beams 2.5": ({"num_beams": 2.5}, "num_beams must be a positive integer",
                      "TypeError from repeat_interleave"),
    "num_beams '2'": ({"num_beams": "2"}, "num_beams must be a positive integer",
                      "TypeError: '>' not supported between 'int' and 'str'"),
    "num_beams 10**6": ({"num_beams": 10**6}, "above the engine's limit of 512",
                        "not run: it needs 10**6 x vocabulary scores per step"),
    "length_penalty nan": ({"num_beams": 2, "length_penalty": float("nan")},
                           "length_penalty must be a finite number", "returns tokens silently"),
    "length_penalty inf": ({"num_beams": 2, "length_penalty": float("inf")},
                           "length_penalty must be a finite number", "returns tokens silently"),
    "length_penalty 'a'": ({"num_beams": 2, "length_penalty": "a"},
                           "length_penalty must be a finite number",
                           "TypeError: unsupported operand type(s) for **"),
    "length_penalty None": ({"num_beams": 2, "length_penalty": None},
                            "length_penalty must be a finite number",
                            "TypeError: unsupported operand type(s) for **"),
    "length_penalty True": ({"num_beams": 2, "length_penalty": True},
                            "length_penalty must be a finite number", "treats True as 1"),
    "length_penalty 1e308": ({"num_beams": 2, "length_penalty": 1e308},
                             r"length_penalty=1e\+308 is outside \[-75.69, 64.98\]",
                             "OverflowError: (34, 'Numerical result out of range')"),
    "length_penalty -1e308 scored": ({"length_penalty": -1e308, "output_scores": True},
                                     r"length_penalty=-1e\+308 is outside \[-75.69, 64.98\]",
                                     "greedy ignores it; with beams: scores -inf"),
    "early_stopping 'sometimes'": ({"num_beams": 2, "early_stopping": "sometimes"},
                                   "early_stopping must be",
                                   "ValueError: `early_stopping` must be a boolean or 'never'"),
    "early_stopping 1": ({"num_beams": 2, "early_stopping": 1}, "early_stopping must be",
                         "treats 1 as True"),
    "output_scores 'yes'": ({"output_scores": "yes"}, "output_scores must be True or False",
                            "treats it as truthy"),
    "batch_size 0": ({"batch_size": 0}, "batch_size must be a positive integer",
                     "generate has no batch_size: the caller batches"),
    "truncation 'yes'": ({"truncation": "yes"}, "truncation must be True or False",
                         "tokenizer: ValueError: yes is not a valid TruncationStrategy"),
}


@pytest.mark.parametrize(
    "kwargs, message, transformers_does", list(BAD_GENERATE.values()), ids=list(BAD_GENERATE)
)
def test_bad_generation_arguments_are_input_errors(lm, kwargs, message, transformers_does):
    with pytest.raises(InputError, match=message):
        lm.generate("hello", **{"max_new_tokens": 3, **kwargs})


BAD_TEXTS = {
    # transformers: TypeError from tokenizers
    "lone surrogate source": (lambda lm: lm.generate(["ok", "x\ud800"]), "source #1"),
    "lone surrogate target": (lambda lm: lm.score(["ok"], ["\udfff"]), "target #0"),
    # transformers: ValueError "You need to specify either `text` or `text_target`"
    "None source": (lambda lm: lm.generate(None), "source is NoneType"),
    # transformers: batch-size mismatch inside the model
    "two sources one target": (lambda lm: lm.logits(["a", "b"], ["c"]), "one target per source"),
    "bad reduction": (lambda lm: lm.score(["a"], ["b"], reduction="max"), "reduction"),
    # transformers: IndexError "index out of range in self" from the embedding
    "negative decoder id": (
        lambda lm: lm.decoder_logits(["a"], np.array([[0, -1]])), r"\[0, 1\] = -1 is not a token"
    ),
    "decoder id past the vocabulary": (
        lambda lm: lm.decoder_logits(["a"], np.array([[0, 5000]])), "5000 is not a token id"
    ),
    # transformers: torch refuses float indices in the embedding (not run here)
    "float decoder ids": (
        lambda lm: lm.decoder_logits(["a"], np.array([[0.0, 1.0]])), "must be integers"
    ),
    "decoder ids of another batch": (
        lambda lm: lm.decoder_logits(["a", "b"], np.array([[0, 1]])), r"shaped \[2, length"
    ),
}


@pytest.mark.parametrize("call, message", list(BAD_TEXTS.values()), ids=list(BAD_TEXTS))
def test_bad_texts_and_ids_are_input_errors_naming_the_input(lm, call, message):
    with pytest.raises(InputError, match=message):
        call(lm)


def test_output_buffers_follow_the_tokens_produced_not_the_request():
    # A billion-token budget that ends at EOS after three steps holds three columns (plus
    # doubling slack), never max_new_tokens of them.
    search = GreedySearch(2, 10**9, eos_ids=(1,), pad_id=0)
    logits = np.zeros((2, 5), dtype=np.float32)
    for step in range(3):
        logits[:] = 0
        logits[:, 1 if step == 2 else 3] = 1.0  # token 3 twice, then EOS
        decision = search.advance(logits)
    assert decision.next_ids is None
    assert search.tokens.shape[1] <= 8
    result = search.result()
    assert result.tokens.tolist() == [[3, 3, 1], [3, 3, 1]] and result.lengths.tolist() == [3, 3]


def test_concurrent_generation_on_one_model_gets_each_callers_answer(lm):
    # A server shares one Seq2SeqLM between worker threads; decoding state is per call.
    sources = ["hello world", "", "translate English to German: The cat sat.", "a b c d e f"]
    expected = {source: _ids(lm.generate([source], max_new_tokens=5, num_beams=2))
                for source in sources}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(
            lambda source: (source, _ids(lm.generate([source], max_new_tokens=5, num_beams=2))),
            sources * 3,
        ))
    assert all(ids == expected[source] for source, ids in results)


# --- Length penalties whose scores cannot be represented (issue 22, item 10) ---
# transformers 4.57 accepts any float: past the range GenerationArgs states, its winner is a
# hypothesis scored as impossible (-1e9, picked by its sort's tie-break), it raises OverflowError
# (Python's int ** float), or it scores -inf. Served, these were 500s and a 200 with -Infinity.


def _strict_json(text: str):
    """``json.loads`` that refuses NaN/Infinity, which Python's json writes and reads by default."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def t5_server(lm):
    with running_server(ServeConfig(), {"t5": lm}) as (url, _):
        yield url


def _v2_body(parameters):
    text = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello there"]}
    return {"inputs": [text], "parameters": parameters}


@pytest.mark.parametrize("route, parameters", [
    ("/models/t5", {"num_beams": 3, "length_penalty": -100}),
    ("/models/t5", {"num_beams": 3, "length_penalty": 300}),
    ("/v2/models/t5/infer", {"length_penalty": -1e308}),  # V2 answers a greedy score too
    ("/models/t5/generate", {"num_beams": 2, "length_penalty": 1e308}),
], ids=["hf-beams3--100", "hf-beams3-300", "v2-greedy--1e308", "tgi-beams2-1e308"])
def test_served_penalties_out_of_range_are_422_naming_the_range(lm, t5_server, route, parameters):
    lowest, highest = length_penalty_range(lm.settings.default_max_new_tokens)
    body = _v2_body(parameters) if route.startswith("/v2") else {
        "inputs": "hello there", "parameters": parameters}
    response = httpx.post(f"{t5_server}{route}", json=body, timeout=60)
    assert response.status_code == 422, response.text
    error = _strict_json(response.text)
    assert f"is outside [{lowest:g}, {highest:g}]" in error["error"]
    assert error["error_type"] == "validation"


@pytest.mark.parametrize("text", ["hello there", "translate English to German: good morning"])
def test_served_strong_negative_penalty_answers_what_the_library_does(lm, t5_server, text):
    """-10 with 3 beams (issue 22 #10) is inside the representable range: the server answers
    the library's text, or the library's refusal (every finished hypothesis sank below -1e9)."""
    parameters = {"num_beams": 3, "length_penalty": -10}
    response = httpx.post(f"{t5_server}/models/t5", json={"inputs": text,
                                                           "parameters": parameters}, timeout=60)
    try:
        (expected,) = lm.generate([text], **parameters)
    except InputError as error:
        assert response.status_code == 422, response.text
        assert _strict_json(response.text)["error"] == str(error)
    else:
        assert response.status_code == 200, response.text
        assert _strict_json(response.text)[0]["generated_text"] == expected.text


def test_served_greedy_ignores_a_penalty_it_has_no_score_for(lm, t5_server):
    """Greedy decoding without scores never uses the penalty (transformers ignores it): the HF
    shapes, which answer no score, take even 1e308; V2, which answers a score, refuses it."""
    response = httpx.post(f"{t5_server}/models/t5", json={
        "inputs": "hello there", "parameters": {"length_penalty": 1e308}}, timeout=60)
    assert response.status_code == 200, response.text
    (expected,) = lm.generate(["hello there"])
    assert _strict_json(response.text)[0]["generated_text"] == expected.text


def test_served_negative_penalty_in_range_answers_valid_json_with_the_engines_score(lm, t5_server):
    parameters = {"num_beams": 3, "length_penalty": -4.0, "max_new_tokens": 6}
    response = httpx.post(f"{t5_server}/v2/models/t5/infer", json=_v2_body(parameters), timeout=60)
    assert response.status_code == 200, response.text
    outputs = {item["name"]: item["data"] for item in _strict_json(response.text)["outputs"]}
    (expected,) = lm.generate(["hello there"], **parameters)
    assert outputs["generated_text"] == [expected.text]
    assert outputs["sequence_score"][0] == pytest.approx(expected.score, rel=1e-6)


def test_cli_generate_with_an_unrepresentable_penalty_is_one_error_line(t5_v1_1, capsys):
    status = cli_main(["generate", str(t5_v1_1.artifact), "hi", "--length-penalty", "1e308",
                       "--scores"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("error: --length-penalty 1e+308 is outside [") and "\n" not in err


def _run_beam_search(length_penalty: float) -> BeamSearch:
    """Two beams over six tokens for 20 steps; EOS (id 1) is never among the candidates, so
    every hypothesis finishes at the last step, 20 tokens long."""
    rng = np.random.default_rng(0)
    search = BeamSearch(1, 2, 20, eos_ids=(1,), length_penalty=length_penalty)
    rows = 1
    for _ in range(20):
        logits = rng.normal(size=(rows, 6)).astype(np.float32)
        logits[:, 1] = -50.0
        decision = search.advance(logits)
        if decision.next_ids is None:
            return search
        rows = len(decision.next_ids)
    raise AssertionError("beam search did not stop at max_new_tokens")


def test_beam_search_refuses_a_result_whose_scores_sank_to_the_impossible_score():
    # Inside GenerationArgs' range (float32 can hold the scores), 20 ** 10 still scales every
    # finished score below -1e9: the empty placeholder would win, so the input is refused.
    with pytest.raises(InputError, match=r"length_penalty=-10 scaled the scores of input #0"):
        _run_beam_search(-10.0).result()
    result = _run_beam_search(-1.0).result()
    assert result.lengths.tolist() == [20] and -1e9 < result.scores[0] < 0


def test_v2_json_never_carries_a_non_finite_number():
    request = parse_request(json.dumps(_v2_body({})).encode(), None)
    scores = OutputTensor("sequence_score", "FP32", np.array([-np.inf], dtype=np.float32))
    with pytest.raises(BackendError, match="'sequence_score' holds a non-finite value"):
        encode_response("t5", request, [scores])
    binary = parse_request(json.dumps({**_v2_body({}), "outputs": [
        {"name": "sequence_score", "parameters": {"binary_data": True}}]}).encode(), None)
    body, _ = encode_response("t5", binary, [scores])  # IEEE floats carry inf as they are
    assert body.endswith(np.array([-np.inf], dtype="<f4").tobytes())
