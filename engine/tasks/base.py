"""The base of every engine class: how a model is loaded, and the run loop of one-graph models.

Engine classes differ in what they do with their sessions, not in how they get them, so loading
(options, variant choice, sessions: :meth:`ArtifactModel.from_artifact`) is written once here;
each class only assembles itself from sessions in ``_assemble``. ``engine.load`` and every
``Class.load`` go through ``from_artifact``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, TypeVar

import numpy as np

from engine.artifact import Artifact
from engine.batching import length_sorted_chunks, sorted_chunks
from engine.options import ENGINE_DEFAULTS, RuntimeOptions, options_or_default
from engine.session import EngineSession
from engine.tokenization import EncodedBatch, EncodedRow, TextInput, TextTokenizer
from engine.variants.opening import open_for_load
from engine.variants.records import VariantRecord
from engine.variants.sessions import open_graphs

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

    ``variant`` names the graphs in use (``fp32``, ``fused``, ``int8``, ``fp16``, ``bf16``);
    with ``guard_finite`` NaN/inf outputs (an fp16 overflow) raise instead of becoming results.
    ``skipped_variants`` maps each variant a load left out because a file of it is missing or
    resized to what is wrong (the file and the fix); empty when every variant was intact.
    ``variant_reason`` says which lossy variants ``auto`` skipped because they failed their gate
    on this machine, or that the variant asked for by name did ("" when neither).
    ``variant_for_batches`` is the variant ``auto`` runs batched calls on where the task times
    a ``batch_workload`` and another variant was faster there on this CPU (None: ``variant``
    runs every call).
    """

    task: ClassVar[str]
    default_options: ClassVar[RuntimeOptions] = ENGINE_DEFAULTS
    # The session whose execution providers ``providers`` reports.
    provider_role: ClassVar[str] = "model"
    # The optimizer's timing workload that ranks variants for batched calls (None: one variant
    # for every call).
    batch_workload: ClassVar[str | None] = None
    skipped_variants: Mapping[str, str] = MappingProxyType({})
    variant_reason: str = ""
    variant_for_batches: VariantRecord | None = None

    def __init__(
        self,
        artifact: Artifact,
        sessions: Mapping[str, EngineSession],
        options: RuntimeOptions,
        variant: str,
        guard_finite: bool,
    ) -> None:
        self.artifact = artifact
        self.sessions = MappingProxyType(dict(sessions))
        self.variant = variant
        self.guard_finite = guard_finite
        self._assemble(options)

    def _assemble(self, options: RuntimeOptions) -> None:
        """Build what this task runs on from the artifact and sessions (tokenizer, labels,
        decoder graphs, ...); the resolved ``options`` are those of the load.

        Raises:
            ArtifactError: a file the task needs is missing or malformed.
        """

    @classmethod
    def load(
        cls: type[Model],
        path: str | Path,
        provider: str | None = None,
        threads: int | None = None,
        options: RuntimeOptions | None = None,
        variant: str | None = None,
    ) -> Model:
        """``engine.load`` for an artifact of this class's task (another task is an error).

        Args:
            path: artifact folder written by ``onnx-engine export``.
            provider: ``auto``, ``cpu``, ``cuda`` or ``openvino``; overrides ``options.provider``.
            threads: intra-op threads; overrides ``options.threads``.
            options: session settings (see :class:`RuntimeOptions`); the fields set there are
                layered over this class's defaults, the others keep them.
            variant: ``auto`` (default: the fastest gated variant for the provider), ``fp32``,
                ``fused``, ``int8``, ``fp16`` or ``bf16``; overrides ``options.variant``.

        Raises:
            ArtifactError: the folder is missing, corrupt, tampered with or of another task, or
                the variant asked for was not made or failed its accuracy gate.
            InputError: an invalid option, unknown variant, or one made for another provider
                (int8 on CUDA, fp16 on CPU).
            ProviderError: unknown provider, or CUDA requested but not usable.
        """
        artifact = Artifact.open(path, task=cls.task)
        return cls.from_artifact(artifact, options, provider=provider, threads=threads,
                                 variant=variant)

    @classmethod
    def from_artifact(
        cls: type[Model],
        artifact: Artifact,
        options: RuntimeOptions | None = None,
        **overrides: object,
    ) -> Model:
        """A model on an opened artifact, with the variant the options ask for: the one loading
        path (``engine.load`` and ``Class.load`` end here).

        ``options`` and the keyword ``overrides`` (``provider``, ``threads``, ``variant``; None:
        not given) are layered over this class's defaults, once. Hashes are checked where both
        the artifact and the options ask for it.

        Raises:
            ArtifactError: the variant asked for was not made, failed its accuracy gate, or has
                a missing, resized or modified file (other variants' broken files are only
                reported: see ``skipped_variants``).
            InputError: an invalid option, or a variant made for another provider.
            ProviderError: CUDA requested but not usable.
        """
        options = cls.resolve_options(options, **overrides)
        if not options.verify_hashes:
            artifact = replace(artifact, verify_hashes=False)
        opened = open_for_load(artifact, options, cls.from_sessions, cls.batch_workload)
        model = cls.from_sessions(artifact, opened.sessions, options, opened.name, checked=True)
        model.skipped_variants = MappingProxyType(dict(opened.skipped))
        model.variant_reason = opened.reason
        model.variant_for_batches = opened.for_batches
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

    @classmethod
    def from_sessions(
        cls: type[Model],
        artifact: Artifact,
        sessions: Mapping[str, EngineSession],
        options: RuntimeOptions,
        variant: str,
        checked: bool,
    ) -> Model:
        """The instance on open sessions; ``checked`` turns on the NaN/inf guard."""
        return cls(artifact, sessions, options, variant, checked)

    @classmethod
    def resolve_options(
        cls, options: RuntimeOptions | None = None, **overrides: object
    ) -> RuntimeOptions:
        """The user's options (and keyword overrides) layered over this class's defaults.

        Raises:
            InputError: ``options`` is not a :class:`RuntimeOptions`, or an override is invalid.
        """
        return options_or_default(options).layered(cls.default_options, **overrides)

    @property
    def providers(self) -> list[str]:
        """The execution providers the model's main session really uses, best first."""
        return list(self.sessions[self.provider_role].providers)

    def timing_calls(self) -> dict[str, Callable[[], object]]:
        """Short named calls that rank variants by speed (a single input and a small batch)."""
        raise NotImplementedError

    def open_batch_variant(self) -> None:
        """Open ``variant_for_batches`` now instead of on the first batched call, which would
        otherwise pay its session load (~1.5 s on t5-small); a server does this at load.
        Nothing to do where every call runs ``variant``."""


class TextGraphModel(ArtifactModel):
    """A model of one graph (``model``) fed by the artifact's tokenizer: classifier, embedder."""

    def _assemble(self, options: RuntimeOptions) -> None:
        self.session = self.sessions["model"]
        self.tokenizer = TextTokenizer.from_artifact(self.artifact)

    def run_batches(
        self, items: list[TextInput], batch_size: int, output: str
    ) -> Iterator[tuple[list[int], EncodedBatch, np.ndarray]]:
        """The graph's ``output`` for ``items``, batch by batch: ``(indices, encoded, values)``.

        Texts are grouped by length so short texts are not padded to long ones; ``indices``
        say where each row goes in input order. Each batch's texts are tokenized when it runs,
        so a long list is never held tokenized whole. With ``guard_finite`` NaN/inf raise.

        Raises:
            OnnxEngineError: the graph failed, or returned NaN/inf with ``guard_finite``.
        """
        for chunk in length_sorted_chunks(items, batch_size):
            rows = self.tokenizer.encode_rows([items[index] for index in chunk])
            yield (chunk, *self.run_rows(rows, output))

    def run_encoded(
        self, rows: Sequence[EncodedRow], batch_size: int, output: str
    ) -> Iterator[tuple[list[int], EncodedBatch, np.ndarray]]:
        """:meth:`run_batches` on rows already encoded (``tokenizer.encode_rows``, a server's
        queue): grouped by token count, nothing tokenized again."""
        for chunk in sorted_chunks([row.tokens for row in rows], batch_size):
            yield (chunk, *self.run_rows([rows[index] for index in chunk], output))

    def run_rows(self, rows: Sequence[EncodedRow], output: str) -> tuple[EncodedBatch, np.ndarray]:
        """The graph's ``output`` for one batch of rows, padded to the longest.

        Raises:
            OnnxEngineError: the graph failed, or returned NaN/inf with ``guard_finite``.
        """
        encoded = EncodedBatch.from_rows(rows, self.tokenizer.pad_id)
        (values,) = self.session.run(encoded.feeds(), [output])
        if self.guard_finite:
            self.session.check_finite(values)
        return encoded, values
