"""Optimized variants of an artifact's graphs, their accuracy gates, and which one to run.

``onnx-engine optimize`` adds variants (``fused``, ``int8``, ``fp16``) next to the exported fp32
graphs and records each in ``manifest.variants``: its files per role, how it was made, the gate it
had to pass against PyTorch, the figures it measured, and its speed. The engine never uses a variant
that failed its gate, nor one made for another provider: int8 (MatMulInteger) has no CUDA kernels,
and fp16 on CPU would only be slower fp32 behind casts.

Everything here is role-generic (``model`` for a classifier; ``encoder``, ``decoder``,
``decoder_with_past`` for seq2seq), so every task selects its variant through the same function.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from engine.errors import ArtifactError, InputError
from engine.manifest import ArtifactManifest

AUTO = "auto"
FP32 = "fp32"
FUSED = "fused"
INT8 = "int8"
FP16 = "fp16"
VARIANT_NAMES = (FP32, FUSED, INT8, FP16)
VARIANT_CHOICES = (AUTO, *VARIANT_NAMES)

TARGET_ANY = "any"
TARGET_CPU = "cpu"
TARGET_CUDA = "cuda"

# Used when speeds were not measured on the provider in use. CPU: int8 ran 2.5-3x faster than fp32
# here, and the offline fusion was equal to 10% slower than ORT's own load-time fusion. CUDA: fp16
# with fused attention is the usual win; the fused fp32 graph still beats the unfused one.
PREFERENCE = {TARGET_CPU: (INT8, FP32, FUSED, FP16), TARGET_CUDA: (FP16, FUSED, FP32, INT8)}


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
    """

    max_abs_diff: float | None = None
    max_prob_diff: float | None = None
    min_agreement: float = 1.0
    flip_margin: float | None = None

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
        if problems and figures.worst_input:
            problems.append(f"worst input: {figures.worst_input}")
        return problems


@dataclass(frozen=True)
class VariantFigures:
    """What a variant measured against PyTorch fp32 on the check set.

    ``inputs`` counts checked predictions (one per text for a classifier, one per decoder
    position for seq2seq). ``clearest_flip`` is the largest reference margin among the
    predictions that changed (0 when none did; see ``VariantGate.flip_margin``).
    ``sequence_agreement`` (seq2seq) is the share of check-set sources whose whole greedy output
    is the reference's.
    """

    max_abs_diff: float
    max_prob_diff: float
    agreement: float
    inputs: int
    finite: bool = True
    worst_input: str = ""
    clearest_flip: float = 0.0
    sequence_agreement: float | None = None

    @property
    def disagreements(self) -> int:
        return round(self.inputs * (1.0 - self.agreement))


@dataclass(frozen=True)
class VariantSpeed:
    """Median latencies of fixed workloads on one provider, measured when the variant was made."""

    latency_ms: Mapping[str, float]
    runs: int

    @property
    def score_ms(self) -> float:
        """Geometric mean of the workloads, so a long batch does not drown a short call."""
        values = [max(value, 1e-9) for value in self.latency_ms.values()]
        return math.exp(sum(math.log(value) for value in values) / len(values))


@dataclass(frozen=True)
class VariantRecord:
    """One variant as recorded in the manifest.

    ``graphs`` maps each role to its file; ``target`` is ``cpu``, ``cuda`` or ``any``;
    ``checked_on`` is the provider the gate ran on; ``speeds`` is keyed by provider.
    """

    name: str
    graphs: Mapping[str, str]
    target: str = TARGET_ANY
    made_with: Mapping[str, Any] = field(default_factory=dict)
    gate: VariantGate | None = None
    figures: VariantFigures | None = None
    passed: bool = True
    reason: str = ""
    checked_on: str = ""
    speeds: Mapping[str, VariantSpeed] = field(default_factory=dict)

    def suits(self, provider: str) -> bool:
        return self.target in (TARGET_ANY, provider)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["name"]  # the manifest's key
        return data

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> VariantRecord:
        """Parse one ``manifest.variants`` entry.

        Raises:
            ArtifactError: the entry lacks its graphs or has malformed fields.
        """
        try:
            gate, figures = data.get("gate"), data.get("figures")
            return cls(
                name=name,
                graphs=dict(data["graphs"]),
                target=data.get("target", TARGET_ANY),
                made_with=dict(data.get("made_with", {})),
                gate=VariantGate(**gate) if gate is not None else None,
                figures=VariantFigures(**figures) if figures is not None else None,
                passed=bool(data.get("passed", False)),
                reason=data.get("reason", ""),
                checked_on=data.get("checked_on", ""),
                speeds={
                    provider: VariantSpeed(**speed)
                    for provider, speed in data.get("speeds", {}).items()
                },
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ArtifactError(
                f"manifest.variants['{name}'] is malformed ({type(error).__name__}: {error}). "
                "Re-run 'onnx-engine optimize' on the artifact."
            ) from error


def fp32_record(manifest: ArtifactManifest) -> VariantRecord:
    """The exported graphs as a variant; its speeds come from ``manifest.variants['fp32']``."""
    graphs = {role: spec.file for role, spec in manifest.graphs.items()}
    stored = manifest.variants.get(FP32)
    speeds = VariantRecord.from_dict(FP32, {**stored, "graphs": graphs}).speeds if stored else {}
    return VariantRecord(FP32, graphs, made_with={"method": "export"}, speeds=speeds)


def variant_records(manifest: ArtifactManifest) -> dict[str, VariantRecord]:
    """Every variant of the artifact, fp32 first (always present: the export's own graphs)."""
    records = {FP32: fp32_record(manifest)}
    for name, data in manifest.variants.items():
        if name != FP32:
            records[name] = VariantRecord.from_dict(name, data)
    return records


def select_variant(
    manifest: ArtifactManifest, requested: str, on_cuda: bool
) -> tuple[str, dict[str, str]]:
    """The variant to run and its files per role, for ``requested`` on the provider in use.

    ``auto`` picks, among the variants that passed their gate and suit the provider, the one with
    the lowest measured latency on that provider; when not all of them were timed there, the
    fixed preference order ``PREFERENCE`` decides. fp32 always qualifies.

    Raises:
        InputError: the name is unknown, or the variant does not suit the provider.
        ArtifactError: the variant was not made for this artifact, or it failed its gate.
    """
    if requested not in VARIANT_CHOICES:
        raise InputError(
            f"Unknown variant {requested!r}. Choose one of: {', '.join(VARIANT_CHOICES)}."
        )
    provider = TARGET_CUDA if on_cuda else TARGET_CPU
    records = variant_records(manifest)
    if requested == AUTO:
        usable = [record for record in records.values() if record.passed and record.suits(provider)]
        best = fastest(usable, provider)
        return best.name, dict(best.graphs)
    record = records.get(requested)
    if record is None:
        raise ArtifactError(
            f"This artifact has no '{requested}' variant (it has: {', '.join(records)}). Make it "
            f"with 'onnx-engine optimize ARTIFACT --{_flag(requested)}', or use variant='auto'."
        )
    if not record.passed:
        raise ArtifactError(
            f"The '{requested}' variant failed its accuracy gate and is kept out of use: "
            f"{record.reason}. Use variant='auto' or 'fp32', or re-make it with other limits "
            f"(onnx-engine optimize ARTIFACT --{_flag(requested)} --gate {requested}.FIELD=VALUE)."
        )
    if not record.suits(provider):
        other = TARGET_CPU if provider == TARGET_CUDA else TARGET_CUDA
        raise InputError(
            f"The '{requested}' variant is made for {record.target.upper()} but this session runs "
            f"on {provider.upper()}. Load it with provider='{other}', or use variant='auto'."
        )
    return record.name, dict(record.graphs)


def fastest(candidates: list[VariantRecord], provider: str) -> VariantRecord:
    """The fastest candidate by measured speed on ``provider``, else by the preference order."""
    order = PREFERENCE[provider]

    def preference(record: VariantRecord) -> int:
        return order.index(record.name) if record.name in order else len(order)

    if all(provider in record.speeds for record in candidates):
        return min(candidates, key=lambda item: (item.speeds[provider].score_ms, preference(item)))
    return min(candidates, key=preference)


def variant_file_name(graph_file: str, variant: str) -> str:
    """``model.onnx`` -> ``model.int8.onnx``: variant files sit beside the graph they come from."""
    stem, dot, suffix = graph_file.rpartition(".")
    return f"{stem}.{variant}.{suffix}" if dot else f"{graph_file}.{variant}"


def _flag(variant: str) -> str:
    return "fusion" if variant == FUSED else variant
