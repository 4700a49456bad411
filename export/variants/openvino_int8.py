"""The ``int8-openvino`` variant: calibrated int8 made by NNCF, run by OpenVINO.

ONNX Runtime's int8 quantizes activations on every call and runs the rest of the graph around
its int8 ops in fp32; OpenVINO fuses a calibrated QDQ graph into int8 kernels (VNNI / AMX) with
the scales folded in. NNCF's post-training quantization makes that graph: the transformer
preset (``ModelType.TRANSFORMER``, mixed: symmetric per-channel int8 weights, asymmetric
activations), SmoothQuant, activation ranges calibrated on the calibration texts and fast bias
correction. Its ONNX backend is used, so the variant stays one ONNX file (what the manifest
hashes and OpenVINO reads) and the ignored scope names the exported graph's own nodes.

Measured on the real all-MiniLM-L6-v2 encoder with a seeded head, fully quantized, largest
|Δprob| vs fp32 on the check set and the 305 real sentences: 0.040 with SmoothQuant at alpha 0.95,
0.070 at 0.5, 0.077 without. Run in OpenVINO's bf16 instead of f32 around the int8 matmuls:
0.050 fully quantized, and 0.033 (f32: 0.029) with the 4 matmuls an f32 search kept, over the
gate, though 1.5x faster at b8 s128 (1.3x the bf16 variant). Hence alpha 0.95, and the precision
is part of the recipe (:func:`inference_precisions`): bf16 first where the CPU that makes the
variant runs bf16, then f32, every trial of a search judged in its precision, so a bf16 variant
may keep a few more matmuls in fp32. Where no bf16 trial passes (a tiny seeded embedder on an AMX
Xeon: min cosine 0.90 in bf16 with half its matmuls fp32, 0.998 fully quantized in f32), the
search runs again in f32, which keeps int8's speed-up; the precision used is recorded in
``made_with`` (``VariantRecord.openvino_precision``) with the rejected one's trials. The engine
runs the variant in the recorded precision, and never where that is bf16 and the CPU has none.

Where the fully quantized graph fails its gate, the unquantized graph is judged as the variant
runs: where even it fails (bf16's rounding alone), no trial can pass and the search stops.
Otherwise the matmuls are ranked by the error each causes quantized alone
(``export.variants.int8_sensitivity``) and the fewest most sensitive ones are kept in fp32
(NNCF's ignored scope) by doubling and bisection, as for the ``int8`` variant. Every written
graph is checked: a node kept in fp32 that still reads a dequantized input is an error.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.openvino import bf16_unusable_reason
from engine.variants.records import BF16, VariantGate
from export.dependencies import require
from export.errors import ExportError
from export.quiet import quiet_library_output
from export.variants.int8_search import (
    SearchProbe,
    choose_candidate,
    fewest_kept,
    judged_trial,
    passes,
)
from export.variants.int8_sensitivity import matmul_sensitivity

METHOD = "nncf"
UNQUANTIZED = "unquantized"  # the trial that judges the source graph itself
F32 = "f32"
# SmoothQuant's migration strength for MatMul inputs (see the module docstring for the figures).
SMOOTH_QUANT_ALPHA = 0.95
# The nodes the search may keep in fp32: the matmuls, and the Gemm of a classifier head.
SEARCHED_OPS = ("MatMul", "Gemm")
# Never quantized: an int8 embedding table saves no arithmetic, and every token's vector (the
# whole model's input) would carry its rounding; on a tiny seeded DistilBERT that alone kept
# |Δprob| above 0.03 with half the matmuls in fp32.
ALWAYS_FP32_OPS = ("Gather",)


class KeptNodeQuantizedError(ExportError):
    """NNCF quantized an input of a node it was told to keep in fp32."""


def inference_precisions() -> tuple[str, ...]:
    """What OpenVINO may run around the int8 matmuls, in the order the search tries them on the
    machine that makes the variant: bf16 (the faster) where OpenVINO runs bf16 on this CPU, as
    the bf16 variant decides it, then f32, where bf16's rounding no longer adds to int8's."""
    return (F32,) if bf16_unusable_reason() is not None else (BF16, F32)


def build_needs_probe(source: Path, target: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """The builder for tasks without a search probe: int8-openvino needs calibration inputs.

    Raises:
        ExportError: always; the variant is then recorded as not built, with this reason.
    """
    raise ExportError(
        "int8-openvino is made for one-graph text models whose checker can calibrate and judge "
        "trial graphs (classifiers, embeddings, token classifiers); use --int8 or --bf16 here."
    )


def search_openvino_int8(
    source: Path,
    target: Path,
    gate: VariantGate,
    probe: SearchProbe,
    max_kept_share: float = 0.5,
) -> dict[str, Any]:
    """Write NNCF's int8 graph of ``source`` with the fewest fp32 matmuls that pass to ``target``.

    ``probe`` judges a graph as OpenVINO runs it, in the variant's precision. When no trial
    passes with at most ``max_kept_share`` of the matmuls in fp32, the one closest to passing
    is written and the gate then fails it with its figures.

    Returns:
        How the variant was made: NNCF's settings, the nodes kept in fp32 with the error each
        caused quantized alone, every trial, and what keeping them cost in speed.

    Raises:
        MissingDependencyError: nncf or onnx is not installed.
        KeptNodeQuantizedError: a node of the ignored scope was quantized after all.
    """
    matmuls = searched_nodes(source)
    trials: list[dict[str, Any]] = []
    sensitivity: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="onnx-engine-int8-openvino-") as scratch:
        folder = Path(scratch)

        def trial(kept: Sequence[str]) -> Any:
            made_with = quantize_with_nncf(source, target, probe.feeds, kept)
            return judged_trial(METHOD, kept, made_with, target, folder, probe, gate, trials)

        full = trial(())
        chosen = full
        if not passes(full, gate) and max_kept_share > 0 and (
            probe.options.openvino_precision == F32
            or _floor_passes(source, target, folder, probe, gate, matmuls, trials)
        ):
            order = matmul_sensitivity(source, matmuls, probe.sample_feeds, probe.scores)
            sensitivity = {name: round(error, 6) for name, error in order}
            limit = max(1, int(len(matmuls) * max_kept_share))
            chosen = fewest_kept(trial, [name for name, _ in order], full, gate, limit)
        chosen, cost = choose_candidate({METHOD: (chosen, full.file)}, gate, probe, target)
        shutil.copyfile(chosen.file, target)
    return {
        **chosen.made_with,
        "accuracy_aware": {
            "method": METHOD,
            "matmuls": len(matmuls),
            "kept_fp32_nodes": list(chosen.kept),
            # Why each stayed fp32: the mean largest |Δscore| it caused quantized alone.
            "kept_fp32_sensitivity": {name: sensitivity[name] for name in chosen.kept},
            "speed_cost": cost,
            "trials": trials,
            "passed": passes(chosen, gate),
        },
    }


def _floor_passes(
    source: Path,
    target: Path,
    folder: Path,
    probe: SearchProbe,
    gate: VariantGate,
    matmuls: Sequence[str],
    trials: list[dict[str, Any]],
) -> bool:
    """Whether the unquantized graph, run as the variant runs (OpenVINO, in a precision below
    f32), passes: the most any trial can keep. A matmul kept in fp32 still runs in the inference
    precision, so where bf16 alone fails the gate no search in bf16 can pass; it is recorded
    as the trial ``unquantized``, and the search stops there. In f32 the unquantized graph is
    the exported model itself, so the caller skips this."""
    shutil.copyfile(source, target)
    return passes(judged_trial(UNQUANTIZED, matmuls, {}, target, folder, probe, gate, trials), gate)


def quantize_with_nncf(
    source: Path, target: Path, feeds: Sequence[Mapping[str, Any]], kept: Sequence[str]
) -> dict[str, Any]:
    """Quantize ``source`` with NNCF, calibrated on ``feeds``, ``kept`` nodes in fp32; write
    ``target`` and return how it was made.

    Raises:
        MissingDependencyError: nncf or onnx is not installed.
        KeptNodeQuantizedError: a ``kept`` node still reads a dequantized input.
    """
    nncf, onnx = require("nncf"), require("onnx")
    model = onnx.load(str(source))
    smoothing = nncf.AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA)
    with quiet_library_output():  # NNCF logs every ignored node and draws progress bars
        quantized = nncf.quantize(
            model,
            nncf.Dataset(list(feeds)),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(feeds),
            ignored_scope=nncf.IgnoredScope(names=list(kept), types=list(ALWAYS_FP32_OPS),
                                            validate=False),
            advanced_parameters=nncf.AdvancedQuantizationParameters(
                smooth_quant_alphas=smoothing
            ),
        )
    still_quantized = dequantized_readers(quantized, kept)
    if still_quantized:
        raise KeptNodeQuantizedError(
            f"NNCF quantized inputs of {still_quantized}, which were to stay fp32; its ignored "
            "scope did not match the graph's node names."
        )
    onnx.save(quantized, str(target))
    return {
        "method": "nncf.quantize (ONNX backend, QDQ; run by OpenVINO)",
        "model_type": "transformer",
        "preset": "mixed (symmetric per-channel int8 weights, asymmetric activations)",
        "smooth_quant_alpha": SMOOTH_QUANT_ALPHA,
        "always_fp32_ops": list(ALWAYS_FP32_OPS),
        "calibration_inputs": len(feeds),
        "nncf": nncf.__version__,
    }


def searched_nodes(source: Path) -> list[str]:
    """The names of the ``SEARCHED_OPS`` nodes of the graph at ``source``, in graph order."""
    onnx = require("onnx")
    model = onnx.load(str(source), load_external_data=False)
    return [node.name for node in model.graph.node if node.op_type in SEARCHED_OPS]


def dequantized_readers(model: Any, nodes: Sequence[str]) -> list[str]:
    """Those of ``nodes`` that read an output of a DequantizeLinear node: quantized inputs."""
    producer = {output: node for node in model.graph.node for output in node.output}
    wanted = set(nodes)
    return [
        node.name for node in model.graph.node
        if node.name in wanted and any(
            name in producer and producer[name].op_type == "DequantizeLinear"
            for name in node.input
        )
    ]
