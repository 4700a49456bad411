"""A seconds-long ``onnx-engine bench`` on a tiny embedding artifact: the embedding contenders
load and run the same work, sentence-transformers is the speed-up baseline, and the engine's
vectors are compared by cosine. Figures are not judged here (see benchmarks/results/)."""

from __future__ import annotations

import json

import pytest

from onnx_engine.cli import main

CONTENDERS = ("engine", "ort-raw", "sentence-transformers", "sentence-transformers-onnx",
              "fastembed")


@pytest.fixture(scope="module")
def bench_model(tiny_embedder_factory, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench-embedding") / "bench.json"
    status = main([
        "bench", str(tiny_embedder_factory("mean").artifact), "--batch", "2", "--seq", "8",
        "--contenders", ",".join(CONTENDERS), "--warmup", "1", "--rounds", "2",
        "--min-rounds", "1", "--cold-runs", "0", "--no-floor", "--no-progress",
        "--json", str(out),
    ])
    assert status == 0
    return json.loads(out.read_text())["models"][0]


def test_every_embedding_contender_runs_the_workload(bench_model):
    assert bench_model["task"] == "feature-extraction"
    rows = {row["contender"]: row for row in bench_model["rows"]}
    assert set(rows) == set(CONTENDERS), bench_model["notes"]
    assert rows["sentence-transformers"]["speedup_vs_pipeline"] == pytest.approx(1.0)
    assert rows["engine"]["speedup_vs_pipeline"] > 0
    assert rows["ort-raw"]["time_vs_ort_raw"] == pytest.approx(1.0)


def test_engine_vectors_are_compared_with_sentence_transformers_by_cosine(bench_model):
    (agreement,) = bench_model["agreement"]
    assert agreement["measure"] == "min cosine" and agreement["reference"] == "pytorch fp32"
    assert agreement["agreement"] >= 0.99999 and agreement["rows_identical"] == 1.0
