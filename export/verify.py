"""``onnx-engine verify --against-pytorch``: re-check an artifact's files and its parity with
PyTorch.

The torch-free check against the stored references is ``engine.verification.verify_here``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.manifest import ArtifactManifest
from engine.verification.file_hashes import check_file_hashes
from export.exporter import task_exporter
from export.parity import DEFAULT_ATOL, ParityReport


@dataclass
class VerificationResult:
    """File problems (missing, changed) and the fresh parity report; ``passed`` needs both clean."""

    file_problems: list[str] = field(default_factory=list)
    report: ParityReport | None = None

    @property
    def passed(self) -> bool:
        return not self.file_problems and self.report is not None and self.report.passed


def verify_artifact(
    path: str | Path, reference_model: str | None = None, atol: float | None = None
) -> VerificationResult:
    """Check hashes, then re-run the export parity check against ``reference_model``.

    The reference defaults to the model recorded in the manifest. Parity runs even when a hash
    differs, so the report shows whether the change also changes the outputs.

    Raises:
        ArtifactError: the folder or its manifest is missing or unreadable.
        ExportError: the reference model cannot be loaded.
    """
    folder = Path(path)
    manifest = ArtifactManifest.read(folder)
    result = VerificationResult(file_problems=check_file_hashes(folder, manifest))
    exporter = task_exporter(manifest.task)
    reference = exporter.load_reference(reference_model or manifest.source_model)
    tolerance = manifest.parity.get("atol", DEFAULT_ATOL) if atol is None else atol
    result.report = exporter.check_parity(reference, folder, tolerance)
    return result
