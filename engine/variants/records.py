"""The typed records of optimized variants, as ``manifest.json`` stores them.

They live apart from :mod:`engine.variants.choice` (which selects a variant) so that the manifest
parser can build them: one typed parse of the manifest, used everywhere, instead of raw dicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.cpu import CpuInfo
from engine.errors import CorruptArtifactError

# The variants' names (what ``variant=`` accepts: these and ``auto``). They live here, with the
# records, so that ``RuntimeOptions`` can check a name without importing the choice.
AUTO = "auto"
FP32 = "fp32"  # the export's own graphs; its manifest entry holds only their speeds
FUSED = "fused"
INT8 = "int8"
FP16 = "fp16"
BF16 = "bf16"
# NNCF's calibrated int8 of the exported graph (a QDQ ONNX file), run by OpenVINO (see
# export.variants.openvino_int8): int8 matmuls, bf16 (where the CPU that made it has bf16) or f32
# elsewhere, as its ``made_with`` records.
INT8_OPENVINO = "int8-openvino"
# T5 only: 4-bit decoder weights (MatMulNBits) and a rewritten decoder step, the encoder in int8
# (see export.variants.int4).
INT4 = "int4"
VARIANT_NAMES = (FP32, FUSED, INT8, FP16, BF16, INT8_OPENVINO, INT4)
VARIANT_CHOICES = (AUTO, *VARIANT_NAMES)

TARGET_ANY = "any"
TARGET_CPU = "cpu"
TARGET_CUDA = "cuda"
# Which runtime runs a variant's graphs: ONNX Runtime, or OpenVINO, which runs the fp32 graphs in
# bf16 on CPUs that have it (bf16, see engine.openvino) and the int8-openvino QDQ graphs.
RUNTIME_ONNXRUNTIME = "onnxruntime"
RUNTIME_OPENVINO = "openvino"
RUNTIMES = (RUNTIME_ONNXRUNTIME, RUNTIME_OPENVINO)
# A gate that bounds raw |Δ| this tightly and allows no changed prediction holds a variant to
# fp32 arithmetic (fusion only regroups it): such a variant is exact, any other is lossy.
EXACT_ABS_DIFF = 1e-3


def optimize_flag(variant: str) -> str:
    """The ``onnx-engine optimize`` flag that makes ``variant`` (``fused`` is ``--fusion``)."""
    return "fusion" if variant == "fused" else variant


@dataclass(frozen=True)
class VariantGate:
    """Accuracy limits a variant must meet against the PyTorch fp32 model on the check set.

    A limit of ``None`` is not checked. Outputs must always be finite.

    Attributes:
        max_abs_diff: largest allowed |Δ| of raw outputs (logits).
        max_prob_diff: largest allowed |Δ| of scores after the model's activation (softmax or
            sigmoid); scale-free, so one limit suits every model.
        min_agreement: fraction of checked predictions (top-1 label or token) that must be the
            reference's.
        flip_margin: largest reference margin (logit units, i.e. nats of log-probability,
            between the reference's choice and the variant's; the top-2 margin when the variant
            picked the runner-up) at which a changed prediction is forgiven as a near-tie.
            Random-weight models have many near-ties that any rounding flips; a flip where the
            reference was clearly decided (margin above this) fails the gate.
        min_cosine: lowest allowed cosine between a variant's embedding and the reference's,
            on every input (embedding models).
        min_retrieval_agreement: share of the reference's top-10 documents a variant must also
            rank in its top 10, averaged over the retrieval queries (embedding models).
    """

    max_abs_diff: float | None = None
    max_prob_diff: float | None = None
    min_agreement: float = 1.0
    flip_margin: float | None = None
    min_cosine: float | None = None
    min_retrieval_agreement: float | None = None

    @property
    def lossy(self) -> bool:
        """Whether the gate lets the variant's numbers move beyond fp32 noise (int8, fp16,
        bf16): fused is held to ``max_abs_diff`` 1e-4 with full agreement, so it is exact."""
        exact = self.max_abs_diff is not None and self.max_abs_diff <= EXACT_ABS_DIFF
        return not (exact and self.min_agreement >= 1.0)

    def violations(self, figures: VariantFigures) -> list[str]:
        """Each limit the figures break, as a readable phrase (empty when the gate passes)."""
        problems = []
        if not figures.finite:
            problems.append("outputs contain NaN or inf")
        if self.max_abs_diff is not None and not figures.max_abs_diff <= self.max_abs_diff:
            problems.append(f"max |Δlogits| {figures.max_abs_diff:.3g} > {self.max_abs_diff:g}")
        if self.max_prob_diff is not None and not figures.max_prob_diff <= self.max_prob_diff:
            problems.append(f"max |Δprob| {figures.max_prob_diff:.3g} > {self.max_prob_diff:g}")
        if figures.agreement < self.min_agreement:
            problems.append(
                f"top-1 agreement {figures.agreement:.1%} < {self.min_agreement:.1%} "
                f"({figures.disagreements} of {figures.inputs} inputs differ)"
            )
        if self.flip_margin is not None and not figures.clearest_flip <= self.flip_margin:
            problems.append(
                f"a top-1 prediction changed where the reference preferred its own by a logit "
                f"margin of {figures.clearest_flip:.3g} > {self.flip_margin:g}"
            )
        # Scores that each move by at most b can close a top-2 gap of at most 2b: a flip beyond
        # that is a clear decision the variant changed, not a near-tie within its own bound.
        limit = None if self.max_prob_diff is None else 2 * self.max_prob_diff
        if limit is not None and not figures.clearest_flip_gap <= limit:
            problems.append(
                f"a top-1 prediction changed where the reference's top-2 probability gap was "
                f"{figures.clearest_flip_gap:.3g} > {limit:g} (twice the |Δprob| bound)"
            )
        problems += self._embedding_violations(figures)
        if problems and figures.worst_input:
            problems.append(f"worst input: {figures.worst_input}")
        return problems

    def _embedding_violations(self, figures: VariantFigures) -> list[str]:
        """Limits on embeddings; a figure that was not measured (None) breaks its limit."""
        problems = []
        cosine, retrieval = figures.min_cosine, figures.retrieval_agreement
        if self.min_cosine is not None and not (cosine is not None and cosine >= self.min_cosine):
            measured = "not measured" if cosine is None else f"{cosine:.5f}"
            problems.append(f"min cosine to the reference {measured} < {self.min_cosine:g}")
        limit = self.min_retrieval_agreement
        if limit is not None and not (retrieval is not None and retrieval >= limit):
            measured = "not measured" if retrieval is None else f"{retrieval:.1%}"
            problems.append(f"top-10 retrieval agreement {measured} < {limit:.1%}")
        return problems


@dataclass(frozen=True)
class Flip:
    """One checked prediction the variant changed, and how clearly the reference had decided.

    ``reference_gap`` is the reference's score of its own choice minus its score of the
    variant's choice (for multi-label, the gap between a label's on and off scores,
    ``|2p - 1|``); ``prob_diff`` is the input's largest |Δ| of scores.
    """

    input: str
    reference_gap: float
    prob_diff: float


@dataclass(frozen=True)
class VariantFigures:
    """What a variant measured against PyTorch fp32 on the check set (and calibration texts).

    ``inputs`` counts checked predictions (one per text for a classifier, one per decoder
    position for seq2seq). ``clearest_flip`` is the largest reference margin in logits among the
    predictions that changed (0 when none did; see ``VariantGate.flip_margin``);
    ``clearest_flip_gap`` the largest reference top-2 gap in scores among them. ``flips`` lists
    every changed prediction, clearest first. ``sequence_agreement`` (seq2seq) is the share of
    check-set sources whose whole greedy output is the reference's. Embedding models
    (feature-extraction) fill ``min_cosine`` (lowest cosine to the reference over every checked
    text) and ``retrieval_agreement`` (mean top-10 overlap with the reference's ranking); their
    ``agreement`` is the share of queries whose top-1 document is the reference's and
    ``max_prob_diff`` the largest |Δ| of a similarity score.
    """

    max_abs_diff: float
    max_prob_diff: float
    agreement: float
    inputs: int
    finite: bool = True
    worst_input: str = ""
    clearest_flip: float = 0.0
    sequence_agreement: float | None = None
    clearest_flip_gap: float = 0.0
    flips: tuple[Flip, ...] = ()
    min_cosine: float | None = None
    retrieval_agreement: float | None = None

    def __post_init__(self) -> None:
        # Parsed from the manifest's JSON, flips arrive as dicts.
        flips = tuple(Flip(**flip) if isinstance(flip, Mapping) else flip for flip in self.flips)
        object.__setattr__(self, "flips", flips)

    @property
    def disagreements(self) -> int:
        return round(self.inputs * (1.0 - self.agreement))


@dataclass(frozen=True)
class VariantSpeed:
    """Median latencies of fixed workloads on one provider, and the CPU they were taken on.

    ``cpu`` is ``CpuInfo.to_dict()`` of that machine (absent in manifests written before it
    was recorded): timings only rank variants on the CPU that took them.
    """

    latency_ms: Mapping[str, float]
    runs: int
    cpu: Mapping[str, Any] | None = None

    def taken_on(self, cpu: CpuInfo) -> bool:
        """Whether these timings were taken on ``cpu``."""
        return self.cpu is not None and cpu.same_as(CpuInfo.from_dict(self.cpu))

    @property
    def score_ms(self) -> float:
        """Geometric mean of the workloads, so a long batch does not drown a short call."""
        values = [max(value, 1e-9) for value in self.latency_ms.values()]
        return math.exp(sum(math.log(value) for value in values) / len(values))


@dataclass(frozen=True)
class VariantRecord:
    """One variant as recorded in the manifest.

    ``graphs`` maps each role to its file; ``target`` is ``cpu``, ``cuda`` or ``any``;
    ``runtime`` is ``onnxruntime`` or ``openvino`` (bf16: the fp32 files, run by OpenVINO in
    bf16); ``checked_on`` is the provider the gate ran on; ``speeds`` is keyed by provider.
    """

    name: str
    graphs: Mapping[str, str]
    target: str = TARGET_ANY
    made_with: Mapping[str, Any] = field(default_factory=dict)
    gate: VariantGate | None = None
    figures: VariantFigures | None = None
    passed: bool = False
    reason: str = ""
    checked_on: str = ""
    speeds: Mapping[str, VariantSpeed] = field(default_factory=dict)
    runtime: str = RUNTIME_ONNXRUNTIME

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")

    @property
    def openvino_precision(self) -> str:
        """OpenVINO's inference precision for this variant: bf16 for the bf16 variant, else the
        ``openvino_precision`` its roles' ``made_with`` record (int8-openvino: bf16 where the CPU
        that made it had bf16, the precision its gate and search ran in); f32 where none is
        recorded (manifests from before it was)."""
        if self.name == BF16:
            return BF16
        recorded = {made.get("openvino_precision") for made in self.made_with.values()
                    if isinstance(made, Mapping)}
        return BF16 if BF16 in recorded else "f32"

    def suits(self, provider: str) -> bool:
        return self.target in (TARGET_ANY, provider)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["name"]  # the manifest's key
        return data

    @classmethod
    def from_dict(cls, name: str, data: object) -> VariantRecord:
        """Parse one ``manifest.variants`` entry.

        Raises:
            CorruptArtifactError: the entry lacks its graphs or has malformed fields.
        """
        try:
            if not isinstance(data, Mapping):
                raise TypeError(f"an object was expected, got {type(data).__name__}")
            gate, figures = data.get("gate"), data.get("figures")
            return cls(
                name=name,
                graphs=dict(data["graphs"]),
                target=data.get("target", TARGET_ANY),
                made_with=dict(data.get("made_with", {})),
                gate=VariantGate(**gate) if gate is not None else None,
                figures=VariantFigures(**figures) if figures is not None else None,
                passed=data.get("passed", False) is True,
                reason=data.get("reason", ""),
                checked_on=data.get("checked_on", ""),
                speeds={
                    provider: VariantSpeed(**speed)
                    for provider, speed in data.get("speeds", {}).items()
                },
                runtime=data.get("runtime", RUNTIME_ONNXRUNTIME),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise CorruptArtifactError(
                f"manifest.variants['{name}'] is malformed ({type(error).__name__}: {error}). "
                "Re-run 'onnx-engine optimize' on the artifact."
            ) from error
