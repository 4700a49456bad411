"""What one benchmark run measures; built by the CLI, the pytest suites or a script."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.timing import TimingPlan
from onnx_engine.bench.errors import BenchError
from onnx_engine.bench.registry import CONTENDER_NAMES, check_contender_names
from onnx_engine.bench.variants import FP32, check_variants

DEFAULT_MODELS = ("distilbert-base", "t5-small")


@dataclass(frozen=True)
class BenchSettings:
    """The grid (batches x sequence lengths x contenders x variants) and how it is measured.

    Attributes:
        batches, seqs: workload shapes; ``seq`` counts the tokens the model sees, special tokens
            included (T5: input tokens; the output length is ``new_tokens``).
        new_tokens: tokens generated per row by seq2seq contenders (stop at EOS).
        beams: beams of seq2seq generation (1: greedy; beam search with ``length_penalty=1``
            and no early stopping otherwise).
        contenders, variants: what to compare; ``auto`` is the variant the engine picks.
        threads: intra-op threads of every contender; ``None``: one per physical core.
        timing: warm-up, rounds and time budget per workload.
        cold_runs: fresh processes per contender for cold start and peak RSS (0: skip).
        floor: measure machine peaks and count FLOPs for measured / floor.
        agreement: compare each engine variant's predictions with PyTorch's on the check set.
        cache_dir: where built-in models are built and exported once.
        rebuild: rebuild cached built-in models even when their spec did not change.
    """

    batches: tuple[int, ...] = (1, 8, 32)
    seqs: tuple[int, ...] = (8, 32, 128)
    new_tokens: int = 32
    beams: int = 1
    contenders: tuple[str, ...] = CONTENDER_NAMES
    variants: tuple[str, ...] = (FP32,)
    threads: int | None = None
    timing: TimingPlan = field(default_factory=TimingPlan)
    cold_runs: int = 3
    floor: bool = True
    agreement: bool = True
    cache_dir: Path = Path("artifacts/bench")
    rebuild: bool = False

    def __post_init__(self) -> None:
        for name in ("batches", "seqs"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or v < 1 for v in values):
                raise BenchError(f"{name} must be positive integers, got {values!r}.")
        if not isinstance(self.new_tokens, int) or self.new_tokens < 1:
            raise BenchError(f"new_tokens must be a positive integer, got {self.new_tokens!r}.")
        if not isinstance(self.beams, int) or self.beams < 1:
            raise BenchError(f"beams must be a positive integer, got {self.beams!r}.")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise BenchError(f"threads must be a positive integer, got {self.threads!r}.")
        if self.cold_runs < 0:
            raise BenchError(f"cold_runs must be 0 or more, got {self.cold_runs!r}.")
        check_contender_names(self.contenders)
        check_variants(self.variants)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cache_dir"] = str(self.cache_dir)
        return data
