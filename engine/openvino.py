"""OpenVINO as an ONNX Runtime execution provider plugin (``onnxruntime-ep-openvino``).

The plugin installs beside ``onnxruntime`` (not instead of it): its library is registered with
ONNX Runtime once per process, and sessions select its CPU device explicitly. OpenVINO picks its
own inference precision: on a CPU with AMX or AVX512-BF16 its default is bf16, so an "fp32" graph
would silently run in bf16. The precision is therefore always set (``f32`` unless asked
otherwise) through the plugin's ``load_config``; the plugin ignores a plain ``precision`` option
with a warning (1.8.1).
"""

from __future__ import annotations

import json
from typing import Any

from engine.cpu import current_cpu
from engine.errors import ProviderError

OPENVINO = "OpenVINOExecutionProvider"
PRECISIONS = ("f32", "bf16")
INSTALL_HINT = "pip install 'onnx-engine[openvino]' (the onnxruntime-ep-openvino plugin)"


def openvino_cpu_device(ort: Any) -> Any:
    """The plugin's CPU device, registering the plugin library with ONNX Runtime on first use.

    Raises:
        ProviderError: the plugin is not installed, or it offers no CPU device on this machine
            (its CPU device is listed only on Intel CPUs).
    """
    try:
        import onnxruntime_ep_openvino as plugin
    except ImportError as error:
        raise ProviderError(
            f"Provider 'openvino' is not available: the OpenVINO plugin is not installed. "
            f"{INSTALL_HINT}, or use provider='cpu'."
        ) from error
    if not any(device.ep_name == OPENVINO for device in ort.get_ep_devices()):
        try:
            ort.register_execution_provider_library(OPENVINO, plugin.get_library_path())
        except Exception as error:  # registered before, without listing a device
            if "already" not in str(error).lower():
                raise ProviderError(f"The OpenVINO plugin cannot be loaded: {error}") from error
    devices = [
        device for device in ort.get_ep_devices()
        if device.ep_name == OPENVINO and device.ep_metadata.get("ov_device") == "CPU"
    ]
    if not devices:
        raise ProviderError(
            f"Provider 'openvino' is not available: the OpenVINO plugin offers no CPU device on "
            f"this machine ({current_cpu().model}; it lists Intel CPUs only). Use provider='cpu'."
        )
    return devices[0]


def openvino_options(precision: str) -> dict[str, str]:
    """Plugin options that pin OpenVINO's inference precision (``f32`` or ``bf16``).

    Raises:
        ProviderError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ProviderError(
            f"Unknown OpenVINO precision {precision!r}. Choose one of: {', '.join(PRECISIONS)}."
        )
    return {"load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": precision}})}
