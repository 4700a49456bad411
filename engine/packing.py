"""Pack one variant of an artifact into a deployable artifact that holds only what it runs.

An artifact ships every variant's graphs (fp32 + fused + int8 + ...); an edge box runs one. The
packed artifact keeps that variant's graphs and every other file the manifest lists (tokenizer,
config, stored references, ...), drops the graphs only other variants use, and rewrites the
manifest to list exactly what is kept, so it opens, hash-checks and loads like the original.

The export's own graphs stay described in ``manifest.graphs`` (their roles and signatures, which
every variant shares) even when their files are left out; the engine then treats fp32 as absent
(:func:`engine.variants.choice.variant_records`).

With ``ort_format`` the kept graphs are converted to ONNX Runtime's ``.ort`` form by ORT's own
tool (``onnxruntime.tools.convert_onnx_models_to_ort``), which also writes the
``required_operators.config`` that a reduced-size ONNX Runtime build is compiled with; the
manifest then names the ``.ort`` files, which ``InferenceSession`` loads directly.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from engine.artifact import Artifact, file_record
from engine.errors import ArtifactError, InputError, MissingDependencyError
from engine.manifest import ArtifactManifest
from engine.variants.choice import variant_records
from engine.variants.records import RUNTIME_ONNXRUNTIME

ORT_OPERATORS_CONFIG = "required_operators.config"


@dataclass(frozen=True)
class PackSettings:
    """What to pack and where; ``force`` replaces an existing ``output`` (house rule)."""

    artifact: Path
    output: Path
    variant: str
    force: bool = False
    ort_format: bool = False


@dataclass(frozen=True)
class PackReport:
    """Sizes in bytes of every file of the original (``before``) and of the pack (``after``)."""

    variant: str
    output: Path
    before: dict[str, int]
    after: dict[str, int]

    def table(self) -> str:
        """One line per file (kept, dropped or new) with its size before and after."""
        names = sorted(set(self.before) | set(self.after))
        width = max(len(name) for name in names)
        lines = [f"{'file':<{width}}  {'before':>12}  {'after':>12}"]
        for name in names:
            before, after = self.before.get(name), self.after.get(name)
            lines.append(f"{name:<{width}}  {_size(before):>12}  {_size(after):>12}")
        total_before, total_after = sum(self.before.values()), sum(self.after.values())
        lines.append(f"{'total':<{width}}  {_size(total_before):>12}  {_size(total_after):>12}"
                     f"  ({total_after / max(total_before, 1):.1%} of the original)")
        return "\n".join(lines)


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} MB" if value >= 100_000 else f"{value / 1e3:.1f} kB"


def packed_files(manifest: ArtifactManifest, variant: str) -> set[str]:
    """The listed files a pack of ``variant`` keeps: all of them but other variants' graphs.

    A graph's external-data side file (``NAME_data``) goes with its graph.
    """
    records = variant_records(manifest)
    def with_data(files: set[str]) -> set[str]:
        return files | {f"{file}_data" for file in files}

    graphs = with_data({file for record in records.values() for file in record.graphs.values()})
    graphs |= with_data({spec.file for spec in manifest.graphs.values()})
    own = with_data(set(records[variant].graphs.values()))
    return {name for name in manifest.files if name not in graphs or name in own}


def check_packable(manifest: ArtifactManifest, variant: str) -> None:
    """Refuse a variant the artifact does not have, or one that failed its gate.

    Raises:
        InputError: naming the variants that can be packed.
    """
    records = variant_records(manifest)
    passed = [name for name, record in records.items() if record.passed]
    choices = ", ".join(passed) or "none"
    if variant not in records:
        raise InputError(
            f"This artifact has no '{variant}' variant to pack; choose --variant from: {choices}."
        )
    if not records[variant].passed:
        raise InputError(
            f"The '{variant}' variant failed its accuracy gate ({records[variant].reason}) and "
            f"is not packed; choose --variant from: {choices}."
        )


def pack_artifact(settings: PackSettings) -> PackReport:
    """Write the packed artifact of ``settings.variant`` to ``settings.output``.

    Every kept file is hash-checked against the manifest as it is copied, so a pack never ships
    a file that changed. The pack is built in a staging folder beside ``output`` and renamed into
    place only when complete.

    Raises:
        InputError: ``output`` exists without ``force``, is the artifact itself, or the variant
            cannot be packed.
        ArtifactError: the artifact is incomplete or a kept file differs from its manifest.
    """
    source = Artifact.open(settings.artifact)
    manifest = source.manifest
    output = Path(settings.output).resolve()
    if output == source.path.resolve():
        raise InputError(f"The pack's output '{settings.output}' is the artifact itself: choose "
                         "another folder.")
    if output.exists() and not settings.force:
        raise InputError(f"'{settings.output}' already exists. Pass --force to replace it, or "
                         "choose another output folder.")
    check_packable(manifest, settings.variant)
    runtime = variant_records(manifest)[settings.variant].runtime
    if settings.ort_format and runtime != RUNTIME_ONNXRUNTIME:
        raise InputError(f"The '{settings.variant}' variant runs on {runtime}, which reads .onnx "
                         "files, not ONNX Runtime's .ort form: pack it without --ort-format.")
    keep = packed_files(manifest, settings.variant)
    broken = sorted(name for name in keep if name in source.broken_files)
    if broken:
        raise ArtifactError(f"The '{settings.variant}' variant cannot be packed: "
                            f"{source.broken_files[broken[0]]}")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.packing-", dir=output.parent))
    staging.chmod(0o755)
    try:
        for name in sorted(keep):
            shutil.copy2(source.verified_file(name), staging / name)
        packed = _packed_manifest(manifest, settings.variant, keep, staging)
        if settings.ort_format:
            packed = _to_ort_format(packed, settings.variant, staging)
        packed.write(staging)
        Artifact.open(staging)  # the pack opens like an artifact (sizes and listing agree)
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return PackReport(
        variant=settings.variant,
        output=output,
        before={name: record.size for name, record in manifest.files.items()},
        after={name: record.size for name, record in packed.files.items()},
    )


def _packed_manifest(
    manifest: ArtifactManifest, variant: str, keep: set[str], folder: Path
) -> ArtifactManifest:
    """``manifest`` listing only ``keep`` and only the packed variant's record."""
    files = {name: file_record(folder / name) for name in sorted(keep)}
    variants = {name: record for name, record in manifest.variants.items() if name == variant}
    return replace(manifest, files=files, variants=variants)


def _to_ort_format(manifest: ArtifactManifest, variant: str, folder: Path) -> ArtifactManifest:
    """Convert the packed variant's graphs to ``.ort`` (ORT's tool) and name them instead.

    The ``.onnx`` files are removed: a reduced-size ONNX Runtime build reads only ``.ort``.

    Raises:
        ArtifactError: ORT's converter failed on a graph (its message is kept).
        MissingDependencyError: the converter's own dependency (``onnx``) is not installed.
    """
    try:
        from onnxruntime.tools.convert_onnx_models_to_ort import (
            OptimizationStyle,
            convert_onnx_models_to_ort,
        )
    except ImportError as error:  # the converter imports `onnx`, which `.[cpu]` does not install
        raise MissingDependencyError(
            f"--ort-format needs ONNX Runtime's converter, which imports '{error.name}': pip "
            f"install {error.name} (or pack without --ort-format, which needs nothing more)."
        ) from error

    record = variant_records(manifest)[variant]
    renamed = {file: str(Path(file).with_suffix(".ort")) for file in set(record.graphs.values())}
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        source, converted = Path(scratch, "onnx"), Path(scratch, "ort")
        source.mkdir()
        for file in renamed:
            for name in (file, f"{file}_data"):
                if (folder / name).exists():
                    os.link(folder / name, source / name)
        log = io.StringIO()  # the tool prints a line per model; the CLI prints the size table
        try:
            with contextlib.redirect_stdout(log):
                convert_onnx_models_to_ort(source, output_dir=converted,
                                           optimization_styles=[OptimizationStyle.Fixed])
        except Exception as error:  # ORT's tool raises whatever its session raised
            raise ArtifactError(
                f"ONNX Runtime's .ort converter failed on the '{variant}' graphs: {error}. "
                f"Pack without --ort-format.\n{log.getvalue()}"
            ) from error
        for file, ort_file in renamed.items():
            shutil.move(converted / ort_file, folder / ort_file)
            for name in (file, f"{file}_data"):
                (folder / name).unlink(missing_ok=True)
        shutil.move(converted / ORT_OPERATORS_CONFIG, folder / ORT_OPERATORS_CONFIG)
    files = {name: record_ for name, record_ in manifest.files.items()
             if name not in renamed and name.removesuffix("_data") not in renamed}
    for name in [*renamed.values(), ORT_OPERATORS_CONFIG]:
        files[name] = file_record(folder / name)
    graphs = {role: replace(spec, file=renamed.get(spec.file, spec.file))
              for role, spec in manifest.graphs.items()}
    variants = {
        name: replace(stored, graphs={role: renamed.get(file, file)
                                      for role, file in stored.graphs.items()},
                      made_with={**stored.made_with, "format": "ort"})
        for name, stored in manifest.variants.items()
    }
    return replace(manifest, files=dict(sorted(files.items())), graphs=graphs, variants=variants)
