"""`onnx-engine optimize` when the disk says no: an I/O failure is an error (exit 2, one line
naming the path and the errno's meaning), never a gate verdict, and the artifact is left byte for
byte as it was, with no partial or temporary file."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import export.variants.optimize
from engine.artifact import Artifact
from engine.manifest import MANIFEST_NAME, ArtifactManifest
from engine.variants.records import FUSED
from export.tasks.classification import ClassifierChecker
from export.variants.files import PREVIOUS_PREFIX, STAGING_PREFIX, recover_interrupted_commit
from onnx_engine.cli import main

FAST = ("--timing-runs", "1", "-q")
NO_SPACE = "No space left on device (ENOSPC)"


@pytest.fixture(scope="module")
def fused_artifact(distilbert, tmp_path_factory) -> Path:
    """The tiny DistilBERT artifact with a passing fused variant, shared read-only."""
    artifact = tmp_path_factory.mktemp("fused") / "artifact"
    shutil.copytree(distilbert.artifact, artifact)
    assert main(["optimize", str(artifact), "--fusion", *FAST]) == 0
    return artifact


@pytest.fixture
def artifact(fused_artifact, tmp_path) -> Path:
    copy = tmp_path / "artifact"
    shutil.copytree(fused_artifact, copy)
    return copy


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _fails_with_one_line(capsys, argv: list[str], *parts: str) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert all(part in lines[0] for part in parts), lines[0]
    return lines[0]


def _half_written(error_errno: int):
    """A graph writer that writes part of the file, then fails as the disk would."""

    def build(source: Path, target: Path, config) -> dict:
        target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        raise OSError(error_errno, os.strerror(error_errno))

    return build


def test_a_full_disk_while_writing_a_variant_is_an_error_and_changes_nothing(
    artifact, monkeypatch, capsys
):
    before = _contents(artifact)
    monkeypatch.setattr(export.variants.optimize, "fuse_graph", _half_written(errno.ENOSPC))
    line = _fails_with_one_line(capsys, ["optimize", str(artifact), "--fusion", *FAST],
                                NO_SPACE, str(artifact), "left as it was")
    assert "FAILED" not in line and "gate" not in line
    assert _contents(artifact) == before  # no partial model.fused.onnx, manifest untouched
    assert ArtifactManifest.read(artifact).variants[FUSED].passed


def test_a_full_disk_when_the_manifest_is_written_restores_the_replaced_variant_file(
    artifact, monkeypatch, capsys
):
    before = _contents(artifact)
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if Path(target).name == MANIFEST_NAME:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    _fails_with_one_line(capsys, ["optimize", str(artifact), "--fusion", *FAST], NO_SPACE)
    monkeypatch.undo()
    # The new fused graph had been renamed into place: it is rolled back to the old bytes.
    assert _contents(artifact) == before


def test_a_read_only_folder_is_refused_before_the_reference_is_loaded(
    artifact, monkeypatch, capsys
):
    def never(*_args, **_kwargs):
        raise AssertionError("the PyTorch reference must not be loaded for a read-only artifact")

    monkeypatch.setattr(ClassifierChecker, "load_reference", never)
    before = _contents(artifact)
    if os.geteuid() == 0:
        # chmod does not stop root from writing: fail file creation in the folder as the
        # kernel would for a read-only folder.
        real_mkstemp = tempfile.mkstemp

        def mkstemp(*args, **kwargs):
            if Path(kwargs.get("dir", "")) == artifact:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(artifact))
            return real_mkstemp(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    else:
        artifact.chmod(0o555)
    try:
        _fails_with_one_line(capsys, ["optimize", str(artifact), "--fusion", *FAST],
                             f"Cannot write '{artifact}': Permission denied (EACCES)")
    finally:
        artifact.chmod(0o755)
    assert _contents(artifact) == before


def test_a_build_that_fails_otherwise_is_recorded_and_leaves_no_partial_file(
    artifact, monkeypatch, capsys
):
    def broken(source: Path, target: Path, config) -> dict:
        target.write_bytes(b"half a graph")
        raise RuntimeError("optimizer exploded")

    monkeypatch.setattr(export.variants.optimize, "fuse_graph", broken)
    assert main(["optimize", str(artifact), "--fusion", *FAST]) == 1
    record = ArtifactManifest.read(artifact).variants[FUSED]
    assert not record.passed
    assert record.reason == "could not be built: RuntimeError: optimizer exploded"
    assert not (artifact / record.graphs["model"]).exists()
    assert record.graphs["model"] not in ArtifactManifest.read(artifact).files
    assert not [path.name for path in artifact.iterdir() if path.name.startswith(".")]
    assert "kept out of use" in capsys.readouterr().err


def test_a_commit_killed_before_the_manifest_was_written_is_undone(artifact):
    """Killed after renaming the new fused graph into place, before writing the manifest: the
    old graph (the one the manifest lists) is set aside; it comes back and the artifact opens."""
    fused = ArtifactManifest.read(artifact).variants[FUSED].graphs["model"]
    before = _contents(artifact)
    os.replace(artifact / fused, artifact / (PREVIOUS_PREFIX + fused))
    (artifact / fused).write_bytes(b"the new graph the manifest never listed")
    (artifact / (STAGING_PREFIX + "model.int8.onnx")).write_bytes(b"half")
    assert recover_interrupted_commit(artifact) == [f"restored {fused}",
                                                    "removed .optimizing.model.int8.onnx"]
    assert _contents(artifact) == before
    Artifact.open(artifact)  # every hash matches again


def test_a_commit_killed_after_the_manifest_was_written_is_finished(artifact):
    fused = ArtifactManifest.read(artifact).variants[FUSED].graphs["model"]
    before = _contents(artifact)
    (artifact / (PREVIOUS_PREFIX + fused)).write_bytes(b"the graph the new manifest replaced")
    assert recover_interrupted_commit(artifact) == [f"removed the old {fused}"]
    assert _contents(artifact) == before


def test_optimize_recovers_a_killed_commit_before_opening_the_artifact(artifact, capsys, caplog):
    fused = ArtifactManifest.read(artifact).variants[FUSED].graphs["model"]
    os.replace(artifact / fused, artifact / (PREVIOUS_PREFIX + fused))
    (artifact / fused).write_bytes(b"the new graph the manifest never listed")
    assert main(["optimize", str(artifact), "--fusion", *FAST]) == 0
    assert f"restored {fused}" in caplog.text
    assert not list(artifact.glob(".*"))
    Artifact.open(artifact)
