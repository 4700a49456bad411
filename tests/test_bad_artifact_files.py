"""Broken artifacts (manifests and configs of the wrong shape, stale staging, broken variant
files, paths that are files) and absurd settings get our own error naming the problem."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import replace_file_and_record, rewrite_manifest

import engine
from engine import (
    ArtifactError,
    ArtifactNotFoundError,
    Classifier,
    CorruptArtifactError,
    HashMismatchError,
    InputError,
)
from engine.artifact import file_record
from engine.cpu import current_cpu
from engine.options import RuntimeOptions, max_threads
from export.exporter import ExportSettings, export_model
from onnx_engine.cli import main as cli_main


def _load_with_manifest_change(folder: Path, change) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data = change(data)
    path.write_text(json.dumps(data))
    Classifier.load(folder)


def _drop(key):
    return lambda data: {k: v for k, v in data.items() if k != key}


def _set(key, value):
    return lambda data: {**data, key: value}


# transformers has no manifest; a hand-edited or truncated one must fail naming the field, never
# with AttributeError/KeyError from deep inside the loader.
BAD_MANIFESTS = {
    "a JSON list": (lambda data: [], "must be a JSON object"),
    "null": (lambda data: None, "must be a JSON object"),
    "files as a list": (_set("files", ["model.onnx"]), "field 'files' must be a JSON object"),
    "empty tokenizer section": (_set("tokenizer", {}), "tokenizer.pad_id"),
    "no task": (_drop("task"), "required field 'task'"),
    "graphs empty": (_set("graphs", {}), "graphs' is empty"),
    "graph without inputs": (
        lambda data: {**data, "graphs": {"model": {"file": "model.onnx", "outputs": []}}},
        "graphs.model.inputs",
    ),
    "max_length a string": (_set("max_length", "512"), "max_length"),
    "size a string": (
        lambda data: {
            **data, "files": {**data["files"], "model.onnx": {"sha256": "0", "size": "1"}}
        },
        "files.model.onnx.size",
    ),
    "format_version 2": (_set("format_version", 2), "format_version"),
    "variants a list": (_set("variants", ["int8"]), "field 'variants'"),
    "variant without graphs": (_set("variants", {"int8": {"passed": True}}), r"variants\['int8'\]"),
}


@pytest.mark.parametrize("change, message", list(BAD_MANIFESTS.values()), ids=list(BAD_MANIFESTS))
def test_manifest_of_the_wrong_shape_is_corrupt_naming_the_field(
    distilbert, copy_artifact, change, message
):
    folder = copy_artifact(distilbert.artifact)
    with pytest.raises(CorruptArtifactError, match=message) as error:
        _load_with_manifest_change(folder, change)
    assert "Re-export" in str(error.value)


def test_manifest_that_is_not_utf8(distilbert, copy_artifact):
    folder = copy_artifact(distilbert.artifact)
    (folder / "manifest.json").write_bytes(b'{"task": "\xff\xfe"}')
    with pytest.raises(CorruptArtifactError, match="not valid JSON"):
        Classifier.load(folder)


@pytest.mark.parametrize(
    "config, message",
    [
        ([], "must hold a JSON object"),
        ({"model_type": "distilbert"}, "'id2label' must map"),
        ({"id2label": {"0": "NEG", "2": "POS"}}, "'id2label' must map"),
        ({"id2label": ["NEG", "POS"]}, "'id2label' must map"),
    ],
    ids=["list", "no id2label", "ids with a gap", "id2label a list"],
)
def test_config_of_the_wrong_shape_is_corrupt(distilbert, copy_artifact, config, message):
    # transformers: AutoConfig would fill LABEL_i names silently; the artifact promised its own.
    folder = copy_artifact(distilbert.artifact)
    replace_file_and_record(folder, "config.json", json.dumps(config).encode())
    with pytest.raises(CorruptArtifactError, match=message):
        Classifier.load(folder)


@pytest.mark.parametrize("parity", [{}, {"passed": False}, {"passed": "yes"}])
def test_an_artifact_never_checked_against_pytorch_is_refused(
    distilbert, copy_artifact, parity
):
    # What an export killed between writing files and its parity check leaves behind.
    folder = copy_artifact(distilbert.artifact)
    rewrite_manifest(folder, parity=parity)
    with pytest.raises(CorruptArtifactError, match="never checked against PyTorch"):
        engine.load(folder)
    with pytest.raises(CorruptArtifactError, match="export MODEL"):
        Classifier.load(folder)


def test_stale_staging_folder_of_a_killed_export_is_removed_by_the_next_export(
    distilbert, tmp_path
):
    output = tmp_path / "sst2"
    dead_pid = 2**22 + 12345  # above Linux's default pid_max: no such process
    stale = tmp_path / f".sst2.staging-{dead_pid}-abcd"
    legacy = tmp_path / ".sst2.staging-xyz123"  # name format of earlier versions
    for folder in (stale, legacy):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"\0" * 1000)
    mine = tmp_path / f".sst2.staging-{os.getpid()}-live"  # a concurrent export's, alive
    mine.mkdir()
    export_model(ExportSettings(model=str(distilbert.checkpoint), output=output, quiet=True))
    assert not stale.exists() and not legacy.exists() and mine.exists()
    assert Classifier.load(output).variant == "fp32"


def test_concurrent_calls_on_one_classifier_get_their_own_answers(distilbert):
    # transformers pipelines are not thread-safe; ORT sessions and our tokenizer are, so a server
    # may share one Classifier between threads. Each thread must get exactly its own results.
    classifier = Classifier.load(distilbert.artifact)
    texts = [f"sentence number {index} " + "word " * (index % 7) for index in range(24)]
    expected = classifier.logits(texts, batch_size=1)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda text: classifier.logits(text)[0], texts * 3))
    np.testing.assert_allclose(np.stack(results), np.concatenate([expected] * 3), atol=1e-6)


# --- Broken variants, artifact paths that are files, absurd thread counts (issue 22, item 15) ---


def _with_int8(folder: Path, int8_ms: float, fp32_ms: float) -> Path:
    """Give ``folder`` an 'int8' variant (a copy of the fp32 graph, gated as passed) and CPU
    timings taken on this CPU, so ``auto`` picks the faster one without re-timing at load."""
    shutil.copyfile(folder / "model.onnx", folder / "model.int8.onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    record = file_record(folder / "model.int8.onnx")
    manifest["files"]["model.int8.onnx"] = {"sha256": record.sha256, "size": record.size}

    def timed(ms):
        return {"cpu": {"latency_ms": {"b1": ms}, "runs": 1, "cpu": current_cpu().to_dict()}}

    manifest.setdefault("variants", {})["fp32"] = {"speeds": timed(fp32_ms)}
    manifest["variants"]["int8"] = {"graphs": {"model": "model.int8.onnx"}, "target": "cpu",
                                    "passed": True, "speeds": timed(int8_ms)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / "model.int8.onnx"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize("int8_ms, damage", [
    (20.0, _truncate),  # auto would not pick it anyway (slower)
    (2.0, _truncate),  # auto would pick it: the next fastest loads instead
    (2.0, Path.unlink),
], ids=["truncated-unpicked", "truncated-fastest", "missing-fastest"])
def test_a_broken_file_of_an_unused_variant_is_reported_not_fatal(
    distilbert, copy_artifact, caplog, int8_ms, damage
):
    folder = copy_artifact(distilbert.artifact)
    int8_file = _with_int8(folder, int8_ms=int8_ms, fp32_ms=10.0)
    assert Classifier.load(folder).variant == ("int8" if int8_ms < 10 else "fp32")
    damage(int8_file)
    with caplog.at_level("WARNING"):
        classifier = Classifier.load(folder)
    assert classifier.variant == "fp32"
    reason = classifier.skipped_variants["int8"]
    assert "model.int8.onnx" in reason and f"onnx-engine optimize {folder} --int8" in reason
    assert "truncated" in reason if damage is _truncate else "is missing" in reason
    assert "variant 'int8' is left out of this load" in caplog.text
    assert "model.int8.onnx" in caplog.text
    assert Classifier.load(folder, variant="fp32").skipped_variants.keys() == {"int8"}
    with pytest.raises(ArtifactError, match=r"'int8' variant cannot be loaded: .*model\.int8\.onnx"
                                            r".*onnx-engine optimize .* --int8"):
        Classifier.load(folder, variant="int8")


def test_a_modified_file_of_the_variant_loaded_is_an_error_naming_it_and_the_fix(
    distilbert, copy_artifact
):
    folder = copy_artifact(distilbert.artifact)
    int8_file = _with_int8(folder, int8_ms=2.0, fp32_ms=10.0)
    data = bytearray(int8_file.read_bytes())
    data[-100] ^= 0xFF  # same size: only hashing sees it, and only files in use are hashed
    int8_file.write_bytes(bytes(data))
    assert Classifier.load(folder, variant="fp32").skipped_variants == {}
    with pytest.raises(HashMismatchError, match=r"model\.int8\.onnx' was modified.*'int8' "
                                                r"variant: re-make it with 'onnx-engine optimize"):
        Classifier.load(folder)  # auto picks int8


def test_a_broken_exported_graph_is_still_an_error(distilbert, copy_artifact):
    # Every variant's gate and the fp32 fallback rest on the export's own files.
    folder = copy_artifact(distilbert.artifact)
    _with_int8(folder, int8_ms=2.0, fp32_ms=10.0)
    _truncate(folder / "model.onnx")
    with pytest.raises(HashMismatchError, match=r"model\.onnx' has 1000 bytes.*Re-export"):
        Classifier.load(folder, variant="int8")


@pytest.mark.parametrize("name, hint", [
    ("model.onnx", "give the artifact folder that holds it"),
    ("manifest.json", "give the artifact folder that holds it"),
    (None, "give the folder that 'onnx-engine export MODEL FOLDER' wrote"),
])
def test_an_artifact_path_that_is_a_file_says_so(distilbert, tmp_path, name, hint):
    path = distilbert.artifact / name if name else tmp_path / "notes.txt"
    if name is None:
        path.write_text("hello")
    with pytest.raises(ArtifactNotFoundError,
                       match=f"is a file, but an artifact is a folder: {hint}"):
        engine.load(path)


@pytest.mark.parametrize("threads", [4096, max_threads() + 1])
def test_absurd_thread_counts_are_refused_naming_the_bound(distilbert, threads, capsys):
    bound = f"more than {max_threads()}, 4 per CPU"
    with pytest.raises(InputError, match=f"threads={threads} is {bound}"):
        Classifier.load(distilbert.artifact, threads=threads)
    assert cli_main(["classify", str(distilbert.artifact), "x", "--threads", str(threads)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --threads {threads} is") and bound in err and "\n" not in err
    # the bound itself is fine
    assert RuntimeOptions(threads=max_threads()).threads == max_threads()
