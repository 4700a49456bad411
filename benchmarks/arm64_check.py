"""The pieces of ``benchmarks/arm64_check.sh``: the same artifacts run on x86-64 and on aarch64.

Subcommands (the shell script runs them in this order):

- ``cpu ROOT``: give an aarch64 root a plausible ``/proc/cpuinfo`` and
  ``/sys/devices/system/cpu/{possible,present}``. qemu-user (``-L ROOT``) opens those paths inside
  the root first; without them ONNX Runtime's CPU detection (cpuinfo) crashes at import.
- ``prepare CACHE`` (host, needs torch): the three tiny seeded models (DistilBERT classifier, T5,
  BERT encoder with mean pooling), exported with an int8 variant each, and ``texts.json``.
  Cached under CACHE, rebuilt when the exporter's or engine's source changes.
- ``outputs CACHE OUT`` (torch-free, runs on both machines): every passed variant and ``auto`` of
  each artifact through the engine (raw logits, greedy ids and scores, teacher-forced logits,
  embeddings) into ``OUT.npz``, the CLI's own ``classify`` / ``generate`` / ``embed`` output and
  ``verify``'s into ``OUT.json`` with what ``auto`` picked, versions and the machine.
- ``report X86 ARM OUT.md``: fp32 max |Δ| between the machines, each lossy variant's figures on
  both (against x86-64's fp32, which matches PyTorch to ~1e-6) beside the gate figures the x86
  export recorded, ``auto``'s picks and ``verify``'s verdicts.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("classifier", "t5", "embeddings")
TASK_COMMAND = {"classifier": "classify", "t5": "generate", "embeddings": "embed"}
MAX_NEW_TOKENS = 16
FP32_TARGET = 1e-5
# What /proc/cpuinfo says for each emulated CPU model (qemu -cpu NAME): the part and the
# features of the real core it stands for, so the engine's machine kind (ISA flags) tells the
# two apart as it would on real boards. max is described as a Neoverse-V1 (Graviton3): SVE,
# i8mm and bf16, as qemu's max emulates them.
CPU_MODELS = {
    "neoverse-n1": ("0xd0c", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                             "cpuid asimdrdm lrcpc dcpop asimddp ssbs"),
    "max": ("0xd40", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                     "asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm "
                     "dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 "
                     "dgh rng"),
}
_CPU_BLOCK = """processor\t: {index}
BogoMIPS\t: 50.00
Features\t: {features}
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: {part}
CPU revision\t: 1
"""


def fake_cpuinfo(cores: int, model: str = "neoverse-n1") -> str:
    """``/proc/cpuinfo`` text of an aarch64 machine with ``cores`` cores of ``model``."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if model not in CPU_MODELS:
        raise ValueError(f"unknown CPU model {model!r}; known: {', '.join(CPU_MODELS)}")
    part, features = CPU_MODELS[model]
    return "\n".join(_CPU_BLOCK.format(index=index, part=part, features=features)
                     for index in range(cores)) + "\n"


def write_fake_cpu(root: Path, cores: int = 2, model: str = "neoverse-n1") -> list[Path]:
    """Write the CPU description files ORT reads under an aarch64 root; returns their paths."""
    cpu_range = "0" if cores == 1 else f"0-{cores - 1}"
    files = {
        Path(root, "proc/cpuinfo"): fake_cpuinfo(cores, model),
        Path(root, "sys/devices/system/cpu/possible"): cpu_range + "\n",
        Path(root, "sys/devices/system/cpu/present"): cpu_range + "\n",
        Path(root, "sys/devices/system/cpu/online"): cpu_range + "\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


# --- host: build and export (torch) ---

def _source_stamp(repo: Path) -> str:
    """Hash of the exporter's and engine's sources: a cached artifact is stale when it changes."""
    digest = hashlib.sha256()
    for folder in ("engine", "export", "tests/tiny_encoder.py", "tests/tiny_classifiers.py"):
        paths = sorted(Path(repo, folder).rglob("*.py")) if Path(repo, folder).is_dir() else [
            Path(repo, folder)]
        for path in paths:
            digest.update(str(path.relative_to(repo)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def prepare(cache: Path) -> dict[str, Path]:
    """Export the three tiny models with int8 into ``cache`` (reused while sources are
    unchanged)."""
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "tests"))  # the tests' tiny encoder builder
    from tiny_encoder import build_tiny_encoder

    from export.exporter import ExportSettings, export_model
    from export.variants.optimize import OptimizeSettings, optimize_artifact
    from onnx_engine.sample_models import (
        TinyClassifierSpec,
        TinyT5Spec,
        build_tiny_classifier,
        build_tiny_t5,
    )

    cache.mkdir(parents=True, exist_ok=True)
    stamp = _source_stamp(repo)
    builders = {
        "classifier": (lambda out: build_tiny_classifier(
            out, TinyClassifierSpec("distilbert", num_labels=2, seed=1)), {}, {}),
        "t5": (lambda out: build_tiny_t5(out, TinyT5Spec("t5")),
               {"task": "text2text-generation"}, {}),
        "embeddings": (build_tiny_encoder, {"task": "feature-extraction"},
                       {"pooling": "mean", "normalize": True}),
    }
    artifacts = {}
    for name, (build, settings, task_options) in builders.items():
        artifact = cache / name / "artifact"
        stamp_file = cache / name / "stamp"
        if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
            checkpoint = build(cache / name / "checkpoint")
            export_model(ExportSettings(model=str(checkpoint), output=artifact, quiet=True,
                                        force=True, task_options=task_options, **settings))
            optimize_artifact(OptimizeSettings(artifact=artifact, variants=("int8",),
                                               timing_runs=1, quiet=True))
            stamp_file.write_text(stamp)
        artifacts[name] = artifact
        from onnx_engine.cli import main as cli

        ort_pack = cache / name / "packed-int8-ort"
        if cli(["pack", str(artifact), str(ort_pack), "--variant", "int8", "--ort-format",
                "--force"]) != 0:
            raise SystemExit(f"packing {artifact} with --ort-format failed")
    from export.check_set import SENTENCES

    texts = {
        "classifier": ["", "a", *SENTENCES, "the plot drags " * 20],
        "t5": [
            "translate English to German: the house is small", "summarize: a b c", *SENTENCES[:4]
        ],
        "embeddings": ["a", *SENTENCES, "the quick brown fox " * 10],
    }
    (cache / "texts.json").write_text(json.dumps(texts, indent=1, ensure_ascii=False))
    return artifacts


# --- both machines: run the engine and the CLI (torch-free) ---

def _versions() -> dict[str, str]:
    import onnxruntime
    import tokenizers

    return {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__, "tokenizers": tokenizers.__version__}


def _machine() -> dict[str, Any]:
    from engine.cpu import current_cpu

    cpu = current_cpu()
    return {"arch": platform.machine(), "cpu": cpu.describe(),
            "qemu_cpu": os.environ.get("QEMU_CPU", "")}


def _variant_outputs(name: str, model: Any, texts: list[str]) -> dict[str, np.ndarray]:
    if name == "classifier":
        return {"logits": model.logits(texts)}
    if name == "embeddings":
        return {"embeddings": model.embed(texts)}
    generated = model.generate(texts, max_new_tokens=MAX_NEW_TOKENS, output_scores=True)
    width = max(len(item.token_ids) for item in generated)
    ids = np.full((len(texts), width), -1, dtype=np.int64)
    for row, item in enumerate(generated):
        ids[row, :len(item.token_ids)] = item.token_ids
    forced = model.logits(texts, texts)  # teacher-forced on fixed targets: same on every machine
    return {"ids": ids, "scores": np.array([item.score for item in generated]),
            "forced": np.where(forced.mask[..., None] > 0, forced.logits, 0.0)}


def _cli(argv: list[str]) -> tuple[int, str]:
    """Run ``onnx-engine ARGV`` in this process (no exec: under qemu-user a child process
    would need binfmt_misc), returning its exit status and what it printed."""
    from onnx_engine.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    return status, out.getvalue()


def _packs(name: str, artifact: Path, cache: Path, out: Path, texts: list[str],
           arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Pack int8 here (torch-free), and load both that pack and the .ort pack made on x86-64:
    each must compute what the unpacked int8 variant computes on this machine."""
    import engine

    if not any(key.startswith(f"{name}/int8/") for key in arrays):
        return {"int8": "no passed int8 variant to pack"}
    results = {}
    here = out.with_name(f"{out.name}-{name}-packed-int8")
    status, printed = _cli(["pack", str(artifact), str(here), "--variant", "int8", "--force"])
    for label, folder in (("pack here", here), (".ort pack from x86-64",
                                                cache / name / "packed-int8-ort")):
        if label == "pack here" and status != 0:
            results[label] = f"pack FAILED: {printed.strip().splitlines()[-1]}"
            continue
        model = engine.load(folder, variant="int8")
        packed = _variant_outputs(name, model, texts)
        diff = max(float(np.abs(value.astype(np.float64) - arrays[f"{name}/int8/{key}"]).max())
                   for key, value in packed.items())
        results[label] = f"loads, max abs Δ vs unpacked int8 {diff:.2g}"
    try:  # the pack holds int8 alone: auto takes it only where it passes its gate here
        results["auto on the pack"] = f"picks {engine.load(here).variant}"
    except engine.OnnxEngineError as error:
        results["auto on the pack"] = f"refuses: {error}"
    return results


def outputs(cache: Path, out: Path) -> None:
    """Every passed variant and ``auto`` of each artifact, engine and CLI, into OUT.npz/.json."""
    import engine
    from engine.manifest import ArtifactManifest
    from engine.variants.choice import variant_records

    texts = json.loads((cache / "texts.json").read_text())
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"machine": _machine(), "versions": _versions(), "models": {}}
    for name in MODELS:
        artifact = cache / name / "artifact"
        manifest = ArtifactManifest.read(artifact)
        records = variant_records(manifest)
        entry: dict[str, Any] = {"variants": {}, "cli": {}}
        status, printed = _cli(["verify", str(artifact)])
        entry["verify"] = {"status": status, "output": printed[-4000:]}
        for variant in [*(n for n, r in records.items() if r.passed), "auto"]:
            model = engine.load(artifact, variant=variant)
            for key, value in _variant_outputs(name, model, texts[name]).items():
                arrays[f"{name}/{variant}/{key}"] = value
            entry["variants"][variant] = {"ran": model.variant}
            if variant == "auto":
                entry["auto"] = model.variant
                entry["auto_reason"] = getattr(model, "variant_reason", "")
        entry["packs"] = _packs(name, artifact, cache, out, texts[name], arrays)
        for variant in ("fp32", "int8"):
            if variant not in records or not records[variant].passed:
                continue
            cli_texts = [text for text in texts[name] if text]
            argv = [TASK_COMMAND[name], str(artifact), "--variant", variant, "-q"]
            if name == "classifier":
                argv.append("--all-labels")
            if name == "t5":
                argv += ["--max-new-tokens", str(MAX_NEW_TOKENS)]
            if name == "embeddings":
                saved = out.with_name(f"{out.name}-{variant}.npy")
                argv += ["--save", str(saved)]
            status, printed = _cli([*argv, *cli_texts])
            cli = {"status": status, "output": printed}
            if name == "embeddings" and status == 0:
                arrays[f"{name}/{variant}/cli"] = np.load(saved)
            entry["cli"][variant] = cli
        meta["models"][name] = entry
    np.savez(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cpu = commands.add_parser("cpu")
    cpu.add_argument("root", type=Path)
    cpu.add_argument("--cores", type=int, default=2)
    cpu.add_argument("--model", default="neoverse-n1", choices=sorted(CPU_MODELS))
    commands.add_parser("prepare").add_argument("cache", type=Path)
    run = commands.add_parser("outputs")
    run.add_argument("cache", type=Path)
    run.add_argument("out", type=Path)
    rep = commands.add_parser("report")
    rep.add_argument("x86", type=Path)
    rep.add_argument("out", type=Path)
    rep.add_argument("arm", type=Path, nargs="+", help="one run per emulated CPU model")
    rep.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.command == "cpu":
        for path in write_fake_cpu(args.root, args.cores, args.model):
            print(path)
    elif args.command == "prepare":
        for path in prepare(args.cache).values():
            print(path)
    elif args.command == "outputs":
        outputs(args.cache, args.out)
        print(f"outputs written to {args.out}.npz/.json in {time.monotonic() - started:.0f} s")
    else:
        # Imported here: the report runs on the host only, where the repository is importable
        # (the emulated root runs ``outputs`` with only the installed engine on its path).
        from benchmarks.arm64_report import report

        within = report(args.x86, args.arm, args.out, args.seconds)
        print(args.out.read_text())
        return 0 if within else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
