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


# --- host: compare ---

def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _figures(name: str, arrays: Any, variant: str, reference: Any) -> str:
    """A lossy variant's figures against x86-64's fp32 outputs."""
    def get(source: Any, key: str) -> np.ndarray:
        return source[f"{name}/{variant}/{key}"] if source is arrays else source[key]

    if name == "classifier":
        got, ref = get(arrays, "logits"), reference["classifier/fp32/logits"]
        agree = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
        return (f"max abs dlogit {np.abs(got - ref).max():.3g}, max abs dprob "
                f"{np.abs(_softmax(got) - _softmax(ref)).max():.3g}, top-1 agreement {agree:.0%}")
    if name == "embeddings":
        got, ref = get(arrays, "embeddings"), reference["embeddings/fp32/embeddings"]
        norms = np.linalg.norm(got, axis=-1) * np.linalg.norm(ref, axis=-1)
        cosine = np.sum(got * ref, -1) / norms
        return f"min cosine {cosine.min():.5f}, max abs d {np.abs(got - ref).max():.3g}"
    ids, ref_ids = get(arrays, "ids"), reference["t5/fp32/ids"]
    width = max(ids.shape[1], ref_ids.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1)  # noqa: E731
    same = float(np.mean([(a == b).all() for a, b in zip(pad(ids), pad(ref_ids))]))
    forced, ref_forced = get(arrays, "forced"), reference["t5/fp32/forced"]
    mask = np.abs(ref_forced).sum(-1) > 0
    agree = float(np.mean(forced.argmax(-1)[mask] == ref_forced.argmax(-1)[mask]))
    return (f"greedy sequences identical {same:.0%}, teacher-forced top-1 agreement {agree:.0%}, "
            f"max abs dlogit {np.abs(forced - ref_forced).max():.3g}")


def _fp32_diff(name: str, x86: Any, arm: Any) -> tuple[float, str]:
    keys = [key for key in x86.files if key.startswith(f"{name}/fp32/") and key in arm.files]
    diffs = {}
    for key in keys:
        if key.endswith("/ids"):
            diffs[key] = 0.0 if np.array_equal(x86[key], arm[key]) else float("inf")
        else:
            diffs[key] = float(np.abs(x86[key].astype(np.float64) - arm[key]).max())
    worst = max(diffs.values()) if diffs else float("nan")
    detail = ", ".join(f"{key.split('/')[-1]} {value:.2g}" for key, value in diffs.items())
    return worst, detail


def _label(meta: dict[str, Any]) -> str:
    cpu = meta["machine"].get("qemu_cpu")
    return f"aarch64 ({cpu})" if cpu else meta["machine"]["arch"]


def report(x86_path: Path, arm_paths: list[Path], out: Path, seconds: float | None = None) -> bool:
    """Write the markdown report; True when every fp32 output is within ``FP32_TARGET``."""
    from engine.manifest import ArtifactManifest

    x86_meta = json.loads(x86_path.with_suffix(".json").read_text())
    x86 = np.load(x86_path.with_suffix(".npz"))
    runs = [(json.loads(path.with_suffix(".json").read_text()), np.load(path.with_suffix(".npz")))
            for path in arm_paths]
    cache = Path(os.environ.get("ARM64_CHECK_CACHE", "artifacts/arm64"))
    labels = [_label(meta) for meta, _ in runs]
    lines = [
        "# aarch64 check (emulated): artifacts exported on x86-64, run on aarch64",
        "",
        "Written by `benchmarks/arm64_check.sh` (one command from a clean clone). The aarch64 side "
        "is a Debian bookworm arm64 root (debootstrap) run by qemu-user-static with the "
        "runtime-only install (`onnx-engine[cpu]` from the manylinux aarch64 wheels, no torch), "
        "once per emulated CPU model: `neoverse-n1` (NEON + dot product: Graviton2, Ampere "
        "Altra; Raspberry Pi 5's Cortex-A76 has the same extensions) and `max` (adds SVE, i8mm, "
        "bf16: the extensions of Graviton3/4-class cores). "
        "**Emulated: no timing is reported, because emulated timings say nothing about speed.**",
        "",
        f"| | x86-64 (export machine) | {' | '.join(labels)} |",
        "|---|---|" + "---|" * len(runs),
    ]
    for key in ("arch", "cpu"):
        lines.append(f"| {key} | {x86_meta['machine'][key]} | "
                     + " | ".join(meta["machine"][key] for meta, _ in runs) + " |")
    for key in x86_meta["versions"]:
        lines.append(f"| {key} | {x86_meta['versions'][key]} | "
                     + " | ".join(meta["versions"][key] for meta, _ in runs) + " |")
    lines += ["", "## fp32: aarch64 against x86-64 (target max |Δ| <= 1e-5)", "",
              "| model | CPU | max abs Δ | per output | within 1e-5 |", "|---|---|---|---|---|"]
    all_within = True
    for name in MODELS:
        for label, (_, arm) in zip(labels, runs):
            worst, detail = _fp32_diff(name, x86, arm)
            within = worst <= FP32_TARGET
            all_within &= within
            lines.append(f"| {name} | {label} | {worst:.2g} | {detail} | "
                         f"{'yes' if within else 'NO'} |")
    lines += ["", "## Lossy variants: figures against x86-64's fp32 outputs", "",
              "x86-64's fp32 outputs stand in for PyTorch here (they match it to ~1e-6); the "
              "gate figures the export recorded (x86-64 against PyTorch, on the check set and "
              "calibration texts) are in the last row of each model.", "",
              "| model | variant | machine | figures against x86-64 fp32 | max abs Δ against the "
              "same variant on x86-64 |", "|---|---|---|---|---|"]
    for name in MODELS:
        manifest = ArtifactManifest.read(cache / name / "artifact")
        for variant, record in manifest.variants.items():
            if variant == "fp32":
                continue
            if not record.passed:
                lines.append(f"| {name} | {variant} | export | failed its gate: {record.reason}"
                             " | - |")
                continue
            lines.append(f"| {name} | {variant} | x86-64 | {_figures(name, x86, variant, x86)} "
                         "| 0 |")
            for label, (_, arm) in zip(labels, runs):
                keys = [key for key in x86.files if key.startswith(f"{name}/{variant}/")
                        and not key.endswith("/ids") and key in arm.files]
                cross = max(float(np.abs(x86[key] - arm[key]).max()) for key in keys)
                lines.append(f"| {name} | {variant} | {label} | "
                             f"{_figures(name, arm, variant, x86)} | {cross:.3g} |")
            figures = record.figures
            gate = (f"max abs Δ {figures.max_abs_diff:.3g}, max abs Δprob "
                    f"{figures.max_prob_diff:.3g}, agreement {figures.agreement:.1%}"
                    if figures else "-")
            if figures and figures.min_cosine is not None:
                gate += f", min cosine {figures.min_cosine:.5f}"
            lines.append(f"| {name} | {variant} | export gate (x86-64 vs PyTorch) | {gate} | - |")
    lines += ["", "Integer matrix products are exact, so int8 outputs differ between machines "
              "only where the fp32 parts around them differ (a last-bit difference before an "
              "activation is quantized can round it to the neighbouring integer) or where a "
              "kernel computes something else:", ""]
    for label, (_, arm) in zip(labels, runs):
        keys = [key for key in x86.files if "/fp32/" not in key and "/auto/" not in key
                and key in arm.files and not key.endswith(("/cli", "/ids"))]
        worst = max(float(np.abs(x86[key].astype(np.float64) - arm[key]).max()) for key in keys)
        verdict = ("bit-identical to x86-64's for every model" if worst == 0 else
                   f"up to {worst:.3g} away from x86-64's "
                   "(max abs Δ over logits, scores and embeddings)")
        lines.append(f"- {label}: the int8 outputs are {verdict}.")
    lines += ["- Checked by hand on 2026-12-02 (ONNX Runtime 1.31.1, qemu 7.2): with "
              "`-cpu max,sve=off` the classifier's int8 logits are bit-identical to x86-64's "
              "again, at every SVE vector length (128, 256, 512 bits) they differ by the same "
              "0.6, and a lone "
              "`DynamicQuantizeLinear` or `MatMulInteger` node gives identical results with SVE "
              "on. So the difference comes from an SVE code path of ONNX Runtime (or from qemu's "
              "SVE emulation): only real SVE hardware (Graviton3/4) can say which. Either way it "
              "is the case the issue is about: a gate measured on x86-64 does not hold there, "
              "and only re-checking on the machine (torch-free `verify`, re-gating before "
              "`auto`) catches it."]
    lines += ["", "## What `auto` picked, the CLI, and `verify`", "",
              "| model | machine | auto picked | CLI (`classify` / `generate` / `embed`) against "
              "x86-64's | packed int8 | verify |", "|---|---|---|---|---|---|"]
    for name in MODELS:
        x = x86_meta["models"][name]
        lines.append(f"| {name} | x86-64 | {x['auto']} | (reference) | {_packs_text(x)} | "
                     f"{_verify_verdict(x['verify'])} |")
        for label, (meta, arm) in zip(labels, runs):
            a = meta["models"][name]
            cli = "; ".join(f"{variant}: {_cli_verdict(name, variant, x, a, x86, arm)}"
                            for variant in a["cli"])
            reason = f" ({a['auto_reason']})" if a.get("auto_reason") else ""
            lines.append(f"| {name} | {label} | {a['auto']}{reason} | {cli} | {_packs_text(a)} | "
                         f"{_verify_verdict(a['verify'])} |")
    for label, (meta, _) in zip(labels, runs):
        lines += ["", f"### `onnx-engine verify` output on {label}", ""]
        for name in MODELS:
            result = meta["models"][name]["verify"]
            lines += [f"{name} (exit status {result['status']}):", "", "```",
                      result["output"].rstrip()[-2500:], "```", ""]
    if seconds is not None:
        lines.append(f"The whole check took {seconds:.0f} s of wall time (emulation included).")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return all_within


def _packs_text(entry: dict[str, Any]) -> str:
    return "; ".join(f"{label}: {text}" for label, text in entry.get("packs", {}).items())


def _verify_verdict(result: dict[str, Any]) -> str:
    """``verify``'s verdict and each variant's result from its table, in one cell."""
    text = result["output"]
    if "is needed to export and verify" in text:
        return "not available torch-free (needs transformers)"
    rows = []
    for line in text.splitlines():
        tokens = line.split()
        if tokens and tokens[0] in ("fp32", "fused", "int8", "fp16", "bf16"):
            verdict = next((token for token in tokens if token.lower() in ("pass", "fail")), "?")
            rows.append(f"{tokens[0]} {verdict}")
    detail = ", ".join(rows)
    if "VERIFY PASSED" in text:
        return f"passed ({detail})"
    if "VERIFY FAILED" in text:
        return f"**FAILED** (exit {result['status']}: {detail})"
    return f"exit {result['status']}: " + (text.strip().splitlines() or ["(no output)"])[-1][:160]


def _cli_verdict(name: str, variant: str, x: dict, a: dict, x86: Any, arm: Any) -> str:
    """Whether the aarch64 CLI ran and printed what x86-64's did (numbers within tolerance)."""
    got, want = a["cli"][variant], x["cli"].get(variant)
    if got["status"] != 0:
        return f"FAILED (exit {got['status']})"
    if name == "embeddings":
        diff = float(np.abs(arm[f"{name}/{variant}/cli"] - x86[f"{name}/{variant}/cli"]).max())
        return f"ran, max abs Δ vs x86-64 {diff:.2g}"
    if name == "t5":
        same = got["output"] == want["output"]
        return "ran, same text as x86-64" if same else "ran, text differs from x86-64"
    rows = [json.loads(line) for line in got["output"].splitlines() if line.startswith("{")]
    ref = [json.loads(line) for line in want["output"].splitlines() if line.startswith("{")]
    diff = max(abs(g["score"] - r["score"]) for row, ref_row in zip(rows, ref)
               for g, r in zip(row["labels"], ref_row["labels"]))
    same = all([g["label"] for g in row["labels"]] == [r["label"] for r in ref_row["labels"]]
               for row, ref_row in zip(rows, ref))
    return f"ran, {'same' if same else 'DIFFERENT'} label order, max abs Δscore {diff:.2g}"


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
        within = report(args.x86, args.arm, args.out, args.seconds)
        print(args.out.read_text())
        return 0 if within else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
