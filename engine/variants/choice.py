"""Optimized variants of an artifact's graphs, their accuracy gates, and which one to run.

``onnx-engine optimize`` adds variants (``fused``, ``int8``, ``fp16``, ``bf16``) next to the
exported fp32 graphs and records each in ``manifest.variants``: its files per role, how it was
made, the gate it had to pass against PyTorch, the figures it measured, and its speed. The engine
never uses a variant that failed its gate, nor one made for another provider: int8
(MatMulInteger) has no CUDA kernels, and fp16 on CPU would only be slower fp32 behind casts.
bf16 is the fp32 graphs run by OpenVINO in bf16: usable only where OpenVINO is installed and the
CPU has bf16 instructions (``openvino_unusable``: the reason it is not, or None); int8-openvino
is a calibrated int8 graph that OpenVINO runs, usable wherever OpenVINO is where it was made in
f32, and only where bf16 is where it was made (and gated) in bf16. A load asks
that once, in :func:`offer_for`, and hands the :class:`Offer` on to re-gating, re-timing and
the choice.

Everything here is role-generic (``model`` for a classifier; ``encoder``, ``decoder``,
``decoder_with_past`` for seq2seq), so every task selects its variant through the same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.cpu import CpuInfo
from engine.errors import ArtifactError, InputError, OnnxEngineError, ProviderError
from engine.manifest import ArtifactManifest
from engine.openvino import bf16_unusable_reason, openvino_cpu_unusable_reason
from engine.variants.records import (
    AUTO,
    BF16,
    FP16,
    FP32,
    FUSED,
    INT4,
    INT8,
    INT8_OPENVINO,
    RUNTIME_ONNXRUNTIME,
    RUNTIME_OPENVINO,
    TARGET_CPU,
    TARGET_CUDA,
    VARIANT_CHOICES,
    VariantRecord,
    optimize_flag,
)

# What a caller passes when it has not checked OpenVINO: runtime-bound variants stay out of use.
OPENVINO_NOT_CHECKED = "OpenVINO was not checked on this machine"

# Used when speeds were not measured on the provider in use. CPU: int8 ran 2.5-3x faster than fp32
# here, and the offline fusion was equal to 10% slower than ORT's own load-time fusion. CUDA: fp16
# with fused attention is the usual win; the fused fp32 graph still beats the unfused one.
# bf16 ranks after int8: on an AMD EPYC with AVX512-BF16 it ran 1.8x fp32, int8 2.5-3x. int4
# (T5) ranks after int8: faster at batch 1 only, and the coarser of the two.
PREFERENCE = {
    TARGET_CPU: (INT8_OPENVINO, INT8, INT4, BF16, FP32, FUSED, FP16),
    TARGET_CUDA: (FP16, FUSED, FP32, INT8, INT4, BF16, INT8_OPENVINO),
}


def fp32_record(manifest: ArtifactManifest) -> VariantRecord:
    """The exported graphs as a variant; its speeds come from ``manifest.variants['fp32']``."""
    graphs = {role: spec.file for role, spec in manifest.graphs.items()}
    stored = manifest.variants.get(FP32)
    speeds = stored.speeds if stored else {}
    return VariantRecord(FP32, graphs, made_with={"method": "export"}, passed=True, speeds=speeds)


def variant_records(manifest: ArtifactManifest) -> dict[str, VariantRecord]:
    """Every variant of the artifact, fp32 first (present unless ``onnx-engine pack`` left the
    export's own graphs out: the manifest then lists files, but not theirs)."""
    exported = fp32_record(manifest)
    packed_without_fp32 = bool(manifest.files) and any(
        file not in manifest.files for file in exported.graphs.values())
    records = {} if packed_without_fp32 else {FP32: exported}
    records.update({name: record for name, record in manifest.variants.items() if name != FP32})
    return records


def openvino_variants_unusable(records: Iterable[VariantRecord]) -> str | None:
    """Why the passing OpenVINO variants among ``records`` cannot run here, or None where they
    can. OpenVINO is imported (~0.2 s) only when there is such a variant to run."""
    passing = [record for record in records if record.runtime == RUNTIME_OPENVINO and record.passed]
    if not passing:
        return "no OpenVINO variant passed its gate"
    # One reason serves them all: where one that runs in bf16 passed (bf16, or an int8-openvino
    # made in bf16), its CPU needs (bf16 instructions) decide, else OpenVINO's CPU device alone.
    if any(record.openvino_precision == BF16 for record in passing):
        return bf16_unusable_reason()
    return openvino_cpu_unusable_reason()


def openvino_unusable_reason(records: Mapping[str, VariantRecord], requested: str) -> str | None:
    """Why the OpenVINO variants among ``records`` that ``requested`` (``auto`` or a name) may
    choose cannot run here (None: they can)."""
    return openvino_variants_unusable(
        record for record in records.values() if requested in (AUTO, record.name)
    )


@dataclass(frozen=True)
class Offer:
    """What one load may choose from, worked out once and handed on stage by stage.

    ``records`` are the artifact's variants (after re-gating: those that failed on this machine
    marked failed), ``requested`` is ``auto`` or a name. ``openvino_unusable`` is why OpenVINO's
    variants cannot run here (None: they can; None too off ONNX Runtime's CPU provider, where no
    OpenVINO variant suits). ``usable_on_cpu`` are the records ``auto`` may choose from on the
    CPU provider (empty on another provider: re-gating and re-timing are for the CPU only).
    """

    records: Mapping[str, VariantRecord]
    requested: str
    openvino_unusable: str | None
    usable_on_cpu: tuple[VariantRecord, ...]


def offer_for(manifest: ArtifactManifest, requested: str, on_cpu: bool) -> Offer:
    """The manifest's variants and, on ONNX Runtime's CPU provider (``on_cpu``), which of them
    can run here: OpenVINO's usability is asked once per load, here."""
    records = variant_records(manifest)
    if not on_cpu:
        return Offer(records, requested, None, ())
    openvino_unusable = openvino_unusable_reason(records, requested)
    usable = usable_variants(records, TARGET_CPU, openvino_unusable)
    return Offer(records, requested, openvino_unusable, tuple(usable))


def select_variant(
    manifest: ArtifactManifest,
    requested: str,
    on_cuda: bool,
    openvino_unusable: str | None = OPENVINO_NOT_CHECKED,
) -> tuple[str, dict[str, str]]:
    """The variant to run and its files per role, for ``requested`` on the provider in use
    (:func:`choose_variant` on the manifest's records)."""
    record = choose_variant(variant_records(manifest), requested, on_cuda, openvino_unusable)
    return record.name, dict(record.graphs)


def choose_variant(
    records: Mapping[str, VariantRecord],
    requested: str,
    on_cuda: bool,
    openvino_unusable: str | None = OPENVINO_NOT_CHECKED,
) -> VariantRecord:
    """The variant of ``records`` to run for ``requested`` on the provider in use.

    ``auto`` picks, among the variants that passed their gate and suit the provider, the one with
    the lowest measured latency on that provider; when not all of them were timed there, the
    fixed preference order ``PREFERENCE`` decides. fp32 always qualifies. ``openvino_unusable``
    is why OpenVINO's variants (bf16) cannot run here, or None where they can.

    Raises:
        InputError: the name is unknown, or the variant does not suit the provider.
        ArtifactError: the variant was not made for this artifact, or it failed its gate.
        ProviderError: the variant needs OpenVINO, which cannot run it here.
    """
    if requested not in VARIANT_CHOICES:
        raise InputError(
            f"Unknown variant {requested!r}. Choose one of: {', '.join(VARIANT_CHOICES)}."
        )
    provider = TARGET_CUDA if on_cuda else TARGET_CPU
    if requested == AUTO:
        candidates = usable_variants(records, provider, openvino_unusable)
        if not candidates:  # a packed artifact whose only variant auto may not pick here
            raise ArtifactError(
                f"variant='auto' has no variant of this artifact to pick on {provider.upper()}: "
                + "; ".join(f"'{name}' {_unusable_reason(record, provider, openvino_unusable)}"
                            for name, record in records.items())
                + f". Ask for one by name (variant='{next(iter(records))}') to run it anyway, "
                "or pack a variant that can run here (onnx-engine pack ARTIFACT OUT --variant "
                "NAME)."
            )
        return fastest(candidates, provider)
    record = records.get(requested)
    if record is None:
        raise ArtifactError(
            f"This artifact has no '{requested}' variant (it has: {', '.join(records)}). Make it "
            f"with 'onnx-engine optimize ARTIFACT --{optimize_flag(requested)}', or use "
            "variant='auto'."
        )
    if not record.passed:
        raise ArtifactError(
            f"The '{requested}' variant failed its accuracy gate and is kept out of use: "
            f"{record.reason}. Use variant='auto' or 'fp32', or re-make it with other limits "
            f"(onnx-engine optimize ARTIFACT --{optimize_flag(requested)} "
            f"--gate {requested}.FIELD=VALUE)."
        )
    if not record.suits(provider):
        other = TARGET_CPU if provider == TARGET_CUDA else TARGET_CUDA
        raise InputError(
            f"The '{requested}' variant is made for {record.target.upper()} but this session runs "
            f"on {provider.upper()}. Load it with provider='{other}', or use variant='auto'."
        )
    if record.runtime == RUNTIME_OPENVINO and openvino_unusable is not None:
        raise ProviderError(
            f"The '{requested}' variant runs on OpenVINO, which cannot run it here: "
            f"{openvino_unusable}. Use variant='auto' or 'fp32'."
        )
    return record


@dataclass(frozen=True)
class Choice:
    """The variant a load opens, and the one it opens instead if CUDA falls back to the CPU.

    Whether CUDA really works is only known once a session exists (``provider='auto'`` falls
    back silently), so where CUDA is asked for the CPU's choice is made too: ``on_cpu`` is that
    record, or the error that says why there is none (raised only if the fallback happens).
    Off CUDA ``on_cpu`` is ``record``.
    """

    record: VariantRecord
    on_cpu: VariantRecord | OnnxEngineError


def choose_for_load(offer: Offer, on_cuda: bool, on_openvino: bool) -> Choice:
    """The variant of ``offer`` to open on the provider in use: ONNX Runtime with or without
    CUDA, or OpenVINO (``provider='openvino'``, see :func:`choose_on_openvino`).

    Raises:
        InputError, ArtifactError, ProviderError: as :func:`choose_variant`.
    """
    if on_openvino:
        record = choose_on_openvino(offer.records, offer.requested)
        return Choice(record, record)
    record = choose_variant(offer.records, offer.requested, on_cuda, offer.openvino_unusable)
    if not on_cuda:
        return Choice(record, record)
    try:
        return Choice(record, choose_variant(offer.records, offer.requested, on_cuda=False))
    except OnnxEngineError as error:
        return Choice(record, error)


def choose_on_openvino(records: Mapping[str, VariantRecord], requested: str) -> VariantRecord:
    """``provider='openvino'``: the exported graphs (run in f32: for ``auto`` and ``fp32``,
    options cannot ask for bf16), or a gated OpenVINO variant (bf16, int8-openvino). The other
    variants hold ONNX Runtime's own operators (fused attention, int8 ops).

    Raises:
        InputError: a variant that only ONNX Runtime runs.
        ArtifactError: an OpenVINO variant asked for but not made, or failed its gate.
    """
    if requested in (AUTO, FP32):
        return records[FP32]
    if requested not in (BF16, INT8_OPENVINO):
        raise InputError(
            f"The '{requested}' variant runs on ONNX Runtime, not OpenVINO. Load it with "
            "provider='cpu', or use variant='auto', 'fp32', 'bf16' or 'int8-openvino' with "
            "provider='openvino'."
        )
    return choose_variant(records, requested, on_cuda=False, openvino_unusable=None)


def _unusable_reason(record: VariantRecord, provider: str, openvino_unusable: str | None) -> str:
    """Why ``auto`` may not pick ``record`` on ``provider`` (see :func:`usable_variants`)."""
    if not record.passed:
        return f"failed its gate ({record.reason})"
    if not record.suits(provider):
        return f"is made for {record.target.upper()}"
    return f"runs on OpenVINO, which cannot run it here ({openvino_unusable})"


def usable_variants(
    records: Mapping[str, VariantRecord],
    provider: str,
    openvino_unusable: str | None = OPENVINO_NOT_CHECKED,
) -> list[VariantRecord]:
    """The variants of ``records`` ``auto`` may choose from on ``provider``: passed their gate,
    suit it, and their runtime can run here."""
    return [
        record for record in records.values()
        if record.passed and record.suits(provider)
        and (record.runtime == RUNTIME_ONNXRUNTIME or openvino_unusable is None)
    ]


def fastest(candidates: list[VariantRecord], provider: str) -> VariantRecord:
    """The fastest candidate by measured speed on ``provider``, else by the preference order."""
    order = PREFERENCE[provider]

    def preference(record: VariantRecord) -> int:
        return order.index(record.name) if record.name in order else len(order)

    if all(provider in record.speeds for record in candidates):
        return min(candidates, key=lambda item: (item.speeds[provider].score_ms, preference(item)))
    return min(candidates, key=preference)


def fastest_on_workload(
    offer: Offer, chosen: str, workload: str, cpu: CpuInfo
) -> VariantRecord | None:
    """For ``auto`` on the CPU: the candidate timed fastest on ``workload`` where that is not
    ``chosen`` (the pick by every workload together), else None.

    Only where every candidate was timed on ``workload`` on ``cpu`` itself: timings from another
    CPU do not rank variants here (re-timing at load ranks them by all workloads together).
    """
    candidates = offer.usable_on_cpu
    if offer.requested != AUTO or len(candidates) < 2:
        return None
    speeds = [record.speeds.get(TARGET_CPU) for record in candidates]
    if not all(speed is not None and speed.taken_on(cpu) and workload in speed.latency_ms
               for speed in speeds):
        return None
    best = min(candidates, key=lambda record: record.speeds[TARGET_CPU].latency_ms[workload])
    return None if best.name == chosen else best


def auto_for_batches(
    manifest: ArtifactManifest, picked: str, workload: str, cpu: CpuInfo
) -> VariantRecord | None:
    """:func:`fastest_on_workload` over ``manifest``'s variants for ``auto`` on the CPU, as a
    load on ``cpu`` that needs no re-gating sees them (for reports: the bench, ``optimize``)."""
    offer = offer_for(manifest, AUTO, on_cpu=True)
    return fastest_on_workload(offer, picked, workload, cpu)


def variant_file_name(graph_file: str, variant: str) -> str:
    """``model.onnx`` -> ``model.int8.onnx``: variant files sit beside the graph they come from."""
    stem, dot, suffix = graph_file.rpartition(".")
    return f"{stem}.{variant}.{suffix}" if dot else f"{graph_file}.{variant}"
