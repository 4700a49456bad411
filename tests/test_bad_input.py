"""Every kind of bad input gets our own error naming the problem, never an ORT traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import (
    ArtifactNotFoundError,
    Classifier,
    CorruptArtifactError,
    HashMismatchError,
    InputError,
    OnnxEngineError,
    TaskMismatchError,
)
from engine.artifact import file_record


def _rewrite_manifest(folder: Path, **changes) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def _replace_file_and_record(folder: Path, name: str, content: bytes) -> None:
    """Corrupt a file as if it had been exported that way (manifest hash updated too)."""
    (folder / name).write_bytes(content)
    record = file_record(folder / name)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": record.sha256, "size": record.size}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_missing_folder(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="does not exist"):
        Classifier.load(tmp_path / "nowhere")


def test_folder_without_manifest(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="manifest.json"):
        Classifier.load(tmp_path)


def test_corrupt_manifest(distilbert, copy_artifact):
    folder = copy_artifact(distilbert.artifact)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="manifest.json"):
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
    _replace_file_and_record(folder, name, b"\x00garbage" * 100)
    with pytest.raises(CorruptArtifactError, match=name):
        Classifier.load(folder)


def test_modified_file_fails_the_hash_check(distilbert, copy_artifact):
    folder = copy_artifact(distilbert.artifact)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-100] ^= 0xFF  # same size, different content
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(HashMismatchError, match="modified after export"):
        Classifier.load(folder)


def test_truncated_file_fails_the_size_check(distilbert, copy_artifact):
    folder = copy_artifact(distilbert.artifact)
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(HashMismatchError, match="truncated"):
        Classifier.load(folder, options=None)


def test_manifest_of_another_task(distilbert, copy_artifact):
    folder = copy_artifact(distilbert.artifact)
    _rewrite_manifest(folder, task="text2text-generation")
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
