"""IO binding: the bound decode path (KV cache left in ``OrtValue``s between steps) gives the
plain path's tokens and logits, bit for bit (same kernels, same inputs).

Run on CPU, where ONNX Runtime binds CPU tensors too (``io_binding="on"``); on CUDA, where the
bound path is the default, it keeps the cache on the GPU. No GPU was used for these tests.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from engine import Seq2SeqLM
from engine.errors import InputError
from engine.seq2seq import DEFAULT_OPTIONS

TEXTS = ["translate English to German: The house is wonderful.", "a", "I hate this so much!"]


@pytest.fixture(scope="module")
def models(t5_v1_1) -> dict[str, Seq2SeqLM]:
    """The same artifact loaded with each io_binding setting, on CPU."""
    return {
        setting: Seq2SeqLM.load(
            t5_v1_1.artifact, options=DEFAULT_OPTIONS.with_overrides(io_binding=setting),
            provider="cpu",
        )
        for setting in ("auto", "on", "off")
    }


def test_auto_binds_only_on_cuda(models):
    assert models["on"].graphs.bound
    assert not models["off"].graphs.bound
    assert not models["auto"].graphs.bound  # CPU here: the plain path


@pytest.mark.parametrize("num_beams", [1, 3])
def test_bound_generation_gives_the_plain_tokens_and_logits(models, num_beams):
    bound, plain = (
        models[key].generate(TEXTS, max_new_tokens=8, num_beams=num_beams, output_logits=True)
        for key in ("on", "off")
    )
    for ours, theirs in zip(bound, plain):
        np.testing.assert_array_equal(ours.token_ids, theirs.token_ids)
        np.testing.assert_array_equal(ours.step_logits, theirs.step_logits)
        assert ours.score == theirs.score


def test_bound_teacher_forcing_and_encoder_match_the_plain_path(models):
    targets = ["Das Haus ist wunderbar.", "b", "Ich hasse das."]
    for use_cache in (False, True):
        bound = models["on"].logits(TEXTS, targets, use_cache=use_cache).logits
        plain = models["off"].logits(TEXTS, targets, use_cache=use_cache).logits
        np.testing.assert_array_equal(bound, plain)
    np.testing.assert_array_equal(
        models["on"].encode(TEXTS).last_hidden_state, models["off"].encode(TEXTS).last_hidden_state
    )


def test_the_bound_cache_stays_in_ort_values_between_steps(models):
    lm = models["on"]
    batch = lm.tokenizer.encode(TEXTS)
    encoder = lm.graphs.encode(batch.input_ids, batch.attention_mask)
    assert isinstance(encoder.hidden, ort.OrtValue)
    start = np.zeros((len(TEXTS), 1), dtype=np.int64)
    logits, cache = lm.graphs.first_step(start, encoder)
    logits, cache = lm.graphs.next_step(np.argmax(logits, axis=-1), cache, encoder.mask)
    assert isinstance(logits, np.ndarray) and logits.shape[:2] == (len(TEXTS), 1)
    assert all(isinstance(value, ort.OrtValue) for value in cache.feeds().values())


def test_an_unknown_io_binding_setting_lists_the_choices(t5_v1_1):
    with pytest.raises(InputError, match="auto, on, off"):
        Seq2SeqLM.load(t5_v1_1.artifact, options=DEFAULT_OPTIONS.with_overrides(io_binding="gpu"))
