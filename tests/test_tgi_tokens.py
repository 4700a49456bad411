"""TGI's token objects: each token's text is what it adds, so the non-special texts of a sequence
concatenate to its decoded text, whatever the tokenizer does with spaces and multi-byte
characters (exact string equality)."""

from __future__ import annotations

import pytest

from onnx_engine.serving.tgi_tokens import TokenVocabulary, answer_details, spelled

TEXTS = ["Café naïve résumé 東京タワー", "hello   world  x", "emoji 🙂 ok", "a"]


class ByteTokenizer:
    """Token i is byte i: a character of several bytes spans several tokens, as with a
    byte-fallback vocabulary; decoding a cut character gives U+FFFD until its bytes are there."""

    def decode(self, rows, skip_special_tokens: bool = True):
        return [bytes(row).decode("utf-8", errors="replace") for row in rows]

    def token_to_text(self, token_id: int) -> str:
        return f"<{token_id}>"


@pytest.mark.parametrize("text", TEXTS)
def test_token_texts_concatenate_to_the_decoded_sequence(serve_models, text):
    lm = serve_models["t5"]
    vocabulary = TokenVocabulary.of(lm.tokenizer, lm.settings.eos_token_ids)
    ids = lm.tokenizer.encode([text]).input_ids[0].tolist()  # ends with EOS
    ids = [*ids[:1], 278, *ids[1:]]  # a sentinel (special) inside the sequence
    tokens = spelled(vocabulary, ids, [-0.5] * len(ids))
    assert "".join(t["text"] for t in tokens if not t["special"]) == vocabulary.text(ids) == (
        lm.tokenizer.decode([ids])[0])
    assert {0, 1, 2, 278} <= vocabulary.special_ids  # pad, EOS, unk, a sentinel
    assert [t["special"] for t in tokens] == [i in vocabulary.special_ids for i in ids]
    assert tokens[-1]["text"] == "</s>" and tokens[1]["text"] == "<extra_id_0>"
    details = answer_details(vocabulary, ids, [-0.5] * len(ids))
    assert (details["finish_reason"], details["generated_tokens"]) == ("eos_token", len(ids))


def test_a_character_cut_between_tokens_comes_whole_with_its_last_byte():
    vocabulary = TokenVocabulary(ByteTokenizer(), frozenset({0}), frozenset({0}))
    ids = list("aé東🙂".encode())
    texts = [t["text"] for t in spelled(vocabulary, ids, [0.0] * len(ids))]
    assert texts == ["a", "", "é", "", "", "東", "", "", "", "🙂"]
    cut = ids[:2]  # a sequence that stops inside a character flushes what it has
    assert "".join(t["text"] for t in spelled(vocabulary, cut, [0.0, 0.0])) == "a\ufffd"
    assert vocabulary.finish_reason(cut) == "length"
