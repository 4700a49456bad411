"""Which provider gates a CUDA variant (fp16): CUDA where a CUDA session really works, else the
CPU through casts, and the manifest says which (``checked_on``). On a GPU (marker ``cuda``), the
fp16 variants run on CUDA with the KV cache on the device.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import Classifier, Seq2SeqLM
from engine.variants.records import FP16, TARGET_CPU, TARGET_CUDA
from export.variants import optimize as optimize_module
from export.variants.optimize import OptimizeSettings, optimize_artifact
from onnx_engine.bench.transfers import TransferCounter


def _fp16_record(artifact):
    settings = OptimizeSettings(artifact, variants=(FP16,), timing_runs=1, quiet=True)
    return optimize_artifact(settings).variants[FP16]


def test_without_a_working_gpu_fp16_is_gated_on_cpu_and_says_so(distilbert, copy_artifact,
                                                                 monkeypatch):
    monkeypatch.setattr(optimize_module, "cuda_unusable_reason", lambda: "no GPU in this test")
    record = _fp16_record(copy_artifact(distilbert.artifact))
    assert record.target == TARGET_CUDA
    assert record.checked_on == TARGET_CPU
    assert record.passed, record.reason


@pytest.mark.cuda
def test_on_a_gpu_fp16_is_gated_on_cuda_and_runs_there(distilbert, t5_v1_1, copy_artifact):
    classifier_artifact = copy_artifact(distilbert.artifact)
    record = _fp16_record(classifier_artifact)
    assert record.checked_on == TARGET_CUDA and record.passed, record.reason
    classifier = Classifier.load(classifier_artifact, provider="cuda", variant=FP16)
    assert classifier.providers[0] == "CUDAExecutionProvider"
    t5_artifact = copy_artifact(t5_v1_1.artifact)
    record = _fp16_record(t5_artifact)
    assert record.checked_on == TARGET_CUDA, record
    assert record.figures.finite
    lm = Seq2SeqLM.load(t5_artifact, provider="cuda", variant=FP16)
    with TransferCounter() as counter:
        results = lm.generate(["translate: a house", "b"], max_new_tokens=6, num_beams=3,
                              output_logits=True)
    assert counter.cache_copies() == 0
    assert all(np.isfinite(result.step_logits).all() for result in results)
