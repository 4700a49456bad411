"""Provider selection: CPU here, CUDA only when really usable, never a silent fallback."""

from __future__ import annotations

import logging
from typing import ClassVar

import pytest

from engine import Classifier, InputError, ProviderError, RuntimeOptions, Seq2SeqLM
from engine import session as session_module
from engine.session import CPU, CUDA, requested_providers
from onnx_engine.cli import main


def test_cpu_and_auto_use_the_cpu_provider_here(distilbert):
    for provider in ("cpu", "auto", "CPU"):
        assert Classifier.load(distilbert.artifact, provider=provider).providers == [CPU]


@pytest.mark.skipif(CUDA in session_module.available_providers(), reason="a GPU build is installed")
def test_cuda_without_gpu_build_lists_available_providers(distilbert):
    with pytest.raises(ProviderError, match=r"not available\. Available providers: .*CPUExecution"):
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
        ("variant", "int2"), ("io_binding", "always"), ("provider", 3),
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


class _RecordingSession:
    """Stands in for ``ort.InferenceSession``: records what it is given, opens a CPU session."""

    calls: ClassVar[list[dict]] = []
    real = session_module.ort.InferenceSession

    def __new__(cls, model, sess_options=None, providers=None):
        cls.calls.append({"providers": providers})
        return cls.real(model, sess_options=sess_options, providers=[CPU])


def test_cuda_provider_options_reach_onnx_runtime(distilbert, monkeypatch):
    monkeypatch.setattr(session_module, "available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(session_module.ort, "preload_dlls", lambda: None, raising=False)
    _RecordingSession.calls = []
    monkeypatch.setattr(session_module.ort, "InferenceSession", _RecordingSession)
    options = RuntimeOptions(
        device_id=1, cudnn_conv_algo_search="HEURISTIC", arena_extend_strategy="kSameAsRequested",
        gpu_mem_limit=2 * 2**30,
    )
    Classifier.load(distilbert.artifact, options=options)  # falls back to CPU: no GPU here
    assert _RecordingSession.calls[0]["providers"] == [
        (CUDA, {"device_id": "1", "cudnn_conv_algo_search": "HEURISTIC",
                "arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": str(2 * 2**30)}),
        CPU,
    ]


def test_cli_device_id_reaches_the_cuda_provider(distilbert, monkeypatch, capsys):
    monkeypatch.setattr(session_module, "available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(session_module.ort, "preload_dlls", lambda: None, raising=False)
    _RecordingSession.calls = []
    monkeypatch.setattr(session_module.ort, "InferenceSession", _RecordingSession)
    assert main(["classify", str(distilbert.artifact), "I love it", "--device-id", "3"]) == 0
    assert _RecordingSession.calls[0]["providers"][0] == (CUDA, {"device_id": "3"})


def test_cli_bad_device_id_is_one_error_line(distilbert, capsys):
    assert main(["classify", str(distilbert.artifact), "x", "--device-id", "-1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error:") and "--device-id must be a GPU ordinal" in error


def test_unset_cuda_options_leave_onnx_runtime_defaults():
    assert session_module.cuda_provider_options(RuntimeOptions().resolved()) == {"device_id": "0"}


@pytest.mark.parametrize("field, value, message", [
    ("device_id", -1, "device_id must be a GPU ordinal"),
    ("device_id", "1", "device_id must be a GPU ordinal"),
    ("device_id", True, "device_id must be a GPU ordinal"),
    ("cudnn_conv_algo_search", "FAST", "HEURISTIC"),
    ("arena_extend_strategy", "grow", "kSameAsRequested"),
    ("gpu_mem_limit", 0, "gpu_mem_limit must be a positive"),
    ("gpu_mem_limit", 1.5, "gpu_mem_limit must be a positive"),
])
def test_bad_cuda_options_fail_when_the_options_are_made(field, value, message):
    with pytest.raises(InputError, match=message):
        RuntimeOptions(**{field: value})


@pytest.mark.cuda
def test_a_cuda_session_runs_on_the_device_it_was_given(distilbert):
    classifier = Classifier.load(distilbert.artifact, provider="cuda", options=RuntimeOptions(
        device_id=0, cudnn_conv_algo_search="HEURISTIC"))
    assert classifier.providers[0] == CUDA
    options = classifier.session.raw.get_provider_options()[CUDA]
    assert options["device_id"] == "0" and options["cudnn_conv_algo_search"] == "HEURISTIC"
