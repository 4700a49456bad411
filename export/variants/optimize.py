"""``onnx-engine optimize``: add gated variants (fused, int8, fp16, bf16) to an exported artifact.

Optimum can optimize and quantize but never checks the result. Here every variant runs the
export's check set against the PyTorch fp32 model; its figures, the gate they were held to and the
verdict go into the manifest, and the engine only ever uses variants that passed. Each passing
variant is also timed on CPU, all variants alternating, so ``variant="auto"`` can pick by measured
speed instead of by assumption.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from engine.artifact import Artifact, file_record
from engine.cuda_probe import cuda_unusable_reason
from engine.errors import InputError, OnnxEngineError
from engine.manifest import ArtifactManifest
from engine.options import RuntimeOptions
from engine.variants.choice import openvino_variants_unusable, variant_file_name, variant_records
from engine.variants.records import (
    BF16,
    FP16,
    FUSED,
    INT4,
    INT8,
    INT8_OPENVINO,
    RUNTIME_ONNXRUNTIME,
    RUNTIME_OPENVINO,
    TARGET_ANY,
    TARGET_CPU,
    TARGET_CUDA,
    VariantGate,
    VariantRecord,
)
from engine.variants.sessions import options_for
from export.errors import ArtifactWriteError
from export.progress import StageProgress
from export.staging import flush_to_disk
from export.tasks import export_task
from export.variants.calibration import CalibrationSet, calibration_set
from export.variants.checks import SEARCH_TIMING_RUNS, VariantChecker, measure_speeds
from export.variants.files import (
    STAGING_PREFIX,
    check_writable,
    commit_variant_files,
    recover_interrupted_commit,
)
from export.variants.fusion import fuse_graph, half_precision_graph
from export.variants.gates import gate_verdict, gates_with_overrides
from export.variants.int4 import int4_graph
from export.variants.int8_search import SearchProbe, search_int8
from export.variants.openvino_int8 import (
    build_needs_probe,
    inference_precisions,
    search_openvino_int8,
)
from export.variants.quantize import QuantizeSettings, quantize_graph

# int4 is made for T5 only: the tasks whose gates list it (``export.variants.gates.default_gate``).
MAKEABLE_VARIANTS = (FUSED, INT8, FP16, BF16, INT8_OPENVINO, INT4)

logger = logging.getLogger(__name__)
GraphBuilder = Callable[[Path, Path, Mapping[str, Any]], dict[str, Any]]
# search(source, target, gate=..., probe=...): an accuracy-aware builder that may try several
# graphs (export.variants.int8_search); used for one-graph artifacts whose checker offers a probe.
GraphSearch = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class VariantRecipe:
    """How a variant's graph is made from an fp32 graph, and which provider it is made for.

    ``build(source, target, config)`` writes ``target`` and returns how it was made;
    ``config`` is the model's Hugging Face ``config.json``. ``search``, where given, replaces
    ``build`` when the task can judge trial graphs (see ``GraphSearch``). ``build`` None writes
    no graph (bf16: OpenVINO runs the exported fp32 files in bf16); ``runtime`` says which
    runtime gates, times and runs the variant. ``precisions``, where given, lists OpenVINO's
    inference precisions to search in on the machine that makes the variant, in order
    (int8-openvino: bf16 where this CPU has it, then f32); the first whose search passes is
    recorded in every role's ``made_with``, and the gate and the engine run the variant in it.
    """

    target: str
    build: GraphBuilder | None
    search: GraphSearch | None = None
    runtime: str = RUNTIME_ONNXRUNTIME
    precisions: Callable[[], tuple[str, ...]] | None = None


def default_recipes(quantize: QuantizeSettings = QuantizeSettings()) -> dict[str, VariantRecipe]:
    """fused, int8, fp16, bf16, int8-openvino and int4; int8 searches for the fp32 matmuls it
    needs where the task can; bf16 is OpenVINO's bf16 inference of the fp32 graphs (CPUs with
    AMX / AVX512-BF16); int8-openvino is NNCF's calibrated int8, run by OpenVINO, searched the
    same way (one-graph tasks only); int4 is T5's 4-bit decoders, its encoder quantized as int8
    is."""
    return {
        FUSED: VariantRecipe(TARGET_ANY, fuse_graph),
        INT8: VariantRecipe(
            TARGET_CPU,
            partial(quantize_graph, settings=quantize),
            search=partial(search_int8, settings=quantize),
        ),
        FP16: VariantRecipe(TARGET_CUDA, half_precision_graph),
        BF16: VariantRecipe(TARGET_CPU, None, runtime=RUNTIME_OPENVINO),
        INT8_OPENVINO: VariantRecipe(TARGET_CPU, build_needs_probe, search=search_openvino_int8,
                                     runtime=RUNTIME_OPENVINO,
                                     precisions=inference_precisions),
        INT4: VariantRecipe(TARGET_CPU, partial(int4_graph, encoder=quantize)),
    }


@dataclass(frozen=True)
class OptimizeSettings:
    """Which variants to add to which artifact, and how they are judged.

    Attributes:
        artifact: folder written by ``onnx-engine export``.
        variants: names from ``MAKEABLE_VARIANTS``; existing ones are re-made.
        gate_overrides: ``VARIANT.FIELD=VALUE`` changes to the default gates.
        reference_model: PyTorch model to compare with (default: the manifest's source model).
        quantize: how the int8 variant is made.
        calibration: texts, one per line, that int8 is calibrated on and every variant of a
            classifier is gated on besides the check set (default: see
            ``export.variants.calibration``).
        timing_runs: timed rounds per workload when ranking the variants' speed.
    """

    artifact: Path
    variants: tuple[str, ...] = MAKEABLE_VARIANTS
    gate_overrides: tuple[str, ...] = ()
    reference_model: str | None = None
    quantize: QuantizeSettings = field(default_factory=QuantizeSettings)
    calibration: Path | None = None
    timing_runs: int = 5
    quiet: bool = False


def optimize_artifact(
    settings: OptimizeSettings, recipes: Mapping[str, VariantRecipe] | None = None
) -> ArtifactManifest:
    """Make, check, time and record the requested variants; returns the rewritten manifest.

    A variant that fails its gate (or cannot be built or loaded) is recorded with the reason and
    kept out of use; that is a result, not an error. An I/O failure is an error: every file is
    written under a staging name, flushed, and renamed into place with the manifest last, so
    the artifact is either as it was or fully updated. ``recipes`` replaces how variants are made
    (tests use it to make a deliberately broken one).

    Raises:
        ArtifactError: the artifact is missing, or changed since it was exported.
        InputError: an unknown variant name, a malformed gate override or timing_runs < 1.
        ExportError: the task is unknown, or the reference model cannot be loaded.
        ArtifactWriteError: a file cannot be written (a full disk, a read-only folder); the
            artifact is left as it was, with no partial or temporary file.
    """
    recipes = dict(recipes) if recipes is not None else default_recipes(settings.quantize)
    unknown = [name for name in settings.variants if name not in recipes]
    if unknown or not settings.variants:
        raise InputError(
            f"Cannot make variant(s) {unknown or '(none given)'}. "
            f"Choose from: {', '.join(recipes)}."
        )
    if settings.timing_runs < 1:
        raise InputError(f"timing_runs must be at least 1, got {settings.timing_runs}.")
    for action in recover_interrupted_commit(Path(settings.artifact)):
        logger.warning("A killed optimize had left the artifact half updated: %s.", action)
    artifact = Artifact.open(settings.artifact)  # unchanged since export before adding to it
    check_writable(artifact.path)  # before minutes of PyTorch, not after
    manifest = artifact.manifest
    calibration = calibration_set(settings.calibration, manifest.max_length)
    search_runs = min(SEARCH_TIMING_RUNS, settings.timing_runs)  # fewer if the user asked so
    checker = export_task(manifest.task).checker(calibration.extra, search_runs)
    gates = gates_with_overrides(manifest.task, settings.variants, settings.gate_overrides)
    progress = StageProgress(total=len(settings.variants) + 3, quiet=settings.quiet)
    model = settings.reference_model or manifest.source_model
    with progress.stage(f"loading PyTorch reference {model}"):
        reference = checker.load_reference(model)
    records = variant_records(manifest)
    staged: dict[str, str] = {}  # final file -> staging file (absent: the build failed)
    try:
        for name in settings.variants:
            with progress.stage(f"making and checking '{name}'"):
                record, files = _make_variant(
                    name, recipes[name], gates[name], artifact, checker, reference, calibration
                )
                records[name] = record
                staged.update(files)
        # Timed under their staging names: nothing in the artifact changes until the commit.
        with progress.stage("timing variants on CPU"):
            records = _with_cpu_speeds(records, artifact, checker, settings.timing_runs, staged)
        with progress.stage("recording files and gate results"):
            manifest = _recorded(manifest, records, artifact, staged)
            commit_variant_files(artifact, staged, manifest)
    except OSError as error:  # a full disk or a read-only folder: an error, not a verdict
        raise ArtifactWriteError.from_os_error(error, artifact.path) from None
    finally:
        for staging in staged.values():
            artifact.path_of(staging).unlink(missing_ok=True)
    return manifest


def retime_artifact(path: Path, runs: int = 5, quiet: bool = False) -> ArtifactManifest:
    """Time the artifact's passing CPU variants on this machine and record it in the manifest.

    Needs no PyTorch: gates are not re-run, only the ranking ``auto`` uses is re-measured, so
    an artifact optimized elsewhere loads its fastest variant here without timing at load.

    Raises:
        ArtifactError: the artifact is missing, or changed since it was exported.
        InputError: runs < 1.
        ArtifactWriteError: the manifest cannot be written (it is left as it was).
    """
    if runs < 1:
        raise InputError(f"timing_runs must be at least 1, got {runs}.")
    artifact = Artifact.open(path)
    checker = export_task(artifact.manifest.task).checker()
    progress = StageProgress(total=1, quiet=quiet)
    with progress.stage("timing variants on this CPU"):
        records = _with_cpu_speeds(variant_records(artifact.manifest), artifact, checker, runs)
    manifest = _recorded(artifact.manifest, records, artifact)
    try:
        manifest.write(artifact.path)
    except OSError as error:
        raise ArtifactWriteError.from_os_error(error, artifact.path) from None
    return manifest


def _make_variant(
    name: str,
    recipe: VariantRecipe,
    gate: VariantGate,
    artifact: Artifact,
    checker: VariantChecker,
    reference: Any,
    calibration: CalibrationSet,
) -> tuple[VariantRecord, dict[str, str]]:
    """Build the variant under staging names and judge it; returns its record and its files
    (final name -> staging name; no staging file where the build failed).

    Raises:
        OSError: a file could not be written; the caller turns it into an error.
    """
    if recipe.build is None:  # bf16 runs the exported files: nothing to build
        graphs = {role: spec.file for role, spec in artifact.manifest.graphs.items()}
        record = VariantRecord(name, graphs, target=recipe.target, gate=gate, passed=False,
                               runtime=recipe.runtime)
        return _judge_openvino_variant(record, artifact, checker, reference), {}
    graphs = artifact.manifest.graphs
    final = {role: variant_file_name(spec.file, name) for role, spec in graphs.items()}
    staging = {role: STAGING_PREFIX + file for role, file in final.items()}
    files = {final[role]: staging[role] for role in final}
    record = VariantRecord(name, final, target=recipe.target, gate=gate, passed=False,
                           runtime=recipe.runtime)
    if recipe.runtime == RUNTIME_OPENVINO:
        from engine.openvino import openvino_cpu_unusable_reason

        unusable = openvino_cpu_unusable_reason()
        if unusable is not None:
            return replace(record, reason=f"could not be built: {unusable}"), files
    precisions: tuple[str | None, ...] = recipe.precisions() if recipe.precisions else (None,)
    made_with: dict[str, Any] = {}
    rejected: dict[str, Any] = {}  # precision -> the trials of its search that none passed
    try:
        probe = checker.search_probe(artifact, reference) if recipe.search else None
        for precision in precisions:
            recorded = {"openvino_precision": precision} if precision is not None else {}
            record = replace(record, made_with={role: dict(recorded) for role in final})
            # Trial graphs are judged as the variant runs (OpenVINO's for int8-openvino, in
            # its precision), uncached.
            trial_options = options_for(
                record, RuntimeOptions(provider="cpu", verify_hashes=False, openvino_cache_dir="")
            )
            made_with = _built_graphs(recipe, recorded, artifact, gate, staging, calibration,
                                      probe.run_as(trial_options) if probe else None)
            searches = [made["accuracy_aware"] for made in made_with.values()
                        if "accuracy_aware" in made]
            if precision == precisions[-1] or all(found["passed"] for found in searches):
                break
            rejected[str(precision)] = [trial for found in searches for trial in found["trials"]]
        for made in made_with.values():
            if rejected and "accuracy_aware" in made:
                made["accuracy_aware"]["rejected_precisions"] = rejected
    except Exception as error:  # the ORT optimizer and quantizer raise anything; record it
        for name in staging.values():  # whatever it left half-written is not a variant
            artifact.path_of(name).unlink(missing_ok=True)
        if isinstance(error, OSError):  # the disk, not the graph: an error, never a verdict
            raise
        reason = f"could not be built: {_brief(error)}"
        return replace(record, made_with=made_with, reason=reason), files
    for name in staging.values():
        flush_to_disk(artifact.path_of(name))
    record = replace(record, made_with=made_with)
    # A CUDA variant is gated on CUDA where a CUDA session really works here (only there do fp16
    # kernels show their overflow); elsewhere on CPU, where ORT runs fp16 behind casts. The
    # record's checked_on says which.
    on_gpu = recipe.target == TARGET_CUDA and cuda_unusable_reason() is None
    provider = "cuda" if on_gpu else "cpu"
    options = options_for(record, RuntimeOptions(provider=provider))
    return _judged(record, checker, artifact, staging, options, reference), files


def _built_graphs(
    recipe: VariantRecipe,
    recorded: Mapping[str, Any],
    artifact: Artifact,
    gate: VariantGate,
    staging: Mapping[str, str],
    calibration: CalibrationSet,
    probe: SearchProbe | None,
) -> dict[str, Any]:
    """Write each role's graph to its ``staging`` file (searched with ``probe`` where the task
    can judge trial graphs, else built) and return how each was made, by role, with
    ``recorded`` added."""
    made_with: dict[str, Any] = {}
    graphs = artifact.manifest.graphs
    if probe is not None and len(graphs) == 1:
        ((role, spec),) = graphs.items()
        source, target = artifact.verified_file(spec.file), artifact.path_of(staging[role])
        built = recipe.search(source, target, gate=gate, probe=probe)
        built["accuracy_aware"]["calibration"] = calibration.describe()
        return {role: {"source": spec.file, **built, **recorded}}
    config = artifact.config()
    for role, spec in graphs.items():
        source, target = artifact.verified_file(spec.file), artifact.path_of(staging[role])
        built = recipe.build(source, target, config)
        made_with[role] = {"source": spec.file, **built, **recorded}
    return made_with


def _judge_openvino_variant(
    record: VariantRecord, artifact: Artifact, checker: VariantChecker, reference: Any
) -> VariantRecord:
    """Judge OpenVINO's bf16 run of the exported graphs; where OpenVINO or the CPU cannot run
    bf16, the record says why and stays out of use."""
    from engine.openvino import bf16_unusable_reason
    from engine.session import openvino_runtime

    unusable = bf16_unusable_reason()
    if unusable is not None:
        return replace(record, reason=f"could not be built: {unusable}")
    made_with = {"method": "openvino inference precision", "precision": BF16,
                 "openvino": openvino_runtime().get_version()}
    record = replace(record, made_with=made_with)
    options = options_for(record, RuntimeOptions())
    return _judged(record, checker, artifact, record.graphs, options, reference)


def _judged(
    record: VariantRecord,
    checker: VariantChecker,
    artifact: Artifact,
    graphs: Mapping[str, str],
    options: RuntimeOptions,
    reference: Any,
) -> VariantRecord:
    """``record`` with the figures of ``graphs`` run with ``options``, and the gate's verdict."""
    try:
        engine = checker.open(artifact, graphs, options, record.name)
        figures = checker.figures(engine, reference)
    except OnnxEngineError as error:
        return replace(record, reason=f"does not run: {_brief(error)}")
    passed, reason = gate_verdict(record.gate, figures)
    checked_on = TARGET_CUDA if checker.on_cuda(engine) else TARGET_CPU
    return replace(record, figures=figures, passed=passed, reason=reason, checked_on=checked_on)


def _with_cpu_speeds(
    records: dict[str, VariantRecord],
    artifact: Artifact,
    checker: VariantChecker,
    runs: int,
    staged: Mapping[str, str] | None = None,
) -> dict[str, VariantRecord]:
    """Every passing CPU-capable variant, fp32 included, re-timed together so ranks compare.

    ``staged`` (final name -> staging name) says where files not yet renamed into place are.
    """
    staged = staged or {}
    options = RuntimeOptions(provider="cpu", verify_hashes=False)
    openvino_unusable = openvino_variants_unusable(records.values())
    timed = [
        record for record in records.values()
        if record.passed and record.suits(TARGET_CPU)
        and (record.runtime == RUNTIME_ONNXRUNTIME or openvino_unusable is None)
    ]
    workloads = {
        record.name: checker.workloads(
            checker.open(artifact, _on_disk(record.graphs, staged),
                         options_for(record, options), record.name)
        )
        for record in timed
    }
    speeds = measure_speeds(workloads, runs)
    return {
        name: replace(record, speeds={**record.speeds, TARGET_CPU: speeds[name]})
        if name in speeds
        else record
        for name, record in records.items()
    }


def _on_disk(graphs: Mapping[str, str], staged: Mapping[str, str]) -> dict[str, str]:
    """``graphs`` (role -> file) with each staged file under the name it has on disk now."""
    return {role: staged.get(name, name) for role, name in graphs.items()}


def _recorded(
    manifest: ArtifactManifest,
    records: Mapping[str, VariantRecord],
    artifact: Artifact,
    staged: Mapping[str, str] | None = None,
) -> ArtifactManifest:
    """The manifest with the variant records and the sha256 of every variant file (read from
    its staging file where ``staged`` has one)."""
    staged = staged or {}
    files = dict(manifest.files)
    exported = {spec.file for spec in manifest.graphs.values()}
    for record in records.values():
        for name in record.graphs.values():
            if name in exported:  # fp32's and bf16's: the export's own files
                continue
            path = artifact.path_of(staged.get(name, name))
            if path.is_file():
                files[name] = file_record(path)
            else:  # a variant that could not be built leaves no file
                files.pop(name, None)
    return replace(manifest, variants=dict(records), files=dict(sorted(files.items())))


def _brief(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]

