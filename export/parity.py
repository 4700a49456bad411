"""Parity between an exported graph and the PyTorch model it came from.

A report is a list of rows, one per checked input, each with the worst absolute difference and
whether the predicted class (or token) agrees. It is stored in the manifest and printed by
``onnx-engine verify``. Argmax agreement is strict except for exact ties: where the reference's own
top two values are closer than the tolerance, either choice is the same prediction. Embeddings have
no argmax; a report with ``min_cosine`` judges each row's direction by its cosine instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.verification.gate_figures import OutputPair, argmax_agrees  # noqa: F401  (torch-free, shared)

DEFAULT_ATOL = 1e-4


@dataclass(frozen=True)
class ParityRow:
    """One compared input: what it was, the worst |Δ| and whether the argmax agrees."""

    name: str
    text: str
    max_abs_diff: float
    argmax_agree: bool
    passed: bool
    cosine: float | None = None


@dataclass
class ParityReport:
    """All rows of a parity check with its tolerance; ``passed`` only if every row passed.

    With ``min_cosine`` (embeddings) a row passes when its |Δ| is within ``atol`` and its cosine
    to the reference reaches ``min_cosine``; the argmax is not judged.
    """

    atol: float = DEFAULT_ATOL
    rows: list[ParityRow] = field(default_factory=list)
    min_cosine: float | None = None

    def add(self, name: str, text: str, reference: np.ndarray, candidate: np.ndarray) -> ParityRow:
        """Compare ``candidate`` with ``reference`` (last axis = classes, vocabulary or the
        embedding)."""
        reference = np.asarray(reference, dtype=np.float64)
        candidate = np.asarray(candidate, dtype=np.float64)
        if reference.shape != candidate.shape:
            row = ParityRow(name, _preview(text), float("inf"), False, False)
        else:
            finite = bool(np.isfinite(candidate).all())
            diff = float(np.max(np.abs(reference - candidate))) if finite else float("inf")
            passed = finite and diff <= self.atol
            if self.min_cosine is None:
                agree = argmax_agrees(reference, candidate, self.atol)
                row = ParityRow(name, _preview(text), diff, agree, passed and agree)
            else:
                cosine = cosine_similarity(reference, candidate) if finite else float("nan")
                passed = passed and cosine >= self.min_cosine
                row = ParityRow(name, _preview(text), diff, True, passed, cosine)
        self.rows.append(row)
        return row

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.passed for row in self.rows)

    @property
    def worst(self) -> ParityRow:
        return max(self.rows, key=lambda row: (not row.passed, row.max_abs_diff))

    @property
    def max_abs_diff(self) -> float:
        return max(row.max_abs_diff for row in self.rows)

    def summary(self) -> str:
        worst = self.worst
        verdict = "passed" if self.passed else "FAILED"
        cosine = ""
        if self.min_cosine is not None:
            cosine = f", min cosine = {self.min_cosine_seen:.7f} (limit {self.min_cosine})"
        return (
            f"parity {verdict}: max |Δ| = {self.max_abs_diff:.2e} "
            f"(tolerance {self.atol:.0e}){cosine} "
            f"over {len(self.rows)} inputs; worst input: {worst.name} {worst.text!r}"
            + ("" if worst.argmax_agree else " (argmax differs)")
        )

    @property
    def min_cosine_seen(self) -> float:
        """The lowest cosine of any row (embedding reports; NaN for a non-finite row)."""
        cosines = (row.cosine for row in self.rows if row.cosine is not None)
        return min(cosines, default=float("nan"))

    def to_dict(self) -> dict[str, Any]:
        data = {
            "atol": self.atol,
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "rows": [asdict(row) for row in self.rows],
        }
        if self.min_cosine is not None:
            data.update(min_cosine_limit=self.min_cosine, min_cosine=self.min_cosine_seen)
        return data

    def table(self) -> str:
        """A plain-text table: input, max |Δ|, argmax agree (or cosine), pass/fail."""
        judged = "argmax" if self.min_cosine is None else "cosine"
        lines = [f"{'input':<44} {'max |Δ|':>10} {judged:>10} {'result':>6}"]
        for row in self.rows:
            label = f"{row.name} {row.text!r}"
            if row.cosine is None:
                judgement = "yes" if row.argmax_agree else "NO"
            else:
                judgement = f"{row.cosine:.7f}"
            lines.append(
                f"{label[:44]:<44} {row.max_abs_diff:>10.2e} {judgement:>10} "
                f"{'pass' if row.passed else 'FAIL':>6}"
            )
        lines.append(self.summary())
        return "\n".join(lines)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors, in float64; 1.0 for two zero vectors (equal)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.dot(a, b) / norms)


def _preview(text: str, width: int = 32) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
