"""``auto`` for T5 runs batched generate calls on the variant timed fastest at batch 8 where that
is not its pick (engine/variants/choice.py ``fastest_on_workload``, Seq2SeqLM ``_graphs_for``):
int4 wins batch 1 on AMX, int8 wins batch 8. The timings here are written into the manifest, so
the test does not depend on which variant this machine happens to run faster."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine import Seq2SeqLM
from engine.cpu import current_cpu
from engine.manifest import ArtifactManifest
from engine.options import RuntimeOptions
from engine.tasks import text2text
from engine.tasks.text2text import BATCH_WORKLOAD
from engine.variants.records import INT4, INT8
from export.variants.optimize import OptimizeSettings, optimize_artifact
from onnx_engine.commands.optimize import auto_choice_line
from onnx_engine.serving.model_specs import load_served_model

SOURCES = ["translate English to German: the house is small.", "a", "Numbers 7 8 9, symbols ! ?",
           "summarize: the quick brown fox jumps over the lazy dog"] * 2  # BATCH_ROWS rows


@pytest.fixture(scope="module")
def two_variants(t5_v1_1, tmp_path_factory):
    """The tiny T5 with int8 and int4 (the tiny model is too small for 4 bits: gate opened)."""
    artifact = tmp_path_factory.mktemp("batch-variant") / "artifact"
    shutil.copytree(t5_v1_1.artifact, artifact)
    optimize_artifact(OptimizeSettings(
        artifact=artifact, variants=(INT8, INT4), timing_runs=1, quiet=True,
        gate_overrides=("int4.min_agreement=0", "int4.flip_margin=none"),
    ))
    return artifact


def _with_timings(artifact, tmp_path, timings: dict[str, dict[str, float]], cpu=None):
    """A copy of ``artifact`` whose manifest says each variant ran ``timings`` on ``cpu``."""
    copy = tmp_path / "timed"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for name, latency in timings.items():
        manifest["variants"].setdefault(name, {})["speeds"] = {"cpu": {
            "latency_ms": latency, "runs": 1, "cpu": cpu or current_cpu().to_dict()}}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


# int4 fastest at batch 1 and overall, int8 fastest at batch 8 (the AMX pattern)
AMX_LIKE = {"fp32": {"b1_decode": 10.0, BATCH_WORKLOAD: 20.0},
            INT8: {"b1_decode": 6.0, BATCH_WORKLOAD: 9.0},
            INT4: {"b1_decode": 3.0, BATCH_WORKLOAD: 10.0}}


def _tokens(model: Seq2SeqLM, sources, **kwargs) -> list[list[int]]:
    return [row.token_ids.tolist() for row in model.generate(sources, max_new_tokens=8,
                                                              **kwargs)]


def test_batched_calls_run_the_variant_fastest_at_batch_8(two_variants, tmp_path):
    artifact = _with_timings(two_variants, tmp_path, AMX_LIKE)
    model = Seq2SeqLM.load(artifact, options=RuntimeOptions(provider="cpu"))
    assert model.variant == INT4 and model.variant_for_batches.name == INT8
    # what optimize prints about auto says so too
    line = auto_choice_line(ArtifactManifest.read(artifact))
    assert "picks: int4 (int8 for generate calls of 8 or more decoder rows" in line
    by_name = {name: Seq2SeqLM.load(artifact, options=RuntimeOptions(provider="cpu",
                                                                     variant=name))
               for name in (INT4, INT8)}
    # up to 7 rows: int4 (4 beams of one source are 4 rows); 8 rows (a batch of 8, or 4 beams of
    # two sources): int8's tokens
    assert _tokens(model, SOURCES[:1]) == _tokens(by_name[INT4], SOURCES[:1])
    assert _tokens(model, SOURCES[:1], num_beams=4) == _tokens(by_name[INT4], SOURCES[:1],
                                                                 num_beams=4)
    assert _tokens(model, SOURCES) == _tokens(by_name[INT8], SOURCES)
    assert _tokens(model, SOURCES[:2], num_beams=4) == _tokens(by_name[INT8], SOURCES[:2],
                                                                 num_beams=4)
    # the variants really differ here, so the equalities above say which one ran
    int4, int8 = by_name[INT4], by_name[INT8]
    ids = np.zeros((len(SOURCES), 1), np.int64)
    assert not np.allclose(int4.decoder_logits(SOURCES, ids), int8.decoder_logits(SOURCES, ids))


def test_one_variant_for_every_call_where_it_is_fastest_at_batch_8_too(two_variants, tmp_path):
    timings = {**AMX_LIKE, INT4: {"b1_decode": 3.0, BATCH_WORKLOAD: 8.5}}
    model = Seq2SeqLM.load(_with_timings(two_variants, tmp_path, timings),
                           options=RuntimeOptions(provider="cpu"))
    assert model.variant == INT4 and model.variant_for_batches is None


def test_no_batch_variant_from_another_cpus_timings_or_a_variant_asked_for(two_variants,
                                                                           tmp_path):
    elsewhere = {"model": "Some Other CPU", "flags": ["avx2"], "cores": 64}
    model = Seq2SeqLM.load(_with_timings(two_variants, tmp_path, AMX_LIKE, cpu=elsewhere),
                           options=RuntimeOptions(provider="cpu"))
    assert model.variant_for_batches is None  # re-timed here by all workloads together
    named = Seq2SeqLM.load(_with_timings(two_variants, tmp_path / "named", AMX_LIKE),
                           options=RuntimeOptions(provider="cpu", variant=INT4))
    assert named.variant == INT4 and named.variant_for_batches is None


def test_a_server_opens_the_batch_variant_at_load(two_variants, tmp_path, monkeypatch):
    """A served T5 model opens its batch variant while it loads (readiness waits for it), so
    the first batched request does not pay a session load."""
    artifact = _with_timings(two_variants, tmp_path, AMX_LIKE)
    int8 = Seq2SeqLM.load(artifact, options=RuntimeOptions(provider="cpu", variant=INT8))
    served = load_served_model(artifact, RuntimeOptions(provider="cpu"))
    assert served.variant == INT4 and served.variant_for_batches.name == INT8

    def no_load(*args, **kwargs):
        raise AssertionError("a batched call opened sessions")

    monkeypatch.setattr(text2text, "open_graphs", no_load)
    assert _tokens(served, SOURCES) == _tokens(int8, SOURCES)


def test_opening_the_batch_variant_is_nothing_where_there_is_none(two_variants, tmp_path,
                                                                  monkeypatch):
    timings = {**AMX_LIKE, INT4: {"b1_decode": 3.0, BATCH_WORKLOAD: 8.5}}
    model = Seq2SeqLM.load(_with_timings(two_variants, tmp_path, timings),
                           options=RuntimeOptions(provider="cpu"))
    monkeypatch.setattr(text2text, "open_graphs", lambda *args, **kwargs: 1 / 0)
    model.open_batch_variant()
    assert model.variant_for_batches is None
