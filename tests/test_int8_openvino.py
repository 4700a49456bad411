"""int8-openvino: NNCF's calibrated int8 graph, made and gated by ``optimize``, run by OpenVINO
torch-free; the nodes it keeps in fp32 really stay fp32; ``auto`` picks it only where it passed
and is fastest."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest

import engine.openvino
import engine.variants.choice
import engine.variants.sessions
import export.variants.openvino_int8
from engine import Classifier, Embedder, RuntimeOptions
from engine.errors import ProviderError
from engine.manifest import ArtifactManifest
from engine.session import OPENVINO
from engine.variants.choice import choose_variant, variant_records
from engine.variants.records import (
    AUTO,
    BF16,
    FP32,
    INT8_OPENVINO,
    RUNTIME_OPENVINO,
    TARGET_CPU,
    VariantRecord,
    VariantSpeed,
)
from export.errors import ExportError
from export.variants.openvino_int8 import (
    F32,
    build_needs_probe,
    dequantized_readers,
    quantize_with_nncf,
    search_openvino_int8,
    searched_nodes,
)
from export.variants.optimize import OptimizeSettings, default_recipes, optimize_artifact
from onnx_engine.commands.optimize import requested_variants

UNUSABLE = engine.openvino.openvino_cpu_unusable_reason()
pytestmark = pytest.mark.skipif(UNUSABLE is not None, reason=f"no OpenVINO here: {UNUSABLE}")
TEXTS = ["I love it", "Terrible, never again.", "a " * 300]
# Random tiny weights are full of near-ties that any 8-bit rounding moves (fully quantized, the
# tiny DistilBERT moved |Δprob| by 0.05 here): the real-weights gate is measured in benchmarks/.
TINY_GATE = "int8-openvino.max_prob_diff=0.1"
CALIBRATION = [
    "The service was quick and friendly.", "I would not buy this again.", "It is fine, I guess.",
    "Absolutely wonderful evening!", "The package arrived broken.", "Average food, nice view.",
    "Worst purchase of the year.", "Great value for the price.",
]


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "texts.txt"
    path.write_text("\n".join(CALIBRATION), encoding="utf-8")
    return path


def _quick(artifact, calibration):
    """Optimize settings for int8-openvino on a tiny model: a few calibration texts, one round."""
    return OptimizeSettings(artifact=artifact, variants=(INT8_OPENVINO,), timing_runs=1,
                            quiet=True, calibration=calibration, gate_overrides=(TINY_GATE,))


@pytest.fixture(scope="module")
def int8_openvino_artifact(classifier_factory, tmp_path_factory, calibration_file):
    """The tiny DistilBERT with an int8-openvino variant made, gated and timed on this CPU."""
    artifact = tmp_path_factory.mktemp("int8-openvino") / "artifact"
    shutil.copytree(classifier_factory("distilbert-2").artifact, artifact)
    optimize_artifact(_quick(artifact, calibration_file))
    return artifact


def test_the_variant_is_a_gated_int8_graph_recorded_with_what_it_kept(int8_openvino_artifact):
    record = variant_records(ArtifactManifest.read(int8_openvino_artifact))[INT8_OPENVINO]
    assert record.passed, record.reason
    assert record.runtime == RUNTIME_OPENVINO and record.checked_on == TARGET_CPU
    assert dict(record.graphs) == {"model": "model.int8-openvino.onnx"}
    assert record.figures.max_prob_diff <= record.gate.max_prob_diff
    assert TARGET_CPU in record.speeds
    made = record.made_with["model"]
    assert made["method"].startswith("nncf.quantize")
    # bf16 around the int8 matmuls where this CPU runs bf16, as the bf16 variant decides it.
    expected = "f32" if engine.openvino.bf16_unusable_reason() is not None else "bf16"
    assert made["openvino_precision"] == expected == record.openvino_precision
    search = made["accuracy_aware"]
    assert search["matmuls"] > 0 and search["trials"][0]["kept"] == 0
    assert set(search["kept_fp32_sensitivity"]) == set(search["kept_fp32_nodes"])
    graph = onnx.load(str(int8_openvino_artifact / "model.int8-openvino.onnx"))
    assert any(node.op_type == "DequantizeLinear" for node in graph.graph.node)
    assert "model.int8-openvino.onnx" in ArtifactManifest.read(int8_openvino_artifact).files


def test_it_loads_and_runs_on_openvino_without_torch(int8_openvino_artifact):
    code = f"""
import json, sys
sys.modules["torch"] = None  # importing torch now fails
import numpy as np
from engine import Classifier
fp32 = Classifier.load({str(int8_openvino_artifact)!r}, variant="fp32")
model = Classifier.load({str(int8_openvino_artifact)!r}, variant="int8-openvino")
texts = {TEXTS!r}
moved = np.abs(model.scores(model.logits(texts)) - fp32.scores(fp32.logits(texts))).max()
print(json.dumps({{"variant": model.variant, "providers": model.providers,
                  "moved": float(moved), "transformers": "transformers" in sys.modules}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["variant"] == INT8_OPENVINO and report["providers"] == [OPENVINO]
    assert report["moved"] <= 0.1 and not report["transformers"]


def test_nodes_kept_in_fp32_read_no_dequantized_input(classifier_factory, tmp_path):
    exported = classifier_factory("distilbert-2")
    source = exported.artifact / "model.onnx"
    classifier = Classifier.load(exported.artifact, provider="cpu", variant="fp32")
    feeds = [classifier.session.select_inputs(classifier.tokenizer.encode([text]).feeds())
             for text in TEXTS]
    matmuls = searched_nodes(source)
    kept = matmuls[:2]
    made = quantize_with_nncf(source, tmp_path / "q.onnx", feeds, kept)
    graph = onnx.load(str(tmp_path / "q.onnx"))
    assert dequantized_readers(graph, kept) == []
    assert dequantized_readers(graph, matmuls[2:])  # the others are quantized
    gathers = [node.name for node in graph.graph.node if node.op_type == "Gather"]
    assert gathers and dequantized_readers(graph, gathers) == []  # tables stay fp32
    assert made["smooth_quant_alpha"] == 0.95 and made["calibration_inputs"] == len(TEXTS)


def test_auto_picks_it_only_where_it_passed_and_is_fastest(int8_openvino_artifact):
    records = variant_records(ArtifactManifest.read(int8_openvino_artifact))

    def timed(name: str, latency: float):
        return replace(records[name], speeds={TARGET_CPU: VariantSpeed({"b1": latency}, runs=1)})

    fast = {FP32: timed(FP32, 10.0), INT8_OPENVINO: timed(INT8_OPENVINO, 4.0)}
    assert choose_variant(fast, AUTO, on_cuda=False, openvino_unusable=None).name == INT8_OPENVINO
    slow = {**fast, INT8_OPENVINO: timed(INT8_OPENVINO, 20.0)}
    assert choose_variant(slow, AUTO, on_cuda=False, openvino_unusable=None).name == FP32
    failed = {**fast, INT8_OPENVINO: replace(fast[INT8_OPENVINO], passed=False, reason="x")}
    assert choose_variant(failed, AUTO, on_cuda=False, openvino_unusable=None).name == FP32
    unusable = "OpenVINO is not installed"
    assert choose_variant(fast, AUTO, on_cuda=False, openvino_unusable=unusable).name == FP32


def test_auto_loads_it_when_the_manifest_times_it_fastest(int8_openvino_artifact, copy_artifact):
    moved = copy_artifact(int8_openvino_artifact)
    data = json.loads((moved / "manifest.json").read_text())
    for name, latency in ((FP32, 10.0), (INT8_OPENVINO, 4.0)):
        data["variants"][name]["speeds"][TARGET_CPU]["latency_ms"] = {"b1": latency}
    (moved / "manifest.json").write_text(json.dumps(data))
    classifier = Classifier.load(moved)
    assert classifier.variant == INT8_OPENVINO and classifier.providers == [OPENVINO]
    assert Classifier.load(moved, provider="openvino", variant=INT8_OPENVINO).variant == (
        INT8_OPENVINO)


def test_embeddings_get_the_variant_too(
    tiny_embedder_factory, copy_artifact, calibration_file, monkeypatch
):
    """Made in f32 on every CPU: in bf16 no int8 trial of this tiny embedder passes on an AMX
    Xeon (min cosine 0.90), and the search running again in f32 is tested below."""
    monkeypatch.setattr(export.variants.openvino_int8, "bf16_unusable_reason",
                        lambda: "this CPU has no bf16 instructions")
    artifact = copy_artifact(tiny_embedder_factory("mean").artifact)
    settings = replace(_quick(artifact, calibration_file), gate_overrides=())
    manifest = optimize_artifact(settings)
    record = manifest.variants[INT8_OPENVINO]
    assert record.passed, record.reason
    assert record.figures.min_cosine >= record.gate.min_cosine
    assert record.openvino_precision == F32
    embedder = Embedder.load(artifact, variant=INT8_OPENVINO)
    reference = Embedder.load(artifact, variant="fp32").embed(TEXTS)
    cosine = np.sum(embedder.embed(TEXTS) * reference, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(embedder.embed(TEXTS), axis=1))
    assert cosine.min() >= 0.99


def test_without_openvino_it_is_recorded_unbuilt(distilbert, copy_artifact, monkeypatch):
    monkeypatch.setattr(engine.openvino, "openvino_cpu_unusable_reason",
                        lambda: "OpenVINO is not installed")
    artifact = copy_artifact(distilbert.artifact)
    manifest = optimize_artifact(OptimizeSettings(artifact=artifact, variants=(INT8_OPENVINO,),
                                                  timing_runs=1, quiet=True))
    record = manifest.variants[INT8_OPENVINO]
    assert not record.passed and "could not be built: OpenVINO is not installed" in record.reason
    assert not (artifact / "model.int8-openvino.onnx").exists()


def test_tasks_without_a_probe_say_why_and_the_flags_ask_for_it(tmp_path):
    with pytest.raises(ExportError, match="one-graph text models"):
        build_needs_probe(tmp_path / "a.onnx", tmp_path / "b.onnx", {})
    flags = {"fusion": False, "int8": False, "fp16": False, "bf16": False, "int8_openvino": True}
    assert requested_variants(argparse.Namespace(all=False, **flags)) == (INT8_OPENVINO,)
    flags["int8_openvino"] = False
    assert INT8_OPENVINO not in requested_variants(argparse.Namespace(all=True, **flags))


BF16_UNUSABLE = engine.openvino.bf16_unusable_reason()


@pytest.mark.parametrize("precision", ["bf16", "f32"])
def test_it_is_searched_gated_and_run_in_the_precision_it_records(
    precision, distilbert, copy_artifact, calibration_file, monkeypatch
):
    """Issue 19: bf16 around the int8 matmuls where the CPU has it, f32 where not; every trial
    of the search, the gate and the engine run the variant in the recorded precision."""
    if precision == BF16 and BF16_UNUSABLE is not None:
        pytest.skip(f"no bf16 here: {BF16_UNUSABLE}")
    if precision == "f32":  # this CPU seen without bf16
        monkeypatch.setattr(export.variants.openvino_int8, "bf16_unusable_reason",
                            lambda: "this CPU has no bf16 instructions")
    compiled: list[str] = []

    class Spy(engine.variants.sessions.OpenVinoSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            compiled.append(self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())

    monkeypatch.setattr(engine.variants.sessions, "OpenVinoSession", Spy)
    artifact = copy_artifact(distilbert.artifact)
    record = optimize_artifact(_quick(artifact, calibration_file)).variants[INT8_OPENVINO]
    assert record.passed, record.reason
    assert record.openvino_precision == precision
    assert record.made_with["model"]["openvino_precision"] == precision
    trials = len(record.made_with["model"]["accuracy_aware"]["trials"])
    assert len(compiled) > trials and set(compiled) == {precision}  # trials, gate and timing
    model = Classifier.load(artifact, variant=INT8_OPENVINO)
    assert model.session.options.openvino_precision == precision


def test_where_no_bf16_trial_passes_it_is_searched_again_in_f32(
    distilbert, copy_artifact, calibration_file
):
    """bf16's rounding between the int8 matmuls can fail a model that int8 in f32 passes; the
    variant then keeps int8's speed-up in f32, and records the bf16 trials it rejected."""
    searches = []
    failing_bf16_trials = [{"method": "nncf", "kept": 0, "passed": False, "min_cosine": 0.9}]

    def search(source, target, gate, probe):
        searches.append(probe)
        if len(searches) == 1:  # the bf16 search: none of its trials passed
            return {"accuracy_aware": {"trials": failing_bf16_trials, "passed": False}}
        return search_openvino_int8(source, target, gate, probe)

    recipe = replace(default_recipes()[INT8_OPENVINO], search=search,
                     precisions=lambda: (BF16, F32))
    artifact = copy_artifact(distilbert.artifact)
    record = optimize_artifact(_quick(artifact, calibration_file),
                               recipes={INT8_OPENVINO: recipe}).variants[INT8_OPENVINO]
    assert len(searches) == 2
    assert record.passed, record.reason
    assert record.openvino_precision == F32
    assert record.made_with["model"]["openvino_precision"] == F32
    searched = record.made_with["model"]["accuracy_aware"]
    assert searched["passed"] and searched["rejected_precisions"] == {BF16: failing_bf16_trials}
    assert Classifier.load(artifact, variant=INT8_OPENVINO).session.options.openvino_precision == (
        F32)


def _int8_openvino(precision: str | None) -> VariantRecord:
    made = {"method": "nncf"} if precision is None else {"openvino_precision": precision}
    return VariantRecord(INT8_OPENVINO, {"model": "m.onnx"}, target=TARGET_CPU,
                         made_with={"model": made}, passed=True, runtime=RUNTIME_OPENVINO)


def test_the_recorded_precision_decides_where_it_runs(monkeypatch):
    """Made in bf16, the variant needs a bf16 CPU, as the bf16 variant does; made in f32 (or
    recorded before the precision was), OpenVINO's CPU device is enough."""
    assert _int8_openvino(None).openvino_precision == "f32"
    assert _int8_openvino("f32").openvino_precision == "f32"
    assert _int8_openvino(BF16).openvino_precision == BF16
    monkeypatch.setattr(engine.variants.choice, "bf16_unusable_reason", lambda: "no bf16 here")
    monkeypatch.setattr(engine.variants.choice, "openvino_cpu_unusable_reason", lambda: None)
    unusable = engine.variants.choice.openvino_variants_unusable
    assert unusable([_int8_openvino(BF16)]) == "no bf16 here"
    assert unusable([_int8_openvino("f32")]) is None
    options = engine.variants.sessions.options_for(_int8_openvino(BF16), RuntimeOptions())
    assert (options.provider, options.openvino_precision) == ("openvino", BF16)


def test_made_in_bf16_it_is_out_of_use_on_a_cpu_without_bf16(
    int8_openvino_artifact, copy_artifact, monkeypatch
):
    moved = copy_artifact(int8_openvino_artifact)
    data = json.loads((moved / "manifest.json").read_text())
    data["variants"][INT8_OPENVINO]["made_with"]["model"]["openvino_precision"] = BF16
    for name, latency in ((FP32, 10.0), (INT8_OPENVINO, 4.0)):
        data["variants"][name]["speeds"][TARGET_CPU]["latency_ms"] = {"b1": latency}
    (moved / "manifest.json").write_text(json.dumps(data))
    monkeypatch.setattr(engine.variants.choice, "bf16_unusable_reason",
                        lambda: "this CPU has no bf16 instructions")
    assert Classifier.load(moved).variant == FP32  # auto: the fastest it can run
    with pytest.raises(ProviderError, match="cannot run it here: this CPU has no bf16"):
        Classifier.load(moved, variant=INT8_OPENVINO)
