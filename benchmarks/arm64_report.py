"""The host side of ``benchmarks/arm64_check.sh``: x86-64 and aarch64 outputs compared into
the markdown report (fp32 max |Δ| between the machines, each lossy variant's figures on both
beside the gates the export recorded, ``auto``'s picks and ``verify``'s verdicts)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.arm64_check import FP32_TARGET, MODELS

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
