"""Opening an artifact folder: manifest, task check and file integrity.

Integrity is checked before any file is handed to ONNX Runtime or `tokenizers`, so a truncated,
edited or missing file is reported by name instead of surfacing as a parse error deep inside them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import (
    ArtifactNotFoundError,
    CorruptArtifactError,
    HashMismatchError,
    InputError,
    TaskMismatchError,
)
from engine.manifest import ArtifactManifest, FileRecord
from engine.variants.records import optimize_flag

CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.json"
# Large reads into one reused buffer: hashing a 268 MB graph is then the digest's own speed
# (no per-chunk allocation), and hashlib releases the GIL on each update, so a hashing thread
# runs beside ONNX Runtime's session creation (``engine.verification.file_hashes``).
_HASH_CHUNK = 4 << 20


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large graphs do not need to fit in memory twice."""
    digest = hashlib.sha256()
    buffer = bytearray(_HASH_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def file_record(path: Path) -> FileRecord:
    return FileRecord(sha256=sha256_of(path), size=path.stat().st_size)


@dataclass(frozen=True)
class Artifact:
    """An opened artifact folder whose files are checked against the manifest as they are used.

    Opening checks that every listed file exists with its recorded size. The sha256 of a file is
    checked when the file is first asked for through :meth:`file`, so loading one variant of a
    model does not pay for hashing the others (cold start matters at the edge).

    A missing or resized file that only an optimized variant uses does not fail the opening:
    ``broken_files`` maps it to what is wrong, so loading leaves that variant out (and fails
    only if it is the one asked for). Any other file must be intact.
    """

    path: Path
    manifest: ArtifactManifest
    verify_hashes: bool = True
    broken_files: Mapping[str, str] = field(default_factory=dict)
    _verified: set[str] = field(default_factory=set, compare=False, repr=False)

    @classmethod
    def open(
        cls,
        path: str | Path,
        task: str | None = None,
        verify_hashes: bool = True,
        require_parity: bool = True,
    ) -> Artifact:
        """Open an artifact and check it is complete and unchanged.

        Args:
            path: the artifact folder written by ``onnx-engine export``.
            task: when given, the task the caller can serve; another task is an error.
            verify_hashes: compare each file's sha256 with the manifest when it is first used
                (sizes are always compared). Turning it off saves ~0.7 ms per MB at load for
                trusted deployments.
            require_parity: refuse an artifact whose manifest has no passed parity check (an
                export that was interrupted before its check). Only the exporter, which opens
                its staging folder to run that check, turns it off.

        Raises:
            ArtifactNotFoundError: the folder, its manifest or a listed file is missing.
            CorruptArtifactError: the manifest cannot be parsed or has the wrong shape, or the
                artifact was never checked against PyTorch.
            HashMismatchError: a file differs from what was exported.
            TaskMismatchError: the artifact was exported for another task.
        """
        if not isinstance(path, (str, Path)):
            raise InputError(f"artifact path must be a str or Path, got {type(path).__name__}.")
        folder = Path(path)
        manifest = ArtifactManifest.read(folder)
        if require_parity and not manifest.parity_passed:
            raise CorruptArtifactError(
                f"'{folder}' was never checked against PyTorch (its manifest has no passed parity "
                "report): the export was interrupted or rejected. Re-run 'onnx-engine export "
                f"MODEL {folder} --force'."
            )
        if task is not None and manifest.task != task:
            raise TaskMismatchError(
                f"'{folder}' holds a '{manifest.task}' model, not '{task}'. Load it with "
                f"engine.load('{folder}'), which picks the class for its task."
            )
        variant_files = manifest.variant_only_files()
        broken = {}
        for name, problem in _size_problems(folder, manifest):
            if name not in variant_files:
                raise problem
            broken[name] = str(problem)
        return cls(path=folder, manifest=manifest, verify_hashes=verify_hashes,
                   broken_files=broken)

    def path_of(self, name: str) -> Path:
        """Where file ``name`` of the artifact is (or would be); nothing is checked."""
        return self.path / name

    def verified_file(self, name: str) -> Path:
        """Path of a file the manifest lists, its sha256 checked first (with ``verify_hashes``).

        A graph's external-data side file (``model.onnx_data``), which ONNX Runtime reads
        behind our back, is checked together with the graph. Each file is hashed once.

        Raises:
            ArtifactNotFoundError: the manifest does not list ``name``.
            HashMismatchError: the file differs from what was exported.
        """
        if name not in self.manifest.files:
            raise ArtifactNotFoundError(
                f"'{self.path}' does not list '{name}' in its manifest. Re-export the artifact."
            )
        if self.verify_hashes:
            for listed in (name, f"{name}_data"):
                if listed in self.manifest.files and listed not in self._verified:
                    self._check_hash(listed)
                    self._verified.add(listed)
        return self.path_of(name)

    def _check_hash(self, name: str) -> None:
        path = self.path / name
        if sha256_of(path) != self.manifest.files[name].sha256:
            raise HashMismatchError(
                f"'{path}' was modified after it was written (sha256 differs from manifest.json). "
                f"{_remedy(self.path, self.manifest, name)}"
            )

    def config(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` copied into the artifact (labels, token ids)."""
        if not self.path_of(CONFIG_NAME).is_file():
            raise ArtifactNotFoundError(f"'{self.path}' is missing '{CONFIG_NAME}'. Re-export it.")
        path = self.verified_file(CONFIG_NAME)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptArtifactError(
                f"{path} is not valid JSON ({error}). Re-export it."
            ) from error
        if not isinstance(config, dict):
            raise CorruptArtifactError(
                f"{path} must hold a JSON object, got {type(config).__name__}. Re-export it."
            )
        return config


def _size_problems(
    folder: Path, manifest: ArtifactManifest
) -> list[tuple[str, ArtifactNotFoundError | HashMismatchError]]:
    """Each listed file that is missing or not of its recorded size, with the error to raise."""
    problems: list[tuple[str, ArtifactNotFoundError | HashMismatchError]] = []
    for name, record in manifest.files.items():
        path = folder / name
        remedy = _remedy(folder, manifest, name)
        if not path.is_file():
            problems.append((name, ArtifactNotFoundError(
                f"'{folder}' is missing '{name}'. {remedy}"
            )))
        elif path.stat().st_size != record.size:
            problems.append((name, HashMismatchError(
                f"'{path}' has {path.stat().st_size} bytes but was written with {record.size}: "
                f"the file is truncated or was replaced. {remedy}"
            )))
    return problems


def _remedy(folder: Path, manifest: ArtifactManifest, name: str) -> str:
    """How to mend file ``name``: re-make the variant it belongs to, or re-export."""
    variant = manifest.variant_only_files().get(name)
    if variant is None:
        return (f"Re-export the artifact with --force, or run 'onnx-engine verify {folder}' to "
                "see every file that changed.")
    return (f"It belongs to the '{variant}' variant: re-make it with 'onnx-engine optimize "
            f"{folder} --{optimize_flag(variant)}', or load another variant (e.g. variant='fp32').")
