"""The `tokenizers`-only path gives the ids AutoTokenizer gives."""

from __future__ import annotations

import numpy as np
import pytest
import transformers

from engine import Classifier
from export.check_set import check_texts

CORPUS = check_texts(512) + [
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
