"""Provider selection: CPU here, CUDA only when really usable, never a silent fallback."""

from __future__ import annotations

import logging

import pytest

from engine import Classifier, ProviderError, RuntimeOptions
from engine import session as session_module
from engine.session import CPU, CUDA, requested_providers


def test_cpu_and_auto_use_the_cpu_provider_here(distilbert):
    for provider in ("cpu", "auto", "CPU"):
        assert Classifier.load(distilbert.artifact, provider=provider).providers == [CPU]


@pytest.mark.skipif(CUDA in session_module.available_providers(), reason="a GPU build is installed")
def test_cuda_without_gpu_build_lists_available_providers(distilbert):
    with pytest.raises(ProviderError, match="not available. Available providers: .*CPUExecution"):
        Classifier.load(distilbert.artifact, provider="cuda")


@pytest.mark.parametrize("provider", ["tensorrt", "gpu", "", 3])
def test_unknown_provider(provider):
    with pytest.raises(ProviderError, match="Unknown provider"):
        requested_providers(provider)


def test_cuda_listed_but_unusable_is_an_error_not_a_fallback(distilbert, monkeypatch):
    # onnxruntime-gpu on a machine without a GPU lists CUDA, then runs on CPU: simulate that.
    monkeypatch.setattr(session_module, "available_providers", lambda: [CUDA, CPU])
    with pytest.raises(ProviderError, match="fell back"):
        Classifier.load(distilbert.artifact, provider="cuda")


def test_auto_with_unusable_cuda_says_it_runs_on_cpu(distilbert, monkeypatch, caplog):
    monkeypatch.setattr(session_module, "available_providers", lambda: [CUDA, CPU])
    with caplog.at_level(logging.WARNING):
        classifier = Classifier.load(distilbert.artifact, provider="auto")
    assert classifier.providers == [CPU]
    assert "CUDA is not usable" in caplog.text


def test_requested_provider_lists():
    assert requested_providers("cpu") == [CPU]


def test_options_object_and_overrides(distilbert):
    options = RuntimeOptions(provider="cpu", threads=1, graph_optimization="basic")
    classifier = Classifier.load(distilbert.artifact, options=options, threads=2)
    assert classifier.providers == [CPU]
    with pytest.raises(ProviderError, match="threads"):
        Classifier.load(distilbert.artifact, threads=-1)
    with pytest.raises(ProviderError, match="graph_optimization"):
        Classifier.load(distilbert.artifact, options=RuntimeOptions(graph_optimization="max"))
