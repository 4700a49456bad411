"""Accuracy-aware int8: the per-matmul error emulation is the quantizer's, and the search keeps
the fewest most-sensitive matmuls in fp32 that make the gate hold."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine import Classifier
from engine.manifest import ArtifactManifest
from engine.numerics import softmax
from engine.variants.records import INT8
from export.check_set import check_texts
from export.variants.calibration import DEFAULT_SENTENCES
from export.variants.int8_search import DYNAMIC, METHODS, SMOOTHED, matmul_nodes
from export.variants.int8_sensitivity import matmul_sensitivity
from export.variants.optimize import OptimizeSettings, optimize_artifact
from export.variants.quantize import QuantizeSettings, StaticCalibration, quantize_int8


@pytest.fixture(scope="module")
def tiny(classifier_factory):
    exported = classifier_factory("distilbert-2")
    classifier = Classifier.load(exported.artifact, provider="cpu", variant="fp32")
    texts = check_texts(classifier.tokenizer.max_length)[:6]
    feeds = [classifier.session.select_inputs(classifier.tokenizer.encode(texts).feeds())]
    return exported.artifact / "model.onnx", feeds


def _scores(path, feeds) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return softmax(session.run(["logits"], feeds[0])[0].astype(np.float64))


def test_each_matmuls_emulated_error_is_what_quantizing_it_alone_does(tiny, tmp_path):
    source, feeds = tiny
    nodes = matmul_nodes(source, QuantizeSettings())[DYNAMIC]
    emulated = dict(matmul_sensitivity(source, nodes, feeds, softmax))
    assert len(emulated) == len(nodes) and max(emulated.values()) > 0
    expected = _scores(source, feeds)
    for node in nodes[:4]:
        quantize_int8(source, tmp_path / "one.onnx", QuantizeSettings(), only_nodes=[node])
        real = float(np.mean(np.max(np.abs(_scores(tmp_path / "one.onnx", feeds) - expected), -1)))
        assert emulated[node] == pytest.approx(real, rel=0.05, abs=1e-6), node


@pytest.mark.parametrize("way", ["dynamic", "static"])
def test_both_ways_store_the_embedding_tables_in_8_bits(tiny, tmp_path, way):
    """The word-embedding table is most of a small encoder's weights (94 of DistilBERT-base's
    268 MB): an int8 variant that leaves it fp32 is half the fp32 size, not a quarter."""
    source, feeds = tiny
    target = tmp_path / "int8.onnx"
    calibration = StaticCalibration(feeds, tmp_path / "ranges.json") if way == "static" else None
    quantize_int8(source, target, QuantizeSettings(), calibration)
    model = onnx.load(str(target))
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    # QDQ: the Gather reads its table through a DequantizeLinear (ORT moves it after the lookup)
    dequantized = {node.output[0]: node.input[0] for node in model.graph.node
                   if node.op_type == "DequantizeLinear"}
    read = [dequantized.get(node.input[0], node.input[0]) for node in model.graph.node
            if node.op_type == "Gather"]
    tables = [weights[name] for name in read if name in weights]
    assert len(tables) >= 2  # word and position embeddings
    assert {table.data_type for table in tables} <= {onnx.TensorProto.UINT8, onnx.TensorProto.INT8}
    assert target.stat().st_size <= 0.3 * source.stat().st_size  # the edge target
    assert np.max(np.abs(_scores(target, feeds) - _scores(source, feeds))) < 0.05


def test_a_tight_gate_keeps_the_fewest_most_sensitive_matmuls(distilbert, copy_artifact, tmp_path):
    artifact = copy_artifact(distilbert.artifact)
    calibration = tmp_path / "texts.txt"  # a few texts keep the search's trials short
    calibration.write_text("\n".join(DEFAULT_SENTENCES.read_text().splitlines()[:24]))
    quick = {"artifact": artifact, "variants": (INT8,), "timing_runs": 1, "quiet": True,
             "calibration": calibration}
    full = optimize_artifact(OptimizeSettings(**quick)).variants[INT8]
    assert full.passed and not full.made_with["model"]["accuracy_aware"]["kept_fp32_nodes"]
    # A bound below what full int8 measures: only keeping matmuls in fp32 can meet it.
    bound = full.figures.max_prob_diff / 3
    record = optimize_artifact(OptimizeSettings(
        **quick, gate_overrides=(f"int8.max_prob_diff={bound}",)
    )).variants[INT8]
    search = record.made_with["model"]["accuracy_aware"]
    kept = search["kept_fp32_nodes"]
    method = search["method"]
    ranked = next(trial["sensitivity"] for trial in search["trials"]
                  if trial.get("method") == method and "sensitivity" in trial)
    assert kept == [name for name, _ in ranked[: len(kept)]]  # most sensitive first
    tried = {trial["kept"]: trial["passed"] for trial in search["trials"]
             if trial.get("method") == method and "kept" in trial}
    assert tried[0] is False
    if record.passed:
        assert kept and record.figures.max_prob_diff <= bound
        assert tried[len(kept) - 1] is False  # one fewer did not pass: the fewest
        assert search["speed_cost"]["fully_quantized_latency_ms"] > 0
    else:  # no way passed within half the matmuls: the closest candidate, with its reason
        assert "max |Δprob|" in record.reason
    assert ArtifactManifest.read(artifact).variants[INT8] == record
    _check_way_order(search["trials"], record.made_with["model"])


def _check_way_order(trials, made_with) -> None:
    """The SmoothQuant-scaled way is tried first, and a way after one that passed with n
    matmuls in fp32 tries fewer than n only."""
    judged = [trial for trial in trials if "kept" in trial]
    assert judged[0]["method"] == SMOOTHED
    fewest_passing = None
    for method in METHODS:
        ways = [trial for trial in judged if trial["method"] == method]
        if fewest_passing is not None:
            assert all(trial["kept"] < max(fewest_passing, 1) for trial in ways), (method, ways)
        passing = [trial["kept"] for trial in ways if trial["passed"]]
        if fewest_passing is not None:
            passing.append(fewest_passing)
        fewest_passing = min(passing, default=None)
    chosen = made_with["accuracy_aware"]["method"]
    assert ("smooth_quant_alpha" in made_with) == (chosen == SMOOTHED)
