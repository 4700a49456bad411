"""The T5 part of the bad-input corpus: odd inputs equal transformers, bad ones are our errors.

Each bad case names what transformers 4.57's ``model.generate`` / forward pass does with it
(observed on the same tiny checkpoint): several return output silently (a NaN length penalty,
``max_new_tokens=1.5``), others fail deep inside with TypeError/ZeroDivisionError/IndexError.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from helpers import SUM_RTOL

from engine import InputError, Seq2SeqLM
from engine.decoding import GreedySearch

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
