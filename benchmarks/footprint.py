"""Edge footprint: install size per extra, artifact size per variant, and `classify`'s cold start.

    python benchmarks/footprint.py [--cache artifacts/footprint] [--model full|tiny] [--runs 3]

- Install size: for each extra of onnx-engine, the distributions it pulls in (its requirements,
  followed recursively through ``importlib.metadata``, with environment markers evaluated) and the
  size on disk of each one's installed files (its RECORD). Measured in the current virtual
  environment, not in a fresh one per extra: a distribution shared by two extras counts in both,
  and an extra whose packages are not installed here is reported as such.
- Artifact size per variant: the seeded DistilBERT (full size by default: 66M parameters, random
  weights) exported with an int8 variant, then packed per variant with ``onnx-engine pack``.
- Cold start and peak RSS: ``python -m onnx_engine classify PACKED TEXT`` in a fresh process,
  from its start until it exits after one prediction (the process's own ``ru_maxrss`` from
  ``os.wait4``); median of ``--runs``. The unpacked artifact's fp32 is measured the same way.

Writes benchmarks/results/footprint.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PROJECT = "onnx-engine"
EXTRAS = ("cpu", "gpu", "openvino", "serve", "export", "bench", "ray", "dev")


def _distribution(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _requirements(dist: metadata.Distribution, extras: frozenset[str]) -> list[Requirement]:
    """The requirements ``dist`` needs with ``extras``, markers evaluated for this interpreter."""
    wanted = []
    for text in dist.requires or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras or {""}):
            wanted.append(requirement)
    return wanted


def closure(extra: str | None) -> tuple[dict[str, metadata.Distribution], list[str]]:
    """Installed distributions that ``onnx-engine[extra]`` pulls in (the project itself left
    out), and the names of required ones that are not installed here."""
    project = _distribution(PROJECT)
    if project is None:
        raise SystemExit(f"{PROJECT} is not installed in this environment: pip install -e .")
    found: dict[str, metadata.Distribution] = {}
    missing: list[str] = []
    queue = [(project, frozenset({extra}) if extra else frozenset())]
    while queue:
        dist, extras = queue.pop()
        for requirement in _requirements(dist, extras):
            key = canonicalize_name(requirement.name)
            if key in found or key in missing:
                continue
            child = _distribution(requirement.name)
            if child is None:
                missing.append(key)
                continue
            found[key] = child
            queue.append((child, frozenset(requirement.extras)))
    return found, missing


def installed_bytes(dist: metadata.Distribution) -> int:
    """Size on disk of a distribution's installed files, from its RECORD."""
    total = 0
    for file in dist.files or []:
        path = Path(file.locate())
        if path.is_file():
            total += path.stat().st_size
    return total


def install_sizes() -> list[str]:
    lines = ["| install | size | largest distributions | not installed here |", "|---|---|---|---|"]
    rows = [("core (numpy, tokenizers; no runtime)", None)] + [(f"`.[{e}]`", e) for e in EXTRAS]
    rows.insert(2, ("`.[cpu]`, only onnxruntime, numpy, tokenizers (what the engine imports)",
                    "cpu-lean"))
    for label, extra in rows:
        dists, missing = closure("cpu" if extra == "cpu-lean" else extra)
        if extra == "cpu-lean":
            direct = {"onnxruntime", "numpy", "tokenizers"}
            dists = {key: dist for key, dist in dists.items() if key in direct}
        sizes = {key: installed_bytes(dist) for key, dist in dists.items()}
        top = sorted(sizes.items(), key=lambda item: -item[1])[:4]
        largest = ", ".join(f"{key} {size / 1e6:.0f}" for key, size in top)
        lines.append(f"| {label} | {sum(sizes.values()) / 1e6:.0f} MB | {largest} | "
                     f"{', '.join(missing) or '-'} |")
    return lines


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "onnx_engine", *args]


def prepare(cache: Path, full: bool) -> Path:
    """The seeded DistilBERT with an int8 variant, exported once into ``cache``."""
    artifact = cache / ("distilbert-full" if full else "distilbert-tiny")
    if (artifact / "manifest.json").is_file():
        from engine.manifest import ArtifactManifest

        if "int8" in ArtifactManifest.read(artifact).variants:
            return artifact
    from export.exporter import ExportSettings, export_model
    from export.variants.optimize import OptimizeSettings, optimize_artifact
    from onnx_engine.sample_models import (
        FULL_SIZE_DISTILBERT,
        TinyClassifierSpec,
        build_tiny_classifier,
    )

    spec = FULL_SIZE_DISTILBERT if full else TinyClassifierSpec("distilbert", seed=1)
    checkpoint = build_tiny_classifier(cache / f"{artifact.name}-checkpoint", spec)
    export_model(ExportSettings(model=str(checkpoint), output=artifact, quiet=True, force=True))
    optimize_artifact(OptimizeSettings(artifact=artifact, variants=("int8",), timing_runs=1,
                                       quiet=True))
    return artifact


def artifact_sizes(artifact: Path, cache: Path) -> tuple[list[str], dict[str, Path]]:
    """Sizes of the whole artifact and of a pack per variant (and the .ort pack of int8)."""
    from engine.manifest import ArtifactManifest
    from engine.variants.choice import variant_records

    manifest = ArtifactManifest.read(artifact)
    whole = sum(record.size for record in manifest.files.values())
    lines = ["| artifact | files | size | share of the fp32 pack |", "|---|---|---|---|",
             f"| whole artifact (every variant) | {len(manifest.files)} "
             f"| {whole / 1e6:.1f} MB | - |"]
    packs: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    variants = [name for name, record in variant_records(manifest).items() if record.passed]
    for variant, ort in [*((name, False) for name in variants), ("int8", True)]:
        if variant not in variants:
            continue
        label = f"{variant}.ort" if ort else variant
        out = cache / f"{artifact.name}-packed-{label}"
        argv = _cli("pack", str(artifact), str(out), "--variant", variant, "--force")
        subprocess.run([*argv, *(["--ort-format"] if ort else [])], check=True,
                       stdout=subprocess.DEVNULL)
        packed = ArtifactManifest.read(out)
        sizes[label] = sum(record.size for record in packed.files.values())
        packs[label] = out
        share = sizes[label] / sizes["fp32"] if "fp32" in sizes else float("nan")
        lines.append(f"| `pack --variant {variant}{' --ort-format' if ort else ''}` | "
                     f"{len(packed.files)} | {sizes[label] / 1e6:.1f} MB | {share:.1%} |")
    return lines, packs


def cold_start(argv: list[str], runs: int) -> tuple[float, float]:
    """Median wall seconds and peak RSS (MB) of a fresh process running ``argv`` to its exit.

    Each run is started by a small launcher process: Linux counts a child's peak RSS from the
    fork, so a child of this process (which holds the exporter and torch) would report this
    process's size instead of its own.
    """
    seconds, peaks = [], []
    for _ in range(runs):
        launched = subprocess.run([sys.executable, __file__, "--measure", *argv],
                                  capture_output=True, text=True, cwd=REPO)
        if launched.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {launched.stderr[-800:]}")
        wall, peak = launched.stdout.split()
        seconds.append(float(wall))
        peaks.append(float(peak))
    return statistics.median(seconds), statistics.median(peaks)


def measure(argv: list[str]) -> int:
    """Run ``argv`` once; print its wall seconds and its own peak RSS in MB (``os.wait4``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                               cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.stderr.write(process.stderr.read().decode())
        return 1
    print(f"{wall:.4f} {usage.ru_maxrss / 1024:.1f}")  # ru_maxrss is in KiB on Linux
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        return measure(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=REPO / "artifacts" / "footprint")
    parser.add_argument("--model", choices=("full", "tiny"), default="full")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "footprint.md")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    artifact = prepare(args.cache, args.model == "full")
    load_before = os.getloadavg()
    size_lines, packs = artifact_sizes(artifact, args.cache)
    text = "a quietly moving film with a plot that never quite lands"
    timed = [("packed int8", packs["int8"], "int8"),
             ("packed int8, .ort", packs["int8.ort"], "int8"),
             ("whole artifact, fp32", artifact, "fp32"), ("whole artifact, int8", artifact, "int8")]
    start_lines = ["| `onnx-engine classify` on | cold start (s) | peak RSS (MB) |",
                   "|---|---|---|"]
    for label, folder, variant in timed:
        wall, peak = cold_start(_cli("classify", str(folder), "--variant", variant, "-q", text),
                                args.runs)
        start_lines.append(f"| {label} | {wall:.2f} | {peak:.0f} |")
    import onnxruntime

    from engine.cpu import current_cpu

    model = ("full-size DistilBERT (66M parameters, seeded random weights)" if args.model == "full"
             else "tiny seeded DistilBERT")
    lines = [
        "# Edge footprint",
        "",
        f"Measured by `python benchmarks/footprint.py --model {args.model} --runs {args.runs}` on "
        f"{current_cpu().describe()}, Python {platform.python_version()}, ONNX Runtime "
        f"{onnxruntime.__version__}. Load average (1/5/15 min) "
        f"{' / '.join(f'{value:.2f}' for value in load_before)} before the measurements, "
        f"{' / '.join(f'{value:.2f}' for value in os.getloadavg())} after.",
        "",
        "## Install size per extra",
        "",
        "From this virtual environment's installed files (each distribution's RECORD, followed "
        "through the requirements of `onnx-engine[EXTRA]`), not a fresh environment per extra; "
        "`pip` itself is not counted. An extra's row includes the core.",
        "",
        *install_sizes(),
        "",
        f"## Artifact size per variant ({model})",
        "",
        *size_lines,
        "",
        "## Cold start and peak memory of `classify`",
        "",
        "A fresh `python -m onnx_engine classify ARTIFACT --variant V -q TEXT` from process start "
        f"to exit after one prediction (imports, hash check of the files used, session creation, "
        f"one call); peak RSS is the process's own `ru_maxrss`; median of {args.runs} runs on a "
        "shared 2-core machine, so expect drift between runs.",
        "",
        *start_lines,
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
