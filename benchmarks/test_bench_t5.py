"""t5-small (random weights) greedy generation of 32 new tokens from 32 input tokens.

Each contender decodes with the KV cache and stops a row at EOS; random weights rarely produce
EOS, so all of them generate the full 32 tokens.
"""

from __future__ import annotations

import pytest

from benchmarks.conftest import NEW_TOKENS

MODEL = "t5-small"
CONTENDERS = ("engine", "ort-raw", "optimum", "pytorch", "pipeline")
SEQ = 32


@pytest.mark.parametrize("batch", (1, 8), ids=lambda batch: f"b{batch}")
@pytest.mark.parametrize("name", CONTENDERS)
def test_generate(bench_contender, loaded, texts, name, variant, batch):
    contender = loaded(MODEL, name, variant)
    group = f"t5 greedy b{batch} s{SEQ} +{NEW_TOKENS} tokens"
    bench_contender(contender, texts(MODEL, batch, SEQ), group)
