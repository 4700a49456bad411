"""The `tokenizers`-only path gives the ids AutoTokenizer gives."""

from __future__ import annotations

import numpy as np
import pytest
import transformers

from engine import Classifier
from export.check_set import check_texts

CORPUS = [
    *check_texts(512),
    "HELLO World, ÀÉÎÕÜ ßtraße",
    "中文分词测试，日本語のテキスト、한국어 문장",
    "emoji 😀👍🏽 and symbols ∑∫√ and tabs\tand\nnewlines",
    "   leading and trailing spaces   ",
    "don't won't can't it's y'all",
]


def test_ids_and_masks_identical_to_autotokenizer(any_classifier):
    ours = Classifier.load(any_classifier.artifact).tokenizer
    theirs = transformers.AutoTokenizer.from_pretrained(any_classifier.checkpoint)
    for text in CORPUS:  # one at a time: no padding
        expected = theirs(text, truncation=True, max_length=512)
        encoded = ours.encode([text])
        assert encoded.input_ids[0].tolist() == expected["input_ids"], text
        assert encoded.attention_mask[0].tolist() == expected["attention_mask"], text


@pytest.mark.parametrize("batch", [CORPUS[:3], CORPUS, CORPUS[-4:]], ids=["short", "all", "misc"])
def test_padded_batch_identical_to_autotokenizer(any_classifier, batch):
    ours = Classifier.load(any_classifier.artifact).tokenizer.encode(batch)
    theirs = transformers.AutoTokenizer.from_pretrained(any_classifier.checkpoint)(
        batch, padding=True, truncation=True, max_length=512, return_tensors="np"
    )
    np.testing.assert_array_equal(ours.input_ids, theirs["input_ids"])
    np.testing.assert_array_equal(ours.attention_mask, theirs["attention_mask"])


# --- the bounded reader a server uses (TextTokenizer.bounded) ---
_WORDS = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "naïve", "café", "東京", "ÀÉÎ",
    "don't", "x,", "y.", "z!", "123",
]
_RNG = np.random.default_rng(0)
# Long texts: a truncating encode of the cut prefix must give the ids of the whole text.
READABLE = {
    "prose": " ".join(_RNG.choice(_WORDS, 30_000)),
    # 13,000 characters of prose: the 512-token cap (16,384) cuts inside the run after it.
    "prose, then a run without spaces": "hello world, " * 1_000 + "z" * 100_000,
    "newlines and tabs": "line one\n\tline two  \r\n" * 6_000,
}
# Long runs without word boundaries past the cap: refused (no cut could be shown safe).
UNREADABLE = {"one character": "a" * 100_000, "two characters": "ab" * 50_000,
              "mostly spaces": "a" + " " * 100_000 + "b c d"}


def _tokenizers(any_classifier, t5_v1_1):
    from engine.tasks.text2text import Seq2SeqLM

    yield Classifier.load(any_classifier.artifact).tokenizer
    yield Seq2SeqLM.load(t5_v1_1.artifact).tokenizer


@pytest.mark.parametrize("bound", [16, 512])
def test_bounded_cut_keeps_the_ids_truncation_keeps(any_classifier, t5_v1_1, bound):
    from engine.tokenization import char_cap

    for tokenizer in _tokenizers(any_classifier, t5_v1_1):
        truncating = tokenizer.truncating_at(bound)
        for name, text in READABLE.items():
            (measured,) = truncating.bounded([text])
            assert measured.cut and measured.readable and measured.over, name
            assert len(measured.text) == char_cap(bound) < len(text)
            np.testing.assert_array_equal(truncating.encode([measured.text]).input_ids,
                                          truncating.encode([text]).input_ids, err_msg=name)
            # A pair whose first half is cut keeps its longest-first truncation too.
            pair = (text, "a short second text")
            (measured,) = truncating.bounded([pair])
            assert measured.readable and measured.text[1] == pair[1]
            np.testing.assert_array_equal(truncating.encode([measured.text]).input_ids,
                                          truncating.encode([pair]).input_ids, err_msg=name)
        for name, text in UNREADABLE.items():
            (measured,) = truncating.bounded([text])
            assert measured.cut and not measured.readable, name
        (both,) = truncating.bounded([(READABLE["prose"], READABLE["prose"])])
        assert not both.readable  # which half is longer (gets the odd token) is unknown


def test_bounded_rows_are_what_truncation_gives_and_say_which_were_cut(distilbert):
    """Within the character cap each input is tokenized once, truncating at the bound: its row
    is the engine's encoding, and the count of one within the bound is exact."""
    tokenizer = Classifier.load(distilbert.artifact).tokenizer
    texts = [*CORPUS[:6], "word " * 600, ("a premise", "a hypothesis"), ("word " * 600, "b")]
    measured = tokenizer.bounded(texts)
    whole = [tokenizer.count(text) for text in texts]
    assert [m.over for m in measured] == [count > 512 for count in whole]
    assert [m.tokens for m in measured] == [min(count, 512) for count in whole]
    assert [m.text for m in measured] == texts and not any(m.cut for m in measured)
    for text, bounded in zip(texts, measured):
        np.testing.assert_array_equal(bounded.row.ids, tokenizer.encode([text]).input_ids[0])
