"""provider='openvino' through the onnxruntime-ep-openvino plugin: listed, exact at f32, or a
clear error where the plugin is missing or offers no device (it lists Intel CPUs only)."""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import pytest

from engine import Classifier, ProviderError, RuntimeOptions
from engine.openvino import OPENVINO, openvino_cpu_device, openvino_options
from engine.session import CPU, PROVIDER_CHOICES, available_providers, requested_providers


def _openvino_unusable_reason() -> str | None:
    try:
        openvino_cpu_device(ort)
    except ProviderError as error:
        return str(error)
    return None


UNUSABLE = _openvino_unusable_reason()


def test_openvino_is_a_provider_choice_and_listed_exactly_when_usable():
    assert "openvino" in PROVIDER_CHOICES
    assert (OPENVINO in available_providers()) == (UNUSABLE is None)


def test_a_missing_plugin_is_a_provider_error_with_the_install_hint(monkeypatch, distilbert):
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_openvino", None)  # import fails
    with pytest.raises(ProviderError, match=r"plugin is not installed.*onnx-engine\[openvino\]"):
        Classifier.load(distilbert.artifact, provider="openvino")


@pytest.mark.skipif(UNUSABLE is None, reason="OpenVINO is usable on this machine")
def test_no_openvino_device_is_an_error_not_a_fallback(distilbert):
    with pytest.raises(ProviderError, match="Provider 'openvino' is not available"):
        requested_providers("openvino")
    with pytest.raises(ProviderError, match="Use provider='cpu'"):
        Classifier.load(distilbert.artifact, provider="openvino")


def test_precision_is_pinned_through_load_config():
    assert openvino_options("bf16") == {
        "load_config": '{"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}'
    }
    with pytest.raises(ProviderError, match="Unknown OpenVINO precision"):
        openvino_options("int4")


@pytest.mark.skipif(UNUSABLE is not None, reason=f"OpenVINO not usable here: {UNUSABLE}")
def test_openvino_at_f32_matches_the_cpu_provider(distilbert):
    texts = ["I love it", "Terrible, never again.", "a " * 300]
    expected = Classifier.load(distilbert.artifact, provider="cpu").logits(texts)
    options = RuntimeOptions(provider="openvino", openvino_precision="f32")
    classifier = Classifier.load(distilbert.artifact, options=options)
    assert classifier.providers[0] == OPENVINO and CPU in classifier.providers
    np.testing.assert_allclose(classifier.logits(texts), expected, rtol=1e-4, atol=1e-4)
