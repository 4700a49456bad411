"""The texts a variant is calibrated and gated on, beyond the export's fixed check set.

Sixteen built-in check inputs say little about a quantized model: on real weights int8 flips
labels only on some inputs, and static int8 needs activation ranges from real text. The
calibration set is one text per line from a file the user gives (their own traffic is the best
sample), or by default the check set plus the project's real English sentences
(``benchmarks/data/real_sentences.txt``, present in a source checkout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from export.check_set import check_texts

DEFAULT_SENTENCES = (
    Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "real_sentences.txt"
)


@dataclass(frozen=True)
class CalibrationSet:
    """Texts to calibrate and gate on, and where they came from (recorded in the manifest).

    ``extra`` are the texts beyond the check set, which the gate checks anyway; ``texts`` are
    all of them, for activation ranges and sensitivity.
    """

    extra: tuple[str, ...]
    texts: tuple[str, ...]
    source: str

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "texts": len(self.texts),
                "beyond_check_set": len(self.extra)}


def read_texts(path: Path) -> tuple[str, ...]:
    """Non-empty lines of a UTF-8 text file, one text each.

    Raises:
        InputError: the file is missing, unreadable, not UTF-8 or has no text.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            f"Cannot read calibration file '{path}' ({type(error).__name__}: {error}). Give a "
            "UTF-8 text file with one text per line."
        ) from error
    texts = tuple(line.strip() for line in lines if line.strip())
    if not texts:
        raise InputError(f"Calibration file '{path}' has no text; give one text per line.")
    return texts


def calibration_set(path: Path | None, max_length: int) -> CalibrationSet:
    """The user's file, or the check set plus the real sentences where the checkout has them.

    Raises:
        InputError: ``path`` is given but cannot be read or is empty.
    """
    checks = tuple(check_texts(max_length))
    if path is not None:
        extra = read_texts(path)
        return CalibrationSet(extra, checks + extra, str(path))
    if DEFAULT_SENTENCES.is_file():
        extra = read_texts(DEFAULT_SENTENCES)
        return CalibrationSet(
            extra, checks + extra, "check set + benchmarks/data/real_sentences.txt"
        )
    return CalibrationSet((), checks, "check set only (benchmarks/data/real_sentences.txt absent)")
