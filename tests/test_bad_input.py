"""Every kind of bad input gets our own error naming the problem, never an ORT traceback."""

from __future__ import annotations

import pytest
from helpers import assert_same_results, hf_pipeline, replace_file_and_record, rewrite_manifest

from engine import (
    ArtifactNotFoundError,
    Classifier,
    CorruptArtifactError,
    HashMismatchError,
    InputError,
    OnnxEngineError,
    TaskMismatchError,
)


def test_missing_folder(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="does not exist"):
        Classifier.load(tmp_path / "nowhere")


def test_folder_without_manifest(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match=r"manifest\.json"):
        Classifier.load(tmp_path)


def test_corrupt_manifest(distilbert, copy_artifact):
    folder = copy_artifact(distilbert.artifact)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptArtifactError, match=r"manifest\.json"):
        Classifier.load(folder)


@pytest.mark.parametrize("name", ["model.onnx", "tokenizer.json"])
def test_missing_file(distilbert, copy_artifact, name):
    folder = copy_artifact(distilbert.artifact)
    (folder / name).unlink()
    with pytest.raises(ArtifactNotFoundError, match=name):
        Classifier.load(folder)


@pytest.mark.parametrize("name", ["model.onnx", "tokenizer.json"])
def test_corrupt_file_is_named(distilbert, copy_artifact, name):
    folder = copy_artifact(distilbert.artifact)
    replace_file_and_record(folder, name, b"\x00garbage" * 100)
    with pytest.raises(CorruptArtifactError, match=name):
        Classifier.load(folder)


def test_modified_file_fails_the_hash_check(distilbert, copy_artifact):
    folder = copy_artifact(distilbert.artifact)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-100] ^= 0xFF  # same size, different content
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(HashMismatchError, match="modified after it was written"):
        Classifier.load(folder)


def test_truncated_file_fails_the_size_check(distilbert, copy_artifact):
    folder = copy_artifact(distilbert.artifact)
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(HashMismatchError, match="truncated"):
        Classifier.load(folder, options=None)


def test_manifest_of_another_task(distilbert, copy_artifact):
    folder = copy_artifact(distilbert.artifact)
    rewrite_manifest(folder, task="text2text-generation")
    with pytest.raises(TaskMismatchError, match="text2text-generation"):
        Classifier.load(folder)


@pytest.mark.parametrize(
    "texts, message",
    [
        ([], "empty list"),
        (None, "NoneType"),
        (42, "int"),
        (["fine", 3], "#1 is int"),
        ([b"bytes"], "bytes"),
        ({"txt": "a"}, "dict"),
        ({"text": "a", "text_pair": 3}, "dict"),
    ],
)
def test_wrong_input_types(distilbert, texts, message):
    classifier = Classifier.load(distilbert.artifact)
    with pytest.raises(InputError, match=message):
        classifier(texts)
    with pytest.raises(InputError):
        classifier.logits(texts)


@pytest.mark.parametrize("kwargs", [{"top_k": 0}, {"top_k": -1}, {"top_k": "2"},
                                    {"batch_size": 0}, {"function_to_apply": "relu"}])
def test_wrong_arguments(distilbert, kwargs):
    with pytest.raises(InputError):
        Classifier.load(distilbert.artifact)("text", **kwargs)


def test_input_error_is_also_a_value_error(distilbert):
    with pytest.raises(ValueError):
        Classifier.load(distilbert.artifact)([])


def test_empty_and_overlong_texts_are_valid(distilbert):
    classifier = Classifier.load(distilbert.artifact)
    results = classifier(["", "word " * 5000])
    assert [set(result) for result in results] == [{"label", "score"}] * 2


def test_all_errors_share_one_base():
    for error_type in (ArtifactNotFoundError, CorruptArtifactError, HashMismatchError,
                       InputError, TaskMismatchError):
        assert issubclass(error_type, OnnxEngineError)


# --- The corpus: odd inputs that must equal transformers, bad ones that must be our errors ---
# Each case names what transformers does with it. "Same as transformers" cases compare with
# `pipeline("text-classification")(text, truncation=True)` on the same checkpoint.

ODD_TEXTS = {
    # transformers: tokenizes each to [CLS] [SEP] (plus what survives normalization) and scores it
    "whitespace-only": "   \t \n ",
    "control characters": "a\x00b\x07c\x1b[0m",
    "zero-width and BOM": "\ufeffzero\u200bwidth\u200djoiner",
    "emoji and CJK": "東京 🚀🔥 café naïve",
    "right-to-left": "שלום עולם مرحبا",
    "combining marks": "e\u0301e\u0301 n\u0303",
    "special-token strings": "[CLS] [SEP] [PAD] [MASK] hello",
    "only punctuation": "?!...;;;---",
    "very long word": "a" * 3000,
    "5000 words (truncated at 512 tokens)": "word " * 5000,
    "newlines and tabs": "line one\nline two\r\n\tindented",
    "digits": "3.14159 2,718 1e-10 0x1F",
}


@pytest.mark.parametrize("text", list(ODD_TEXTS.values()), ids=list(ODD_TEXTS))
def test_odd_texts_give_what_the_pipeline_gives(distilbert, text):
    ours = Classifier.load(distilbert.artifact)([text], top_k=None)
    theirs = hf_pipeline(distilbert.checkpoint)([text], top_k=None, truncation=True)
    assert_same_results(ours, theirs, atol=1e-5)


# (texts, kwargs, our error message, what transformers 4.57's pipeline does: observed)
BAD_CALLS = {
    "lone surrogate": (
        ["fine", "bad \ud800 char"], {}, "#1 is not valid Unicode: character 4",
        "TypeError: TextEncodeInput must be Union[...] (from tokenizers)",
    ),
    "surrogate in a pair": (
        {"text": "a", "text_pair": "\udcff"}, {}, "text_pair is not valid",
        "TypeError: TextInputSequence must be str",
    ),
    "top_k float": ("text", {"top_k": 1.5}, "top_k", "returns one dict, as if top_k were unset"),
    "top_k bool": ("text", {"top_k": True}, "top_k", "treats True as top_k=1"),
    "batch_size -3": ("text", {"batch_size": -3}, "batch_size", "ignores it for one text"),
    "batch_size float": ("text", {"batch_size": 2.0}, "batch_size", "ignores it for one text"),
    "function_to_apply relu": (
        "text", {"function_to_apply": "relu"}, "function_to_apply", "KeyError: 'RELU'"
    ),
    "empty tuple": ((), {}, "empty list", "IndexError: list index out of range"),
    "nested list": ([["a", "b"]], {}, "#0 is list", "ValueError: invalid inputs (text pairs?)"),
    "float text": ([1.5], {}, "#0 is float", "ValueError: text input must be of type `str`"),
    "None": (None, {}, "NoneType", "ValueError: You need to specify either `text`"),
    "bytes": ([b"bytes"], {}, "bytes", "ValueError: text input must be of type `str`"),
}


@pytest.mark.parametrize(
    "texts, kwargs, message, transformers_does", list(BAD_CALLS.values()), ids=list(BAD_CALLS)
)
def test_bad_calls_raise_input_error_naming_the_input(
    distilbert, texts, kwargs, message, transformers_does
):
    with pytest.raises(InputError, match=message):
        Classifier.load(distilbert.artifact)(texts, **kwargs)


@pytest.mark.parametrize("function_to_apply", ["None", "SIGMOID", "Softmax"])
def test_function_to_apply_is_case_insensitive_like_the_pipeline(distilbert, function_to_apply):
    # transformers upper-cases it (ClassificationFunction[value.upper()]).
    ours = Classifier.load(distilbert.artifact)("text", function_to_apply=function_to_apply)
    theirs = hf_pipeline(distilbert.checkpoint)("text", function_to_apply=function_to_apply)
    assert_same_results(ours, theirs, atol=1e-5)
