"""OpenVINO: provider='openvino' (exact at f32), and the gated bf16 variant that ``auto`` picks
where it is fastest; where OpenVINO or the CPU cannot run bf16, clear errors and no bf16."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

import numpy as np
import pytest

import engine.openvino
from engine import Classifier, Embedder, ProviderError, Seq2SeqLM
from engine.cpu import CpuInfo
from engine.errors import ArtifactError, InputError
from engine.manifest import ArtifactManifest
from engine.openvino import bf16_unusable_reason
from engine.options import PROVIDER_CHOICES, RuntimeOptions
from engine.session import OPENVINO, available_providers
from engine.variants.choice import variant_records
from engine.variants.records import BF16, FP32, RUNTIME_OPENVINO, TARGET_CPU
from export.variants.optimize import OptimizeSettings, optimize_artifact
from onnx_engine.commands.optimize import requested_variants

BF16_UNUSABLE = bf16_unusable_reason()
needs_bf16 = pytest.mark.skipif(
    BF16_UNUSABLE is not None, reason=f"OpenVINO cannot run bf16 here: {BF16_UNUSABLE}"
)
TEXTS = ["I love it", "Terrible, never again.", "a " * 300]
NO_BF16_CPU = CpuInfo("Imaginary CPU without bf16", ("avx2", "fma"), 2)


def test_openvino_is_a_provider_choice_listed_where_installed():
    assert "openvino" in PROVIDER_CHOICES
    assert OPENVINO in available_providers()  # CI installs the openvino extra


def test_missing_openvino_is_a_provider_error_with_the_install_hint(monkeypatch, distilbert):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails
    assert OPENVINO not in available_providers()
    with pytest.raises(ProviderError, match=r"OpenVINO is not installed.*onnx-engine\[openvino\]"):
        Classifier.load(distilbert.artifact, provider="openvino")


def test_openvino_at_f32_matches_onnx_runtime(distilbert):
    expected = Classifier.load(distilbert.artifact, provider="cpu").logits(TEXTS)
    classifier = Classifier.load(distilbert.artifact, provider="openvino")
    assert classifier.providers == [OPENVINO] and classifier.variant == FP32
    np.testing.assert_allclose(classifier.logits(TEXTS), expected, rtol=1e-4, atol=1e-4)


def test_openvino_runs_the_t5_decode_loop_and_embeddings(t5_factory, tiny_embedder_factory):
    t5 = t5_factory("t5")
    sources = ["translate English to German: the house is small", ""]
    expected = Seq2SeqLM.load(t5.artifact, provider="cpu").generate(sources, max_new_tokens=12)
    lm = Seq2SeqLM.load(t5.artifact, provider="openvino")
    assert lm.providers == [OPENVINO]
    generated = lm.generate(sources, max_new_tokens=12)
    token_ids = [list(item.token_ids) for item in generated]
    assert token_ids == [list(item.token_ids) for item in expected]
    embedded = tiny_embedder_factory("mean")
    reference = Embedder.load(embedded.artifact, provider="cpu").embed(TEXTS)
    vectors = Embedder.load(embedded.artifact, provider="openvino").embed(TEXTS)
    np.testing.assert_allclose(vectors, reference, rtol=1e-4, atol=1e-5)


def test_an_onnx_runtime_only_variant_is_refused_on_openvino(distilbert):
    with pytest.raises(InputError, match="runs on ONNX Runtime, not OpenVINO"):
        Classifier.load(distilbert.artifact, provider="openvino", variant="int8")


@pytest.fixture(scope="module")
def bf16_artifact(classifier_factory, tmp_path_factory):
    """The tiny DistilBERT with a bf16 variant made, gated and timed on this CPU (on a CPU
    without bf16, recorded as not built: the tests that need it built are ``needs_bf16``)."""
    artifact = tmp_path_factory.mktemp("bf16") / "artifact"
    shutil.copytree(classifier_factory("distilbert-2").artifact, artifact)
    optimize_artifact(OptimizeSettings(artifact=artifact, variants=(BF16,), timing_runs=1,
                                       quiet=True))
    return artifact


@needs_bf16
def test_bf16_variant_runs_the_fp32_files_in_bf16_and_passes_its_gate(bf16_artifact):
    manifest = ArtifactManifest.read(bf16_artifact)
    record = variant_records(manifest)[BF16]
    assert record.passed, record.reason
    assert record.runtime == RUNTIME_OPENVINO and record.made_with["precision"] == "bf16"
    assert dict(record.graphs) == {"model": "model.onnx"}  # no second copy of the weights
    assert sorted(path.name for path in bf16_artifact.glob("*.onnx")) == ["model.onnx"]
    assert record.figures.max_prob_diff <= record.gate.max_prob_diff
    assert TARGET_CPU in record.speeds and record.checked_on == TARGET_CPU
    fp32 = Classifier.load(bf16_artifact, variant="fp32").logits(TEXTS)
    classifier = Classifier.load(bf16_artifact, variant="bf16")
    assert classifier.variant == BF16 and classifier.providers == [OPENVINO]
    difference = np.abs(classifier.logits(TEXTS) - fp32).max()
    assert 0 < difference <= 0.1  # really bf16 (not fp32 under its name), and close


@needs_bf16
def test_auto_picks_bf16_exactly_when_its_timing_is_the_fastest(bf16_artifact, copy_artifact):
    moved = copy_artifact(bf16_artifact)
    data = json.loads((moved / "manifest.json").read_text())
    for name, latency in ((FP32, 10.0), (BF16, 4.0)):
        data["variants"][name]["speeds"][TARGET_CPU]["latency_ms"] = {"b1": latency}
    (moved / "manifest.json").write_text(json.dumps(data))
    assert Classifier.load(moved).variant == BF16
    data["variants"][BF16]["speeds"][TARGET_CPU]["latency_ms"] = {"b1": 20.0}
    (moved / "manifest.json").write_text(json.dumps(data))
    assert Classifier.load(moved).variant == FP32
    # provider='cpu' means the CPU, not ONNX Runtime: bf16 qualifies there too.
    assert Classifier.load(moved, provider="cpu", variant="bf16").variant == BF16


@needs_bf16
def test_on_a_cpu_without_bf16_auto_skips_it_and_asking_is_an_error(bf16_artifact, monkeypatch):
    monkeypatch.setattr(engine.openvino, "current_cpu", lambda: NO_BF16_CPU)
    assert Classifier.load(bf16_artifact).variant == FP32
    with pytest.raises(ProviderError, match=r"runs on OpenVINO.*no bf16 instructions"):
        Classifier.load(bf16_artifact, variant="bf16")


def test_without_bf16_the_variant_is_recorded_unbuilt_and_all_leaves_it_out(
    distilbert, copy_artifact, monkeypatch, capsys
):
    monkeypatch.setattr(engine.openvino, "current_cpu", lambda: NO_BF16_CPU)
    artifact = copy_artifact(distilbert.artifact)
    manifest = optimize_artifact(OptimizeSettings(artifact=artifact, variants=(BF16,),
                                                  timing_runs=1, quiet=True))
    record = manifest.variants[BF16]
    assert not record.passed and "no bf16 instructions" in record.reason
    assert Classifier.load(artifact).variant == FP32
    flags = argparse.Namespace(all=True, fusion=False, int8=False, fp16=False, bf16=False)
    assert requested_variants(flags) == ("fused", "int8", "fp16")
    assert "--all: no bf16 variant: this CPU has no bf16 instructions" in capsys.readouterr().err


@needs_bf16
def test_t5_bf16_variant_is_gated_on_tokens_and_generates_on_openvino(t5_factory, tmp_path):
    artifact, record = _with_passing_bf16(t5_factory("t5").artifact, tmp_path)
    assert record.figures.agreement >= record.gate.min_agreement
    fp32 = variant_records(ArtifactManifest.read(artifact))[FP32]
    assert dict(record.graphs) == dict(fp32.graphs)
    lm = Seq2SeqLM.load(artifact, variant="bf16")
    assert lm.variant == BF16 and lm.providers == [OPENVINO]
    generated = lm.generate(["translate English to German: the house is small"], max_new_tokens=8)
    assert len(generated[0].token_ids) >= 1


@needs_bf16
def test_embedding_bf16_variant_passes_the_cosine_and_retrieval_gate(
    tiny_embedder_factory, tmp_path
):
    artifact, record = _with_passing_bf16(tiny_embedder_factory("mean").artifact, tmp_path)
    assert record.figures.min_cosine >= record.gate.min_cosine
    fp32 = Embedder.load(artifact, variant="fp32").embed(TEXTS)
    vectors = Embedder.load(artifact, variant="bf16").embed(TEXTS)
    cosine = np.sum(vectors * fp32, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(fp32, axis=1))
    assert cosine.min() >= 0.99 and not np.array_equal(vectors, fp32)


def _with_passing_bf16(source, tmp_path):
    """A copy of the artifact ``source`` with a bf16 variant made; asserts that it passed."""
    artifact = tmp_path / source.name
    shutil.copytree(source, artifact)
    manifest = optimize_artifact(OptimizeSettings(artifact=artifact, variants=(BF16,),
                                                  timing_runs=1, quiet=True))
    record = manifest.variants[BF16]
    assert record.passed, record.reason
    return artifact, record


# The OpenVINO precision belongs to its variant (issue 22, item 12): bf16 as a bare precision ran
# the fp32 variant in bf16 (|Δlogit| 1.8e-2) while .variant said fp32.
@pytest.mark.parametrize("variant", [FP32, "auto", "int8", None])
def test_bf16_precision_with_another_variant_is_refused_naming_the_bf16_variant(
    distilbert, variant
):
    bf16_precision = RuntimeOptions(openvino_precision="bf16")
    with pytest.raises(InputError, match=r"belongs to the gated 'bf16' variant.*variant='bf16'"):
        Classifier.load(distilbert.artifact, provider="openvino", options=bf16_precision,
                        variant=variant)
    with pytest.raises(InputError, match="belongs to the gated 'bf16' variant"):
        RuntimeOptions(openvino_precision="bf16", variant=variant or FP32)


def test_bf16_precision_runs_only_as_the_gated_bf16_variant(bf16_artifact):
    fp32 = Classifier.load(bf16_artifact, provider="cpu", variant=FP32).logits(TEXTS)
    on_openvino = Classifier.load(bf16_artifact, provider="openvino", variant=FP32)
    assert on_openvino.variant == FP32
    np.testing.assert_allclose(on_openvino.logits(TEXTS), fp32, rtol=1e-4, atol=1e-4)  # f32
    bf16_precision = RuntimeOptions(openvino_precision="bf16", variant=BF16)
    if BF16_UNUSABLE is not None:  # no bf16 here: the variant is not built, and asking fails
        with pytest.raises(ArtifactError, match=r"'bf16' variant failed.*could not be built"):
            Classifier.load(bf16_artifact, provider="openvino", options=bf16_precision)
        return
    classifier = Classifier.load(bf16_artifact, provider="openvino", options=bf16_precision)
    assert classifier.variant == BF16 and classifier.providers == [OPENVINO]
    assert 0 < np.abs(classifier.logits(TEXTS) - fp32).max() <= 0.1  # really bf16, and gated
