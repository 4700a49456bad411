"""``onnx-engine pack``: a one-variant artifact that opens, hash-checks and computes like the
original."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import engine
from engine.artifact import sha256_of
from engine.errors import ArtifactError, HashMismatchError
from engine.manifest import MANIFEST_NAME, ArtifactManifest
from engine.packing import ORT_OPERATORS_CONFIG, packed_files
from engine.variants.records import FP32, INT8
from export.variants.optimize import OptimizeSettings, optimize_artifact
from onnx_engine.cli import main

TEXTS = ["a fine film", "", "the plot drags on and on " * 6, "très bien 👍"]


@pytest.fixture(scope="module")
def with_int8(classifier_factory, tmp_path_factory):
    """The tiny DistilBERT with a passing int8 variant."""
    artifact = tmp_path_factory.mktemp("pack") / "artifact"
    shutil.copytree(classifier_factory("distilbert-2").artifact, artifact)
    optimize_artifact(OptimizeSettings(artifact=artifact, variants=(INT8,), timing_runs=1,
                                       quiet=True))
    assert ArtifactManifest.read(artifact).variants[INT8].passed
    return artifact


def _files(folder):
    return sorted(path.name for path in folder.iterdir())


def test_int8_pack_keeps_only_its_files_and_matches_the_original(with_int8, tmp_path, capsys):
    out = tmp_path / "packed"
    assert main(["pack", str(with_int8), str(out), "--variant", INT8]) == 0
    printed = capsys.readouterr().out
    original = ArtifactManifest.read(with_int8)
    packed = ArtifactManifest.read(out)
    int8_file = original.variants[INT8].graphs["model"]
    fp32_file = original.graphs["model"].file
    # Every original file but the fp32 graph, each listed and hashed as exported.
    assert set(packed.files) == set(original.files) - {fp32_file}
    assert _files(out) == sorted([*packed.files, MANIFEST_NAME])
    assert not (out / fp32_file).exists() and (out / int8_file).is_file()
    assert packed.files == {name: original.files[name] for name in packed.files}
    assert all(sha256_of(out / name) == record.sha256 for name, record in packed.files.items())
    assert list(packed.variants) == [INT8] and packed.variants[INT8] == original.variants[INT8]
    assert fp32_file in printed and int8_file in printed and "total" in printed

    model = engine.load(out)
    assert model.variant == INT8
    same = engine.load(with_int8, variant=INT8)
    np.testing.assert_array_equal(model.logits(TEXTS), same.logits(TEXTS))
    with pytest.raises(ArtifactError, match=r"no 'fp32' variant \(it has: int8\)"):
        engine.load(out, variant=FP32)


def test_packed_file_changed_in_place_fails_its_hash_check(with_int8, tmp_path):
    out = tmp_path / "packed"
    assert main(["pack", str(with_int8), str(out), "--variant", INT8]) == 0
    graph = out / ArtifactManifest.read(out).variants[INT8].graphs["model"]
    data = bytearray(graph.read_bytes())
    data[-5] ^= 0xFF  # same size: only the sha256 sees it
    graph.write_bytes(bytes(data))
    with pytest.raises(HashMismatchError, match="modified after it was written"):
        engine.load(out).logits(["x"])


def test_fp32_pack_drops_the_int8_graph(with_int8, tmp_path):
    manifest = ArtifactManifest.read(with_int8)
    kept = packed_files(manifest, FP32)
    assert manifest.variants[INT8].graphs["model"] not in kept
    out = tmp_path / "packed"
    assert main(["pack", str(with_int8), str(out), "--variant", FP32]) == 0
    model = engine.load(out)
    assert model.variant == FP32
    np.testing.assert_array_equal(model.logits(TEXTS),
                                  engine.load(with_int8, variant=FP32).logits(TEXTS))


def test_ort_format_pack_loads_the_ort_graph_and_matches(with_int8, tmp_path):
    out = tmp_path / "packed"
    assert main(["pack", str(with_int8), str(out), "--variant", INT8, "--ort-format"]) == 0
    packed = ArtifactManifest.read(out)
    graph = packed.variants[INT8].graphs["model"]
    assert graph.endswith(".int8.ort") and graph in packed.files
    assert not list(out.glob("*.onnx"))
    operators = (out / ORT_OPERATORS_CONFIG).read_text()
    assert ORT_OPERATORS_CONFIG in packed.files and "ai.onnx;" in operators
    assert "DynamicQuantizeLinear" in operators or "DynamicQuantizeMatMul" in operators
    model = engine.load(out)
    assert model.variant == INT8
    assert model.providers  # an InferenceSession opened the .ort file directly
    np.testing.assert_allclose(model.logits(TEXTS),
                               engine.load(with_int8, variant=INT8).logits(TEXTS), atol=1e-6)


def test_pack_refuses_an_existing_output_without_force(with_int8, tmp_path, capsys):
    out = tmp_path / "packed"
    out.mkdir()
    assert main(["pack", str(with_int8), str(out), "--variant", INT8]) == 2
    assert f"'{out}' already exists. Pass --force" in capsys.readouterr().err
    assert main(["pack", str(with_int8), str(out), "--variant", INT8, "--force"]) == 0
    assert engine.load(out).variant == INT8


def test_pack_refuses_a_variant_it_lacks_naming_the_choices(with_int8, tmp_path, capsys):
    assert main(["pack", str(with_int8), str(tmp_path / "o"), "--variant", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: This artifact has no 'fp16' variant to pack; choose --variant from: "
                   "fp32, int8."]
    assert not (tmp_path / "o").exists()


def test_pack_refuses_a_variant_that_failed_its_gate(with_int8, copy_artifact, tmp_path, capsys):
    artifact = copy_artifact(with_int8)
    path = artifact / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["variants"][INT8].update(passed=False, reason="max |Δprob| 0.3 > 0.05")
    path.write_text(json.dumps(data))
    assert main(["pack", str(artifact), str(tmp_path / "o"), "--variant", INT8]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: The 'int8' variant failed its accuracy gate (max |Δprob| 0.3 > 0.05) and is not "
        "packed; choose --variant from: fp32."
    )
    assert not (tmp_path / "o").exists()


def test_t5_int8_pack_generates_what_the_original_int8_does(t5_factory, tmp_path):
    artifact = tmp_path / "t5"
    shutil.copytree(t5_factory("t5").artifact, artifact)
    optimize_artifact(OptimizeSettings(artifact=artifact, variants=(INT8,), timing_runs=1,
                                       quiet=True))
    original = ArtifactManifest.read(artifact)
    if not original.variants[INT8].passed:
        pytest.skip(f"tiny T5 int8 failed its gate here: {original.variants[INT8].reason}")
    out = tmp_path / "packed"
    assert main(["pack", str(artifact), str(out), "--variant", INT8]) == 0
    packed = ArtifactManifest.read(out)
    fp32_files = {spec.file for spec in original.graphs.values()}
    assert not fp32_files & set(packed.files)
    assert not any((out / file).exists() for file in fp32_files)
    texts = ["translate English to German: hello", "summarize: a b c"]
    got = engine.load(out).generate(texts, max_new_tokens=8)
    want = engine.load(artifact, variant=INT8).generate(texts, max_new_tokens=8)
    assert [item.token_ids.tolist() for item in got] == [item.token_ids.tolist() for item in want]


def test_pack_refuses_a_variant_whose_file_is_missing(with_int8, copy_artifact, tmp_path, capsys):
    artifact = copy_artifact(with_int8)
    int8_file = ArtifactManifest.read(artifact).variants[INT8].graphs["model"]
    (artifact / int8_file).unlink()
    assert main(["pack", str(artifact), str(tmp_path / "o"), "--variant", INT8]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The 'int8' variant cannot be packed: ") and int8_file in err
    assert main(["pack", str(artifact), str(tmp_path / "o"), "--variant", FP32]) == 0


def test_ort_format_without_onnx_says_what_to_install(with_int8, tmp_path, monkeypatch, capsys):
    """The runtime-only install has no `onnx`, which ORT's converter imports; a plain pack
    still works there."""
    import sys

    for module in [name for name in sys.modules if name.startswith("onnxruntime.tools")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    out = tmp_path / "o"
    assert main(["pack", str(with_int8), str(out), "--variant", INT8, "--ort-format"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --ort-format needs ONNX Runtime's converter, which imports 'onnx': pip install "
        "onnx (or pack without --ort-format, which needs nothing more)."
    )
    assert not out.exists()
    assert main(["pack", str(with_int8), str(out), "--variant", INT8]) == 0


def test_packed_artifact_keeps_its_references_and_verifies_torch_free(with_int8, tmp_path,
                                                                       capsys):
    from engine.verification.references import REFERENCES_NAME

    out = tmp_path / "packed"
    assert main(["pack", str(with_int8), str(out), "--variant", INT8]) == 0
    assert REFERENCES_NAME in ArtifactManifest.read(out).files
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "file hashes: all match the manifest" in printed and "VERIFY PASSED" in printed
    rows = [line for line in printed.splitlines() if line.startswith(("fp32", "int8"))]
    assert [row.split()[0] for row in rows] == [INT8]


def test_auto_on_a_pack_whose_only_variant_fails_here_says_what_to_do(with_int8, tmp_path):
    """Re-gating on another kind of machine can fail the pack's only variant: auto then has
    nothing to pick and says so; the variant asked for by name is still selectable."""
    from dataclasses import replace

    from engine.variants.choice import select_variant

    out = tmp_path / "packed"
    assert main(["pack", str(with_int8), str(out), "--variant", INT8]) == 0
    packed = ArtifactManifest.read(out)
    failed = replace(packed, variants={INT8: replace(packed.variants[INT8], passed=False,
                                                     reason="max |Δprob| 0.2 > 0.05")})
    with pytest.raises(ArtifactError) as caught:
        select_variant(failed, "auto", on_cuda=False)
    assert str(caught.value) == (
        "variant='auto' has no variant of this artifact to pick on CPU: 'int8' failed its gate "
        "(max |Δprob| 0.2 > 0.05). Ask for one by name (variant='int8') to run it anyway, or "
        "pack a variant that can run here (onnx-engine pack ARTIFACT OUT --variant NAME)."
    )
    assert select_variant(packed, "auto", on_cuda=False)[0] == INT8
