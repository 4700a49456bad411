"""IO binding: the bound decode path (KV cache left in ``OrtValue``s between steps, beam rows moved
by a Gather graph on the device) gives the plain path's tokens and logits bit for bit, and copies
no KV-cache tensor between host and device at any step.

Run on CPU, where ONNX Runtime binds CPU tensors too (``io_binding="on"``): the copies are
counted at ONNX Runtime's API (``onnx_engine.bench.transfers``), which is where they happen on a
GPU. The same tests run on CUDA when a GPU is present (marked ``cuda``; skipped otherwise, and a
skip is no evidence).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest

from engine import Seq2SeqLM
from engine.errors import InputError
from engine.tasks.text2text import DEFAULT_OPTIONS
from onnx_engine.bench.transfers import DOWN, UP, TransferCounter

TEXTS = ["translate English to German: The house is wonderful.", "a", "I hate this so much!"]
TARGETS = ["Das Haus ist wunderbar.", "b", "Ich hasse das."]
PROVIDERS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
# Beam counts and stopping rules, on the model with two EOS ids so finished hypotheses occur.
BEAM_CASES = [
    {"num_beams": 2},
    {"num_beams": 3, "early_stopping": True},
    {"num_beams": 4, "early_stopping": "never", "length_penalty": 0.5},
    {"num_beams": 5, "early_stopping": False, "length_penalty": 2.0},
]


@pytest.fixture(scope="module")
def load(t5_factory) -> Callable[[str, str, str], Seq2SeqLM]:
    """``load(model key, io_binding, provider)``, each combination loaded once per module."""
    cache: dict[tuple[str, str, str], Seq2SeqLM] = {}

    def get(key: str, setting: str, provider: str = "cpu") -> Seq2SeqLM:
        if (key, setting, provider) not in cache:
            options = DEFAULT_OPTIONS.with_overrides(io_binding=setting)
            artifact = t5_factory(key).artifact
            cache[key, setting, provider] = Seq2SeqLM.load(artifact, options=options,
                                                           provider=provider)
        return cache[key, setting, provider]

    return get


def _assert_same(bound: np.ndarray, plain: np.ndarray, provider: str) -> None:
    if provider == "cpu":  # same kernels, same inputs: the same bits
        np.testing.assert_array_equal(bound, plain)
    else:  # CUDA may pick other GEMM algorithms between sessions; the tokens must still agree
        np.testing.assert_allclose(bound, plain, rtol=1e-5, atol=1e-5)


def test_auto_binds_only_on_cuda(load):
    assert load("t5-v1_1", "on").graphs.bound
    assert not load("t5-v1_1", "off").graphs.bound
    assert not load("t5-v1_1", "auto").graphs.bound  # CPU here: the plain path


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("key, kwargs", [("t5-v1_1", {"num_beams": 1})]
                         + [("t5-v1_1-two-eos", case) for case in BEAM_CASES])
def test_bound_generation_gives_the_plain_tokens_logits_and_scores(load, provider, key, kwargs):
    bound, plain = (
        load(key, setting, provider).generate(TEXTS, max_new_tokens=9, output_logits=True,
                                              **kwargs)
        for setting in ("on", "off")
    )
    for ours, theirs in zip(bound, plain):
        np.testing.assert_array_equal(ours.token_ids, theirs.token_ids)
        _assert_same(ours.step_logits, theirs.step_logits, provider)
        if provider == "cpu":
            assert ours.score == theirs.score


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bound_teacher_forcing_and_encoder_match_the_plain_path(load, provider):
    on, off = load("t5-v1_1", "on", provider), load("t5-v1_1", "off", provider)
    for use_cache in (False, True):
        bound = on.logits(TEXTS, TARGETS, use_cache=use_cache).logits
        plain = off.logits(TEXTS, TARGETS, use_cache=use_cache).logits
        _assert_same(bound, plain, provider)
    _assert_same(on.encode(TEXTS).last_hidden_state, off.encode(TEXTS).last_hidden_state, provider)


def test_the_bound_cache_stays_in_ort_values_between_steps(load):
    lm = load("t5-v1_1", "on")
    batch = lm.tokenizer.encode(TEXTS)
    encoder = lm.graphs.encode(batch.input_ids, batch.attention_mask)
    assert isinstance(encoder.hidden, ort.OrtValue)
    start = np.zeros((len(TEXTS), 1), dtype=np.int64)
    logits, cache = lm.graphs.first_step(start, encoder)
    cache = cache.expanded(2)  # beam search's expansion, on the device
    mask = np.repeat(encoder.mask, 2, axis=0)
    ids = np.argmax(logits, axis=-1).repeat(2, axis=0)
    logits, cache = lm.graphs.next_step(ids, cache.reordered(np.array([1, 0, 3, 2, 5, 4])), mask)
    assert isinstance(logits, np.ndarray) and logits.shape[:2] == (2 * len(TEXTS), 1)
    assert all(isinstance(value, ort.OrtValue) for value in cache.feeds().values())


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_per_step_copies_under_io_binding(load, provider, num_beams):
    """Per decoder step: ids and the mask go up, the logits come down, the cache never moves."""
    lm = load("t5-v1_1-two-eos", "on", provider)
    with TransferCounter() as counter:
        lm.generate(TEXTS, max_new_tokens=9, num_beams=num_beams)
    up, down = counter.count(UP), counter.count(DOWN)
    steps = down["logits"]  # one logits download per decoder run
    assert steps >= 2
    assert counter.cache_copies() == 0
    assert set(down) == {"logits"}
    expected_up = {
        "input_ids": steps + 1,  # the encoder's, then one row of ids per decoder step
        "attention_mask": 1,  # the encoder's
        "encoder_attention_mask": steps,
    }
    if num_beams > 1:
        expected_up["rows"] = steps - 1  # beam rows: the expansion once, then a reorder per step
    assert dict(up) == expected_up


def test_the_counter_sees_the_cache_copies_of_the_plain_path(load):
    """The same count on the plain path: every with-past step uploads and downloads the cache."""
    lm = load("t5-v1_1-two-eos", "off")
    with TransferCounter() as counter:
        lm.generate(TEXTS, max_new_tokens=9, num_beams=3)
    steps = counter.count(DOWN)["logits"]
    layers = sum(name.startswith("present.") and name.endswith("decoder.key")
                 for name in lm.graphs.sessions["decoder_with_past"].output_names)
    # Up: 4 past entries per layer per with-past step; down: 2 (with_past) or 4 (first) presents.
    assert counter.cache_copies() == layers * (4 * (steps - 1) + 2 * (steps - 1) + 4)


def test_teacher_forcing_through_the_cache_copies_no_cache(load):
    with TransferCounter() as counter:
        load("t5-v1_1", "on").logits(TEXTS, TARGETS, use_cache=True)
    assert counter.cache_copies() == 0
    assert set(counter.count(DOWN)) == {"logits"}


def test_an_unknown_io_binding_setting_lists_the_choices(t5_v1_1):
    with pytest.raises(InputError, match="auto, on, off"):
        Seq2SeqLM.load(t5_v1_1.artifact, options=DEFAULT_OPTIONS.with_overrides(io_binding="gpu"))
