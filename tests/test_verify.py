"""`onnx-engine verify`: passes on a fresh artifact, fails on a tampered one."""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from onnx_engine.cli import main


def _tamper_with_weights(model_path) -> None:
    """Scale the classifier head: a valid model that gives different logits."""
    model = onnx.load(str(model_path))
    largest = max(model.graph.initializer, key=lambda tensor: tensor.dims[-1] if tensor.dims else 0)
    head = next(t for t in reversed(model.graph.initializer) if len(t.dims) == 2)
    for tensor in (head, largest):
        values = numpy_helper.to_array(tensor) * 3.0 + 0.5
        tensor.CopyFrom(numpy_helper.from_array(values.astype(values.dtype), tensor.name))
    onnx.save(model, str(model_path))


def test_verify_passes_on_a_fresh_artifact(any_classifier, capsys):
    assert main(["verify", str(any_classifier.artifact)]) == 0
    out = capsys.readouterr().out
    assert "max |Δ|" in out and "VERIFY PASSED" in out
    assert "all match the manifest" in out


def test_verify_with_explicit_reference(distilbert, capsys):
    code = main(["verify", str(distilbert.artifact), "--reference", str(distilbert.checkpoint)])
    assert code == 0


def test_verify_fails_on_a_tampered_model(distilbert, copy_artifact, capsys):
    folder = copy_artifact(distilbert.artifact)
    _tamper_with_weights(folder / "model.onnx")
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "model.onnx: sha256 differs" in out
    assert "FAIL" in out and "VERIFY FAILED" in out


def test_verify_against_another_model_fails(classifier_factory, capsys):
    first, other = classifier_factory("roberta-2"), classifier_factory("roberta-4")
    assert main(["verify", str(first.artifact), "--reference", str(other.checkpoint)]) == 1
    assert "VERIFY FAILED" in capsys.readouterr().out
