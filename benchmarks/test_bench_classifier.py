"""distilbert-base (random weights) classification: every contender on the same texts.

``pytest benchmarks/test_bench_classifier.py --benchmark-only`` prints one table per workload, so
the contenders of a workload sit side by side. The CLI (``onnx-engine bench``) adds alternating
rounds, ratios, the physical floor, cold start and memory; this suite is the quick look.
"""

from __future__ import annotations

import pytest

MODEL = "distilbert-base"
CONTENDERS = ("engine", "ort-raw", "optimum", "pytorch", "pipeline")
WORKLOADS = ((1, 8), (1, 32), (1, 128), (8, 128))


@pytest.mark.parametrize("batch,seq", WORKLOADS, ids=[f"b{b}-s{s}" for b, s in WORKLOADS])
@pytest.mark.parametrize("name", CONTENDERS)
def test_classify(bench_contender, loaded, texts, name, variant, batch, seq):
    contender = loaded(MODEL, name, variant)
    bench_contender(contender, texts(MODEL, batch, seq), f"classifier b{batch} s{seq}")
