"""Putting a variant's files into an artifact: all of them with the manifest, or none.

``optimize`` writes each new graph under a staging name (``.optimizing.NAME``), then commits:
every file it replaces is set aside (``.replaced.NAME``), the staged files are renamed into
place, and the manifest is written last. A failure restores the artifact exactly; a process
killed during the commit leaves set-aside files that :func:`recover_interrupted_commit` sorts
out before the next ``optimize`` opens the artifact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from engine.artifact import Artifact, sha256_of
from engine.errors import OnnxEngineError
from engine.manifest import ArtifactManifest
from export.errors import ArtifactWriteError
from export.staging import flush_folder

STAGING_PREFIX = ".optimizing."
# A file being replaced, set aside until the manifest that no longer lists it is written.
PREVIOUS_PREFIX = ".replaced."


def check_writable(folder: Path) -> None:
    """Fail before any work where the folder cannot take a new file (read-only, no space).

    Raises:
        ArtifactWriteError: a probe file cannot be created in ``folder``.
    """
    try:
        descriptor, probe = tempfile.mkstemp(prefix=STAGING_PREFIX, dir=folder)
    except OSError as error:
        raise ArtifactWriteError.from_os_error(error, folder) from None
    os.close(descriptor)
    os.unlink(probe)


def commit_variant_files(
    artifact: Artifact, staged: Mapping[str, str], manifest: ArtifactManifest
) -> None:
    """Rename the staged files into place, then write the manifest; all of it or none of it.

    A file being replaced is first renamed aside, so any failure (the manifest's write
    included) restores the artifact exactly; a variant whose build failed loses its old file.

    Raises:
        OSError: a rename or the manifest's write failed; the artifact is as it was.
    """
    moved: list[tuple[Path, Path | None]] = []  # (final path, its previous file set aside)
    try:
        for final, staging in staged.items():
            target, previous = artifact.path_of(final), artifact.path_of(PREVIOUS_PREFIX + final)
            kept = target.is_file()
            if kept:
                os.replace(target, previous)
            moved.append((target, previous if kept else None))
            if artifact.path_of(staging).is_file():
                os.replace(artifact.path_of(staging), target)
        manifest.write(artifact.path)
    except BaseException:
        for target, previous in reversed(moved):
            target.unlink(missing_ok=True)
            if previous is not None:
                os.replace(previous, target)
        raise
    for _, previous in moved:
        if previous is not None:
            previous.unlink(missing_ok=True)
    flush_folder(artifact.path)


def recover_interrupted_commit(folder: Path) -> list[str]:
    """Undo or finish a commit that a killed ``optimize`` left half done; returns what it did.

    A set-aside file whose hash is the one the manifest lists means the manifest was never
    rewritten: the file goes back (the new one in its place is dropped). Otherwise the manifest
    was written and the set-aside file is an old version: it is deleted. Staging files of a
    killed run are deleted. Without a readable manifest nothing is touched (``Artifact.open``
    then says what is wrong).
    """
    leftovers = sorted(folder.glob(PREVIOUS_PREFIX + "*")) if folder.is_dir() else []
    staging = sorted(folder.glob(STAGING_PREFIX + "*")) if folder.is_dir() else []
    if not leftovers and not staging:
        return []
    try:
        files = ArtifactManifest.read(folder).files
    except OnnxEngineError:
        return []
    done = []
    for previous in leftovers:
        name = previous.name[len(PREVIOUS_PREFIX):]
        listed = files.get(name)
        if listed is not None and sha256_of(previous) == listed.sha256:
            os.replace(previous, folder / name)
            done.append(f"restored {name}")
        else:
            previous.unlink()
            done.append(f"removed the old {name}")
    for path in staging:
        path.unlink(missing_ok=True)
        done.append(f"removed {path.name}")
    flush_folder(folder)
    return done
