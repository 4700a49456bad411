"""The loading pipeline every engine class shares: options, artifact, variant, sessions.

``Classifier`` and ``Seq2SeqLM`` differ in what they do with their sessions, not in how they get
them, so ``load`` is written once here and each class only assembles itself from sessions.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Callable, ClassVar, Mapping, TypeVar

from engine.artifact import Artifact
from engine.errors import InputError
from engine.session import ENGINE_DEFAULTS, EngineSession, RuntimeOptions
from engine.variants.regate import regated_for_this_machine
from engine.variants.retime import retimed_auto
from engine.variants.sessions import open_graphs, open_variant, without_broken_variants

Model = TypeVar("Model", bound="ArtifactModel")
# What text models' variants are timed on at load (engine.variants.retime): ordinary text, ~60
# tokens.
TIMING_TEXT = (
    "The delivery came two days late, but the support team answered quickly and refunded the "
    "shipping cost; the product itself works well, although the manual is hard to follow."
)


def text_timing_calls(
    run: Callable[[list[str], int], object],
) -> dict[str, Callable[[], object]]:
    """The timing calls of a text model whose ``run(texts, batch_size)`` handles a batch: one
    short text, and eight ``TIMING_TEXT`` in one batch."""
    short, long = [TIMING_TEXT[:40]], [TIMING_TEXT] * 8
    return {"b1_short": lambda: run(short, 1), "b8_long": lambda: run(long, 8)}


class ArtifactModel:
    """Base of the engine classes: one task, loaded from an artifact folder.

    ``skipped_variants`` maps each variant a load left out because a file of it is missing or
    resized to what is wrong (the file and the fix); empty when every variant was intact.
    ``variant_reason`` says which lossy variants ``auto`` skipped because they failed their gate
    on this machine, or that the variant asked for by name did ("" when neither).
    """

    task: ClassVar[str]
    default_options: ClassVar[RuntimeOptions] = ENGINE_DEFAULTS
    skipped_variants: Mapping[str, str] = MappingProxyType({})
    variant_reason: str = ""

    @classmethod
    def load(
        cls: type[Model],
        path: str | Path,
        provider: str | None = None,
        threads: int | None = None,
        options: RuntimeOptions | None = None,
        variant: str | None = None,
    ) -> Model:
        """Load an artifact of this class's task.

        Args:
            path: artifact folder written by ``onnx-engine export``.
            provider: ``auto``, ``cpu`` or ``cuda``; overrides ``options.provider``.
            threads: intra-op threads; overrides ``options.threads``.
            options: session settings (see :class:`RuntimeOptions`); the fields set there are
                layered over this class's defaults, the others keep them.
            variant: ``auto`` (default: the fastest gated variant for the provider), ``fp32``,
                ``fused``, ``int8`` or ``fp16``; overrides ``options.variant``.

        Raises:
            ArtifactError: the folder is missing, corrupt, tampered with or of another task, or
                the variant asked for was not made or failed its accuracy gate.
            InputError: unknown variant, or one made for another provider (int8 on CUDA, fp16
                on CPU).
            ProviderError: unknown provider, or CUDA requested but not usable.
        """
        options = cls.resolve_options(options, provider=provider, threads=threads, variant=variant)
        artifact = Artifact.open(path, task=cls.task, verify_hashes=options.verify_hashes)
        return cls.from_artifact(artifact, options)

    @classmethod
    def from_artifact(cls: type[Model], artifact: Artifact, options: RuntimeOptions) -> Model:
        """A model on an opened artifact, with the variant ``options`` asks for.

        ``options`` is layered over this class's defaults (fields left unset keep them).

        Raises:
            ArtifactError: the variant asked for was not made, failed its accuracy gate, or has
                a missing, resized or modified file (other variants' broken files are only
                reported: see ``skipped_variants``).
            InputError: a variant made for another provider.
            ProviderError: CUDA requested but not usable.
        """
        options = cls.resolve_options(options)
        artifact, skipped = without_broken_variants(artifact, options.variant)
        # Lossy variants gated on another kind of machine: re-gated here first.
        artifact, reason = regated_for_this_machine(cls, artifact, options)
        model = retimed_auto(cls, artifact, options)  # timings from another CPU: time here
        if model is None:
            chosen = open_variant(artifact, options.variant, options)
            model = cls.from_sessions(artifact, chosen.sessions, options, chosen.name, checked=True)
        model.skipped_variants = MappingProxyType(skipped)
        model.variant_reason = reason
        return model

    @classmethod
    def from_graphs(
        cls: type[Model],
        artifact: Artifact,
        graphs: Mapping[str, str],
        options: RuntimeOptions,
        variant: str,
    ) -> Model:
        """A model on given graph files (role -> file) of ``artifact``, with no variant choice.

        For the optimizer, which must measure a variant before the manifest may vouch for it: no
        gate applies, and NaN/inf outputs are returned instead of raised so they can be measured.

        Raises:
            CorruptArtifactError: ONNX Runtime cannot load a file.
        """
        options = cls.resolve_options(options)
        sessions = open_graphs(artifact, graphs, options, listed=False)
        return cls.from_sessions(artifact, sessions, options, variant, checked=False)

    def timing_calls(self) -> dict[str, Callable[[], object]]:
        """Short named calls that rank variants by speed (a single input and a small batch)."""
        raise NotImplementedError

    @classmethod
    def resolve_options(
        cls, options: RuntimeOptions | None = None, **overrides: object
    ) -> RuntimeOptions:
        """The user's options (and keyword overrides) layered over this class's defaults.

        Raises:
            InputError: ``options`` is not a :class:`RuntimeOptions`, or an override is invalid.
        """
        if options is not None and not isinstance(options, RuntimeOptions):
            raise InputError(
                f"options must be an engine.RuntimeOptions, got {type(options).__name__}."
            )
        given = (options or RuntimeOptions()).with_overrides(**overrides)
        return given.over(cls.default_options)

    @classmethod
    def from_sessions(
        cls: type[Model],
        artifact: Artifact,
        sessions: Mapping[str, EngineSession],
        options: RuntimeOptions,
        variant: str,
        checked: bool,
    ) -> Model:
        """Build the instance from open sessions; ``checked`` turns on the NaN/inf guard."""
        raise NotImplementedError
