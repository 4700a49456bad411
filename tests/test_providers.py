"""Provider selection: CPU here, CUDA only when really usable, never a silent fallback."""

from __future__ import annotations

import logging

import pytest

from engine import Classifier, InputError, ProviderError, RuntimeOptions, Seq2SeqLM
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
    with pytest.raises(InputError, match="Unknown provider"):
        requested_providers(provider)
    with pytest.raises(InputError, match="Unknown provider"):
        RuntimeOptions(provider=provider)


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
    with pytest.raises(InputError, match="threads"):
        Classifier.load(distilbert.artifact, threads=-1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threads", 0), ("threads", True), ("threads", 1.5), ("graph_optimization", "max"),
        ("memory_arena", "yes"), ("spin_wait", 1), ("verify_hashes", 0),
        ("variant", "int4"), ("io_binding", "always"), ("provider", 3),
    ],
)
def test_every_option_is_checked_when_constructed(field, value):
    with pytest.raises(InputError, match=field):
        RuntimeOptions(**{field: value})


def test_options_that_are_not_runtime_options_are_refused(distilbert):
    with pytest.raises(InputError, match="RuntimeOptions"):
        Classifier.load(distilbert.artifact, options={"provider": "cpu"})


def test_user_options_are_layered_over_class_defaults():
    # The CLI passes only what the user set; Seq2SeqLM keeps its spin-off default under it.
    user = RuntimeOptions(provider="CPU", threads=2)
    resolved = Seq2SeqLM.resolve_options(user)
    assert (resolved.provider, resolved.threads, resolved.spin_wait) == ("cpu", 2, False)
    assert Classifier.resolve_options(user).spin_wait is True
    assert Seq2SeqLM.resolve_options(RuntimeOptions(spin_wait=True)).spin_wait is True
    assert Seq2SeqLM.resolve_options(None, variant="fp32").variant == "fp32"
