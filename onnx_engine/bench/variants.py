"""Optimized model variants (fused, int8, fp16, bf16) as the benchmark finds, resolves and builds
them.

``fp32`` is the exported graph. The other variants are written next to it by
``onnx-engine optimize ARTIFACT --fusion --int8`` (``export.variants.optimize``, which the
benchmark calls itself for its own cached artifacts) and recorded in the manifest; which files a
variant has, whether it passed its accuracy gate, and what ``auto`` means on this machine are all
decided by :mod:`engine.variants.choice`, so every contender runs exactly the files the engine
would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.variants.records import AUTO, FP32, VARIANT_NAMES
from onnx_engine.bench.errors import BenchError, ContenderUnavailable

# The engine's variant names (one list: a new variant is benchable where it is loadable).
VARIANT_CHOICES = (*VARIANT_NAMES, AUTO)


def check_variants(variants: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [name for name in variants if name not in VARIANT_CHOICES]
    if unknown:
        raise BenchError(
            f"Unknown variant(s) {unknown}. Choose from: {', '.join(VARIANT_CHOICES)}."
        )
    return variants


def graph_files(artifact: Path, variant: str) -> dict[str, Path]:
    """The ONNX file per graph role of ``variant`` (or ``auto``) for the CPU, as the engine picks.

    Raises:
        ContenderUnavailable: the variant was not made, failed its gate or is not for the CPU.
    """
    return {role: artifact / name for role, name in chosen_record(artifact, variant).graphs.items()}


def chosen_record(artifact: Path, variant: str) -> Any:
    """The manifest's record of ``variant`` (or of what ``auto`` picks) on the CPU.

    Raises:
        ContenderUnavailable: the variant was not made, failed its gate or cannot run here.
    """
    from engine.errors import OnnxEngineError
    from engine.manifest import ArtifactManifest
    from engine.variants.choice import select_variant, variant_records

    manifest = ArtifactManifest.read(artifact)
    try:
        name, _ = select_variant(manifest, variant, on_cuda=False,
                                 openvino_unusable=_openvino_unusable(manifest))
    except OnnxEngineError as error:
        raise ContenderUnavailable(str(error)) from error
    return variant_records(manifest)[name]


def resolve_auto(artifact: Path) -> str:
    """The variant ``auto`` selects on the CPU for this artifact."""
    return chosen_record(artifact, AUTO).name


def resolve_auto_for_batches(artifact: Path, auto: str) -> str | None:
    """The variant the engine's ``auto`` runs generate calls of ``BATCH_ROWS`` or more decoder
    rows on (T5, see :mod:`engine.tasks.text2text`) where that is not ``auto``'s pick, else None."""
    from engine.cpu import current_cpu
    from engine.manifest import ArtifactManifest
    from engine.tasks.text2text import BATCH_WORKLOAD
    from engine.variants.choice import auto_for_batches

    record = auto_for_batches(ArtifactManifest.read(artifact), auto, BATCH_WORKLOAD,
                              current_cpu())
    return record.name if record else None


def load_engine(engine_class: type, base_options: Any, settings: Any) -> Any:
    """``engine_class.load`` on the CPU with the benchmark's threads and variant.

    Raises:
        ContenderUnavailable: the engine ran another variant than asked (one that ignores
            ``RuntimeOptions.variant`` reports none and runs fp32).
    """
    options = base_options.with_overrides(
        provider="cpu", threads=settings.threads, variant=settings.variant
    )
    model = engine_class.load(settings.artifact, options=options)
    running = getattr(model, "variant", FP32)
    if running != settings.variant:
        raise ContenderUnavailable(
            f"{engine_class.__name__} runs variant {running!r}, not {settings.variant!r}: this "
            "engine class does not load optimized variants yet."
        )
    return model


def build_missing_variant(artifact: Path, variant: str) -> None:
    """Make ``variant`` with the export optimizer; for the benchmark's own cached artifacts.

    Raises:
        ContenderUnavailable: the optimizer cannot make it, failed, or its gate rejected it.
    """
    from engine.errors import OnnxEngineError
    from export.variants.optimize import MAKEABLE_VARIANTS, OptimizeSettings, optimize_artifact

    if variant not in MAKEABLE_VARIANTS:
        raise ContenderUnavailable(
            f"The optimizer does not make variant {variant!r} (it makes "
            f"{', '.join(MAKEABLE_VARIANTS)})."
        )
    try:
        manifest = optimize_artifact(OptimizeSettings(artifact=artifact, variants=(variant,)))
    except (OnnxEngineError, OSError) as error:
        message = f"Optimizing '{artifact}' for {variant!r} failed: {error}"
        raise ContenderUnavailable(message) from error
    record = manifest.variants[variant]
    if not record.passed:
        raise ContenderUnavailable(
            f"The {variant!r} variant of '{artifact}' is kept out of use: {record.reason}"
        )


def _openvino_unusable(manifest: Any) -> str | None:
    from engine.variants.choice import openvino_variants_unusable, variant_records

    return openvino_variants_unusable(variant_records(manifest).values())
