"""Open the sessions of the variant that suits the provider really in use.

Which variant suits depends on the provider, and whether CUDA really works is only known once a
session exists (ONNX Runtime falls back to CPU silently). So the choice is made for the provider
asked for, and made again for CPU when ``auto`` fell back: a CUDA-only variant (fp16) never ends up
running on CPU. A bf16 variant is the fp32 files run by OpenVINO in bf16, and int8-openvino a
calibrated QDQ graph that OpenVINO runs, so their sessions are OpenVINO's; with
``provider='openvino'`` every session is, in f32 unless it is the bf16 variant or an int8-openvino
made (and gated) in bf16 (``RuntimeOptions`` refuses ``openvino_precision='bf16'`` with any other
variant).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from engine.artifact import Artifact
from engine.errors import OnnxEngineError
from engine.openvino import OpenVinoSession
from engine.options import RuntimeOptions, required
from engine.session import CPU, CUDA, OPENVINO, EngineSession, requested_providers
from engine.variants.choice import Offer, choose_for_load, offer_for
from engine.variants.records import RUNTIME_OPENVINO, VariantRecord


@dataclass(frozen=True)
class VariantSessions:
    """The chosen variant's name and one session per role (``model``, ``encoder``, ...)."""

    name: str
    sessions: Mapping[str, EngineSession]


class TimedModel(Protocol):
    """A model on a candidate variant's sessions: what re-timing at load times."""

    def timing_calls(self) -> dict[str, Callable[[], object]]: ...


class ModelFactory(Protocol):
    """Builds a model of the class being loaded on given sessions (its ``from_sessions``), so
    the variant choice can run candidates (re-gate, re-time) yet returns sessions, not a model.
    """

    def __call__(
        self,
        artifact: Artifact,
        sessions: Mapping[str, EngineSession],
        options: RuntimeOptions,
        variant: str,
        checked: bool,
    ) -> TimedModel: ...


def open_graphs(
    artifact: Artifact,
    graphs: Mapping[str, str],
    options: RuntimeOptions,
    listed: bool = True,
    providers: list[str] | None = None,
) -> dict[str, EngineSession]:
    """One session per role for the given files of ``artifact``, without any variant choice.

    ``listed`` files must be in the manifest and are hash-checked; the optimizer opens files it
    has just built (not listed yet) with ``listed=False``. ``providers`` (resolved from
    ``options.provider`` when not given) is shared by all sessions.

    Raises:
        ArtifactError: a listed file is not in the manifest or differs from it.
        CorruptArtifactError: ONNX Runtime cannot load a file.
        ProviderError: CUDA was requested explicitly but is not usable.
    """
    path_of = artifact.verified_file if listed else artifact.path_of
    providers = providers or requested_providers(required(options.resolved().provider, "provider"))
    if providers == [OPENVINO]:
        specs = artifact.manifest.graphs
        return {
            role: OpenVinoSession(path_of(name), options, specs[role].output_names, specs[role])
            for role, name in graphs.items()
        }
    return {
        role: EngineSession(path_of(name), options, providers) for role, name in graphs.items()
    }


def options_for(record: VariantRecord, options: RuntimeOptions) -> RuntimeOptions:
    """``options`` for running ``record``: OpenVINO for its variants, in the precision they were
    gated in (``VariantRecord.openvino_precision``: bf16 for bf16, the recorded one around
    int8-openvino's int8 matmuls), else unchanged.

    The options then name the variant too: ``RuntimeOptions`` allows bf16 only with its variant.
    """
    if record.runtime == RUNTIME_OPENVINO:
        return replace(options, provider="openvino", openvino_precision=record.openvino_precision,
                       variant=record.name)
    return options


def open_variant(
    artifact: Artifact,
    requested: str,
    options: RuntimeOptions,
    offer: Offer | None = None,
) -> VariantSessions:
    """Choose the variant ``requested`` (``auto`` or a name) in ``offer`` (default: the
    manifest's variants) for the provider in use and open its sessions: a load's last stage.

    Raises:
        InputError: unknown variant, or one that does not suit the provider in use.
        ArtifactError: the variant was not made, or failed its gate (the reason is in the message).
        ProviderError: CUDA was requested explicitly but is not usable.
    """
    providers = requested_providers(required(options.resolved().provider, "provider"))
    offer = offer or offer_for(artifact.manifest, requested, on_cpu=providers == [CPU])
    expect_cuda = CUDA in providers
    choice = choose_for_load(offer, expect_cuda, providers == [OPENVINO])
    record = choice.record
    if record.runtime == RUNTIME_OPENVINO:
        return VariantSessions(record.name, open_graphs(artifact, record.graphs,
                                                        options_for(record, options)))
    sessions = open_graphs(artifact, record.graphs, options, providers=providers)
    if expect_cuda and not all(session.on_cuda for session in sessions.values()):
        # provider='auto' fell back to CPU (an explicit 'cuda' raised above): the CPU's choice.
        on_cpu = choice.on_cpu
        if isinstance(on_cpu, OnnxEngineError):  # no variant of the artifact can run on the CPU
            raise on_cpu
        if on_cpu.graphs != record.graphs:
            sessions = open_graphs(artifact, on_cpu.graphs, replace(options, provider="cpu"))
        record = on_cpu
    return VariantSessions(record.name, sessions)
