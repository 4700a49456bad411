"""The benchmark builds a variant its own cached artifact lacks with the export optimizer, called
directly (not through the CLI), and says why when it cannot."""

from __future__ import annotations

import pytest

from engine.manifest import ArtifactManifest
from onnx_engine.bench.errors import ContenderUnavailable
from onnx_engine.bench.variants import build_missing_variant, graph_files


def test_a_missing_variant_is_built_gated_and_then_found(distilbert, copy_artifact):
    artifact = copy_artifact(distilbert.artifact)
    with pytest.raises(ContenderUnavailable):
        graph_files(artifact, "fused")
    build_missing_variant(artifact, "fused")
    assert ArtifactManifest.read(artifact).variants["fused"].passed
    assert graph_files(artifact, "fused") == {"model": artifact / "model.fused.onnx"}
    assert (artifact / "model.fused.onnx").is_file()


def test_a_variant_the_optimizer_does_not_make_is_unavailable(tmp_path):
    with pytest.raises(ContenderUnavailable, match=r"does not make variant 'auto'.*fused, int8"):
        build_missing_variant(tmp_path, "auto")


def test_an_optimizer_error_is_unavailable_with_its_reason(tmp_path):
    with pytest.raises(ContenderUnavailable, match=r"for .int8. failed: .* has no manifest\.json"):
        build_missing_variant(tmp_path, "int8")
