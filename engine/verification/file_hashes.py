"""The manifest's file hashes checked in a background thread while the variants run.

Hashing is most of what a first ``verify`` does besides running the check set: ~335 MB for a
full-size DistilBERT with fp32 and int8 (268 + 67 MB). ``hashlib`` releases the GIL while it
digests, and ONNX Runtime does while it builds a session, so hashing in its own thread overlaps
the sessions' creation instead of preceding it. Each file is hashed once; a caller that must know
whether some files changed (to trust a recorded verdict) waits for those files only.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from engine.artifact import sha256_of
from engine.manifest import ArtifactManifest

MISSING = "missing"
MODIFIED = "sha256 differs from manifest (file was modified)"


class FileHashes:
    """Every file the manifest lists, hashed by ``pool`` from construction on, largest first
    (the graphs are what a recorded verdict depends on; the small files take no time)."""

    def __init__(self, folder: Path, manifest: ArtifactManifest, pool: ThreadPoolExecutor) -> None:
        self._expected = {name: record.sha256 for name, record in manifest.files.items()}
        order = sorted(manifest.files, key=lambda name: -manifest.files[name].size)
        self._found: dict[str, Future[str | None]] = {
            name: pool.submit(_hash_if_present, Path(folder) / name) for name in order
        }

    def problem(self, name: str) -> str | None:
        """What is wrong with listed file ``name`` (waits for its hash), or None."""
        found = self._found[name].result()
        if found is None:
            return MISSING
        return None if found == self._expected[name] else MODIFIED

    def changed(self, names: Iterable[str]) -> bool:
        """Whether any listed one of ``names`` is missing or differs (waits for those only)."""
        return any(self.problem(name) is not None for name in names if name in self._found)

    def problems(self) -> list[str]:
        """Every missing or changed file as ``NAME: what`` lines, in the manifest's order."""
        return [f"{name}: {problem}" for name in self._expected
                if (problem := self.problem(name)) is not None]


def check_file_hashes(folder: Path, manifest: ArtifactManifest) -> list[str]:
    """Every file whose presence or sha256 differs from the manifest, as readable lines."""
    with ThreadPoolExecutor(1, thread_name_prefix="hash") as pool:
        return FileHashes(folder, manifest, pool).problems()


def _hash_if_present(path: Path) -> str | None:
    return sha256_of(path) if path.is_file() else None
