"""Teacher-forced logits, scores and encoder states of Seq2SeqLM vs PyTorch; the CLI commands.

Tolerance 1e-4 (the export parity bound; measured below 2e-5 on these tiny models).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import SUM_RTOL

from engine import InputError, Seq2SeqLM
from export.check_set import filler_text
from onnx_engine.cli import main

ATOL = 1e-4
SOURCES = [
    "translate English to German: The cat sat on the mat.",
    "a",
    "Café naïve résumé: 東京タワーは高い。 🚀",
    filler_text(600),  # over 512 tokens: used whole, as transformers does
]
TARGETS = [
    "Die Katze saß auf der Matte.",
    "b",
    "Le chat est assis sur le tapis, mais il pleut.",
    "Das Haus ist wunderbar.",
]


def test_encoder_states_match_pytorch(any_t5):
    ours = Seq2SeqLM.load(any_t5.artifact).encode(SOURCES)
    hidden, mask = any_t5.reference.encoder_states(SOURCES)
    np.testing.assert_array_equal(ours.attention_mask, mask)
    valid = mask == 1
    np.testing.assert_allclose(ours.last_hidden_state[valid], hidden[valid], atol=ATOL, rtol=0)


@pytest.mark.parametrize("use_cache", [False, True], ids=["one-call", "kv-cache"])
def test_teacher_forced_logits_match_pytorch(any_t5, use_cache):
    ours = Seq2SeqLM.load(any_t5.artifact).logits(SOURCES, TARGETS, use_cache=use_cache)
    expected, mask = any_t5.reference.target_logits(SOURCES, TARGETS)
    labels = any_t5.reference.tokenizer(text_target=TARGETS, padding=True)["input_ids"]
    np.testing.assert_array_equal(ours.target_ids, labels)  # </s> appended, pad after it
    np.testing.assert_array_equal(ours.mask, mask)
    assert ours.logits.shape == expected.shape
    valid = mask == 1
    np.testing.assert_allclose(ours.logits[valid], expected[valid], atol=ATOL, rtol=0)


def test_scores_match_pytorch_loss(any_t5):
    lm = Seq2SeqLM.load(any_t5.artifact)
    reference = any_t5.reference
    expected_sum, expected_mean = [], []
    for source, target in zip(SOURCES, TARGETS):
        batch = reference.tokenizer(source, return_tensors="pt")
        labels = reference.tokenizer(text_target=target, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            loss = float(reference.model(**batch, labels=labels).loss)  # mean token NLL
        expected_mean.append(-loss)
        expected_sum.append(-loss * labels.shape[1])
    # Sums of log-probabilities: relative tolerance, as their rounding grows with the sum.
    np.testing.assert_allclose(lm.score(SOURCES, TARGETS), expected_sum, atol=ATOL, rtol=SUM_RTOL)
    np.testing.assert_allclose(
        lm.score(SOURCES, TARGETS, reduction="mean", batch_size=3), expected_mean, atol=ATOL,
        rtol=SUM_RTOL,
    )


@pytest.mark.parametrize(
    "sources, targets, message",
    [
        (["one", "two"], ["only one"], "one target per source"),
    ],
)
def test_bad_logits_input_raises_input_error(t5_v1_1, sources, targets, message):
    lm = Seq2SeqLM.load(t5_v1_1.artifact)
    with pytest.raises(InputError, match=message):
        lm.logits(sources, targets)
    with pytest.raises(InputError, match=message):
        lm.score(sources, targets)


def test_score_rejects_unknown_reduction(t5_v1_1):
    with pytest.raises(InputError, match="reduction"):
        Seq2SeqLM.load(t5_v1_1.artifact).score("a", "b", reduction="max")


def test_cli_generate_prints_json_lines(t5_v1_1, capsys):
    texts = SOURCES[:2]
    code = main(["generate", str(t5_v1_1.artifact), *texts, "--max-new-tokens", "6",
                 "--num-beams", "2", "--scores"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = Seq2SeqLM.load(t5_v1_1.artifact).generate(
        texts, max_new_tokens=6, num_beams=2, output_scores=True
    )
    assert [line["source"] for line in lines] == texts
    assert [line["text"] for line in lines] == [sequence.text for sequence in expected]
    assert [line["token_ids"] for line in lines] == [s.token_ids.tolist() for s in expected]
    for line, sequence in zip(lines, expected):
        assert line["score"] == pytest.approx(sequence.score)
        np.testing.assert_allclose(line["token_logprobs"], sequence.token_logprobs, rtol=1e-6)


def test_cli_logits_lists_top_k_and_saves_the_array(t5_v1_1, tmp_path, capsys):
    saved = tmp_path / "logits.npy"
    code = main(["logits", str(t5_v1_1.artifact), "--source", SOURCES[0], "--target", TARGETS[0],
                 "--top-k", "3", "--save", str(saved)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    forced = Seq2SeqLM.load(t5_v1_1.artifact).logits(SOURCES[0], TARGETS[0])
    logits = np.load(saved)
    assert logits.shape == forced.logits[0].shape and len(lines) == logits.shape[0]
    np.testing.assert_array_equal(logits, forced.logits[0])
    for position, line in enumerate(lines):
        assert line["target"]["id"] == forced.target_ids[0, position]
        assert [entry["id"] for entry in line["top_k"]] == list(np.argsort(-logits[position])[:3])
        probabilities = [entry["prob"] for entry in line["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert lines[-1]["target"]["token"] == "</s>"


def test_cli_generate_reports_bad_input_without_traceback(t5_v1_1, capsys):
    assert main(["generate", str(t5_v1_1.artifact), "fine", "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens must be a positive integer" in capsys.readouterr().err
