"""Seq2SeqLM.generate against transformers' generate: greedy, beam search, per-step scores.

Tolerances: sequences must be identical; scores and logits within 1e-4 (the export parity bound;
measured differences on these tiny models are below 2e-5). The tiny models' greedy choices are
decided by margins above 2e-3, so identical sequences are a real check, not luck.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SUM_RTOL

from engine import InputError, Seq2SeqLM
from engine.numerics import log_softmax
from engine.seq2seq.generation_args import length_penalty_range
from export.check_set import filler_text

ATOL = 1e-4
NEW_TOKENS = 20
SOURCES = [
    "translate English to German: The cat sat on the mat.",
    "Hello world",
    "a",
    "summarize: The committee met on Tuesday and agreed to publish the report next month.",
    "Café naïve résumé: 東京タワーは高い。",
]


def _ids(sequences) -> list[list[int]]:
    return [sequence.token_ids.tolist() for sequence in sequences]


@pytest.mark.parametrize("batched", [False, True], ids=["batch1", "padded-batch"])
def test_greedy_matches_transformers(any_t5, batched):
    lm = Seq2SeqLM.load(any_t5.artifact)
    reference = any_t5.reference
    if batched:
        ours = _ids(lm.generate(SOURCES, max_new_tokens=NEW_TOKENS))
        theirs = reference.generate(SOURCES, max_new_tokens=NEW_TOKENS).token_ids
    else:
        ours = [_ids(lm.generate(text, max_new_tokens=NEW_TOKENS))[0] for text in SOURCES]
        theirs = [reference.generate([text], max_new_tokens=NEW_TOKENS).token_ids[0]
                  for text in SOURCES]
    assert ours == theirs
    assert max(len(ids) for ids in ours) == NEW_TOKENS  # outputs run long: EOS did not end them


def test_greedy_stops_each_sequence_at_its_own_eos(t5_v1_1):
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    ours = _ids(lm.generate(SOURCES, max_new_tokens=NEW_TOKENS))
    ended = [ids for ids in ours if len(ids) < NEW_TOKENS]
    assert ended and len(ended) < len(ours), "needs inputs that end early and inputs that do not"
    assert all(ids[-1] == 1 and 1 not in ids[:-1] for ids in ended)
    assert ours == t5_v1_1.reference.generate(SOURCES, max_new_tokens=NEW_TOKENS).token_ids


BEAM_CASES = [
    ("t5", {"num_beams": 2}),
    ("t5", {"num_beams": 4}),
    ("t5-v1_1", {"num_beams": 2}),
    ("t5-v1_1", {"num_beams": 4}),
    ("t5-v1_1-two-eos", {"num_beams": 2}),
    ("t5-v1_1-two-eos", {"num_beams": 4}),
    ("t5-v1_1-two-eos", {"num_beams": 4, "length_penalty": 2.0, "early_stopping": True}),
    ("t5-v1_1-two-eos", {"num_beams": 3, "length_penalty": 0.5, "early_stopping": "never"}),
    ("t5-v1_1-two-eos", {"num_beams": 4, "length_penalty": -1.0}),
]


@pytest.mark.parametrize("key, options", BEAM_CASES, ids=[f"{k}-{o}" for k, o in BEAM_CASES])
def test_beam_search_matches_transformers(t5_factory, key, options):
    model = t5_factory(key)
    ours = Seq2SeqLM.load(model.artifact).generate(SOURCES, max_new_tokens=NEW_TOKENS, **options)
    theirs = model.reference.generate(SOURCES, max_new_tokens=NEW_TOKENS, **options)
    assert _ids(ours) == theirs.token_ids
    # Scores are sums over the sequence (times length ** -length_penalty): their rounding grows
    # with the magnitude and differs between CPUs' kernels, so the tolerance is relative too.
    np.testing.assert_allclose(
        [s.score for s in ours], theirs.sequence_scores, atol=ATOL, rtol=SUM_RTOL
    )
    if key == "t5-v1_1-two-eos":  # the finished-hypothesis bookkeeping was really exercised
        assert any(len(ids) < NEW_TOKENS for ids in theirs.token_ids)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_step_scores_equal_pytorch_logits_for_the_same_prefix(t5_v1_1, num_beams):
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    start = lm.settings.decoder_start_token_id
    sequences = lm.generate(
        SOURCES, max_new_tokens=NEW_TOKENS, num_beams=num_beams, output_scores=True,
        output_logits=True,
    )
    for source, sequence in zip(SOURCES, sequences):
        ids = sequence.token_ids
        prefix = np.concatenate([[start], ids[:-1]])[None, :]
        expected = t5_v1_1.reference.decoder_logits([source], prefix)[0]
        positions = np.arange(len(ids))
        np.testing.assert_allclose(sequence.step_logits, expected, atol=ATOL, rtol=0)
        np.testing.assert_allclose(
            sequence.token_logits, expected[positions, ids], atol=ATOL, rtol=0
        )
        expected_logprobs = log_softmax(expected.astype(np.float64))[positions, ids]
        np.testing.assert_allclose(sequence.token_logprobs, expected_logprobs, atol=ATOL, rtol=0)
        assert sequence.score == pytest.approx(
            expected_logprobs.sum() / len(ids), abs=ATOL, rel=SUM_RTOL
        )


def test_scores_only_when_asked(t5_v1_1):
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    (plain,) = lm.generate("Hello world", max_new_tokens=4)
    assert plain.token_logprobs is None and plain.step_logits is None and plain.score is None
    (scored,) = lm.generate("Hello world", max_new_tokens=4, output_scores=True)
    assert scored.token_logprobs.shape == (4,) and scored.step_logits is None


def test_over_long_source_is_used_whole_like_transformers_and_cut_only_when_asked(
    t5_v1_1, caplog
):
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    reference = t5_v1_1.reference
    source = filler_text(600)
    whole = len(reference.tokenizer(source)["input_ids"])
    assert whole > lm.tokenizer.max_length
    with caplog.at_level("WARNING"):
        assert lm.encode(source).last_hidden_state.shape[1] == whole
    assert f"has {whole} tokens, more than the model's max length 512" in caplog.text
    ours = _ids(lm.generate([source, "a"], max_new_tokens=8, num_beams=2))
    assert ours == reference.generate([source, "a"], max_new_tokens=8, num_beams=2).token_ids

    cut = _ids(lm.generate([source, "a"], max_new_tokens=8, num_beams=2, truncation=True))
    expected = reference.generate([source, "a"], truncation=True, max_new_tokens=8, num_beams=2)
    assert cut == expected.token_ids
    assert lm.encode(source, truncation=True).last_hidden_state.shape[1] == 512


def test_batch_size_does_not_change_results(t5_v1_1):
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    whole = _ids(lm.generate(SOURCES, max_new_tokens=8, num_beams=2))
    assert _ids(lm.generate(SOURCES, max_new_tokens=8, num_beams=2, batch_size=2)) == whole


@pytest.mark.parametrize(
    "texts, options, message",
    [
        ([], {}, "empty list"),
        ([3], {}, "not a string"),
        ("fine", {"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
        ("fine", {"max_new_tokens": -2}, "max_new_tokens must be a positive integer"),
        ("fine", {"num_beams": 0}, "num_beams must be a positive integer"),
        ("fine", {"early_stopping": "sometimes"}, "early_stopping must be"),
        ("fine", {"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_generate_arguments_raise_input_error(t5_v1_1, texts, options, message):
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    with pytest.raises(InputError, match=message):
        lm.generate(texts, **options)


# The length-penalty grid against transformers: every penalty in the range GenerationArgs states
# for the longest output (the scores float32 can represent) gives transformers' ids and scores
# (same tolerances as above), unless transformers' own winner is a hypothesis scored as
# impossible (-1e9: every finished one sank below it, and its sort's tie-break picks one of the
# rest), where the engine refuses the input instead; a penalty outside the range is refused up
# front, naming it. PENALTY_TOKENS = 8 gives [-39.51, 34.33]: -10 is inside, -100 outside. Two
# sources keep the 72 cases at a few seconds.
PENALTY_TOKENS = 8
PENALTY_SOURCES = SOURCES[:2]
PENALTIES = [-100.0, -10.0, -1.0, 0.0, 0.5, 1.0, 2.0, 10.0]


@pytest.fixture(scope="module")
def two_eos(t5_factory):
    """The two-EOS T5 (finished hypotheses at many steps) and its engine model, loaded once."""
    model = t5_factory("t5-v1_1-two-eos")
    return model, Seq2SeqLM.load(model.artifact)


@pytest.mark.parametrize("length_penalty", PENALTIES)
def test_length_penalty_grid_matches_transformers_or_is_refused_with_the_reason(
    two_eos, length_penalty
):
    model, lm = two_eos
    lowest, highest = length_penalty_range(PENALTY_TOKENS)
    assert (lowest, highest) == (-39.51, 34.33)
    in_range = lowest <= length_penalty <= highest
    for num_beams in (2, 3, 4):
        for early_stopping in (True, False, "never"):
            options = {"max_new_tokens": PENALTY_TOKENS, "num_beams": num_beams,
                       "length_penalty": length_penalty, "early_stopping": early_stopping}
            if not in_range:
                with pytest.raises(InputError, match=r"outside \[-39.51, 34.33\].*up to 8 tokens"):
                    lm.generate(PENALTY_SOURCES, **options)
                continue
            theirs = model.reference.generate(PENALTY_SOURCES, **options)
            if not (theirs.sequence_scores > -1e9).all():
                with pytest.raises(InputError, match="past -1e9"):
                    lm.generate(PENALTY_SOURCES, **options)
                continue
            ours = lm.generate(PENALTY_SOURCES, **options)
            assert _ids(ours) == theirs.token_ids, options
            np.testing.assert_allclose([s.score for s in ours], theirs.sequence_scores,
                                       atol=ATOL, rtol=SUM_RTOL, err_msg=str(options))


def test_a_strong_negative_penalty_matches_transformers_where_short_outputs_keep_it_in_range(
    two_eos
):
    # Three new tokens allow down to -13.79: -10 is in range there and gives transformers' answer.
    model, lm = two_eos
    options = {"max_new_tokens": 3, "num_beams": 3, "length_penalty": -10.0}
    ours = lm.generate(SOURCES, **options)
    theirs = model.reference.generate(SOURCES, **options)
    assert _ids(ours) == theirs.token_ids
    np.testing.assert_allclose([s.score for s in ours], theirs.sequence_scores, atol=ATOL,
                               rtol=SUM_RTOL)


@pytest.mark.parametrize("batch_size", [16, 2], ids=["one-batch", "chunked"])
def test_on_step_reports_each_greedy_token_as_generate_returns_it(t5_v1_1, batch_size):
    """The streamed tokens (what a server sends) are the returned ids, row by row, in order,
    with output_scores' log-probabilities; the last one of each row is flagged finished."""
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    steps = []
    returned = lm.generate(SOURCES, max_new_tokens=NEW_TOKENS, output_scores=True,
                           batch_size=batch_size, on_step=steps.append)
    streamed: dict[int, list[tuple[int, float, bool]]] = {i: [] for i in range(len(SOURCES))}
    for step in steps:
        for row, token, logprob, finished in zip(step.rows, step.token_ids, step.logprobs,
                                                 step.finished):
            streamed[int(row)].append((int(token), float(logprob), bool(finished)))
    for index, sequence in enumerate(returned):
        tokens, logprobs, finished = zip(*streamed[index])
        assert list(tokens) == sequence.token_ids.tolist()
        np.testing.assert_allclose(logprobs, sequence.token_logprobs, rtol=1e-6, atol=1e-7)
        assert finished == (False,) * (len(tokens) - 1) + (True,)
    assert _ids(lm.generate(SOURCES, max_new_tokens=NEW_TOKENS)) == _ids(returned)


def test_on_step_with_a_cancelled_row_leaves_the_other_rows_token_identical(t5_v1_1):
    """A row cancelled after two steps stops reporting; every other row streams and returns
    exactly what it does with nobody cancelled."""
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    want = _ids(lm.generate(SOURCES, max_new_tokens=NEW_TOKENS))
    steps = []
    gone = [False] * len(SOURCES)

    def on_step(tokens):
        steps.append(tokens)
        if len(steps) == 2:
            gone[3] = True

    got = lm.generate(SOURCES, max_new_tokens=NEW_TOKENS, cancelled=lambda: gone,
                      on_step=on_step)
    assert got[3].cancelled
    assert [ids for i, ids in enumerate(_ids(got)) if i != 3] == want[:3] + want[4:]
    assert sum(3 in step.rows for step in steps) == 2


@pytest.mark.parametrize("options, message", [
    ({"num_beams": 2}, "greedy decoding only"),
    ({"on_step": "print"}, "on_step must be a function"),
])
def test_on_step_is_refused_where_it_cannot_stream(t5_v1_1, options, message):
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    with pytest.raises(InputError, match=message):
        lm.generate("fine", **{"on_step": print, **options})
