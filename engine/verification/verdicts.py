"""Per-machine verdicts of a variant's gate, in ``verdicts.json`` beside the manifest.

The manifest is what the export vouches for (and may be signed); what a machine found when it
re-ran a variant against the stored references is that machine's observation, so it lives in a
separate file, keyed by ``MachineKind.key``. A verdict holds for the files it was measured on:
its fingerprint covers the manifest's hashes of the variant's graphs and of the references, and
the gate, so a re-made variant or a re-export is checked again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.manifest import ArtifactManifest
from engine.variants.records import VariantFigures, VariantGate, VariantRecord
from engine.verification.machine import MachineKind
from engine.verification.references import REFERENCES_NAME

VERDICTS_NAME = "verdicts.json"
FORMAT_VERSION = 1
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """One variant's gate re-run on one machine kind against the stored references."""

    passed: bool
    reason: str
    figures: VariantFigures | None
    fingerprint: str
    seconds: float
    checked_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        figures = data.get("figures")
        return cls(bool(data["passed"]), str(data.get("reason", "")),
                   VariantFigures(**figures) if figures is not None else None,
                   str(data["fingerprint"]), float(data.get("seconds", 0.0)),
                   str(data.get("checked_at", "")))


def fingerprint(manifest: ArtifactManifest, record: VariantRecord, gate: VariantGate) -> str:
    """What a verdict depends on: the variant's files and the references as the manifest hashes
    them, its runtime, and the gate it was held to."""
    names = sorted({*record.graphs.values(), REFERENCES_NAME})
    data = {
        "files": {name: manifest.files[name].sha256 if name in manifest.files else None
                  for name in names},
        "runtime": record.runtime,
        "gate": asdict(gate),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


def read_verdicts(folder: Path) -> dict[str, Any]:
    """The verdicts file's content (empty when absent; an unreadable one is ignored, with a
    warning: verdicts are a cache, and re-checking is always safe)."""
    path = Path(folder) / VERDICTS_NAME
    if not path.is_file():
        return {"format_version": FORMAT_VERSION, "machines": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        machines = data.get("machines")
        if data.get("format_version") != FORMAT_VERSION or not isinstance(machines, dict):
            raise ValueError(f"format_version {data.get('format_version')!r}")
        return data
    except (OSError, ValueError, AttributeError) as error:
        logger.warning("%s is unreadable (%s); its verdicts are ignored and re-checked.", path,
                       error)
        return {"format_version": FORMAT_VERSION, "machines": {}}


@dataclass(frozen=True)
class VerdictCache:
    """One artifact's verdicts for this machine kind, read once per load: the re-gate asks it
    for the verdicts it holds and hands it the fresh ones to record."""

    manifest: ArtifactManifest
    folder: Path
    machine: MachineKind
    recorded: Mapping[str, Any]

    @classmethod
    def read(cls, folder: Path, manifest: ArtifactManifest, machine: MachineKind) -> VerdictCache:
        return cls(manifest, folder, machine, _recorded(read_verdicts(folder), machine.key))

    def verdict(self, record: VariantRecord, gate: VariantGate) -> Verdict | None:
        """The recorded verdict of ``record`` held to ``gate``, if it still holds (the files and
        the gate are the ones it was measured with)."""
        return _matching(self.recorded.get(record.name),
                         fingerprint(self.manifest, record, gate))

    def record(self, fresh: Mapping[str, Verdict]) -> bool:
        """Record ``fresh`` verdicts (see :func:`record_verdicts`); nothing to do when empty."""
        if not fresh:
            return True
        return record_verdicts(self.folder, self.machine.to_dict(), self.machine.key, fresh)


def _recorded(data: Mapping[str, Any], machine_key: str) -> Mapping[str, Any]:
    """The verdicts per variant recorded for ``machine_key`` in a verdicts file's ``data``."""
    variants: Mapping[str, Any] = data["machines"].get(machine_key, {}).get("variants", {})
    return variants


def _matching(entry: Any, expected: str) -> Verdict | None:
    """The verdict a file ``entry`` holds, if it parses and its fingerprint is ``expected``."""
    try:
        verdict = Verdict.from_dict(entry) if entry is not None else None
    except (KeyError, TypeError, ValueError):
        return None
    return verdict if verdict is not None and verdict.fingerprint == expected else None


def record_verdicts(
    folder: Path, machine: Mapping[str, Any], machine_key: str, verdicts: Mapping[str, Verdict]
) -> bool:
    """Add ``verdicts`` for ``machine_key`` to the file, atomically (a reader sees the old file or
    the new one). False, with a warning, where the folder cannot be written (a read-only
    artifact): the verdicts were still reached, they are only not remembered."""
    data = read_verdicts(folder)
    entry = data["machines"].setdefault(machine_key, {"machine": dict(machine), "variants": {}})
    entry["machine"] = dict(machine)
    entry.setdefault("variants", {}).update({name: v.to_dict() for name, v in verdicts.items()})
    path = Path(folder) / VERDICTS_NAME
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{VERDICTS_NAME}.", dir=path.parent)
    except OSError as error:
        logger.warning("Cannot record verdicts in %s (%s); they will be re-checked next time.",
                       path, error)
        return False
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        logger.warning("Cannot record verdicts in %s (%s); they will be re-checked next time.",
                       path, error)
        return False
    return True
