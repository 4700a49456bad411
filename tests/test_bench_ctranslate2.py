"""The CTranslate2 contender on the tiny T5: it converts the checkpoint once, decodes greedily and
with beams under the same settings as PyTorch (its fp32 tokens equal PyTorch's), and its rows
carry ms per generated token. Timings are not judged here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnx_engine.bench.contenders.base import ContenderSettings
from onnx_engine.bench.errors import ContenderUnavailable
from onnx_engine.cli import main

pytest.importorskip("ctranslate2")


@pytest.mark.parametrize("beams", (1, 4))
def test_ctranslate2_rows_and_tokens_agree_with_pytorch(t5_v1_1, tmp_path, beams):
    out = tmp_path / "bench.json"
    status = main([
        "bench", str(t5_v1_1.artifact), "--batch", "1,2", "--seq", "8", "--beams", str(beams),
        "--contenders", "engine,pytorch,ctranslate2", "--warmup", "1", "--rounds", "2",
        "--min-rounds", "1", "--cold-runs", "0", "--no-progress", "--no-floor",
        "--cache-dir", str(tmp_path / "cache"), "--json", str(out),
        "--markdown", str(tmp_path / "bench.md"),
    ])
    assert status == 0
    model = json.loads(out.read_text())["models"][0]
    rows = {(row["contender"], row["batch"]): row for row in model["rows"]}
    assert {("ctranslate2", 1), ("ctranslate2", 2)} <= set(rows)
    for row in rows.values():
        assert row["beams"] == beams and 0 < row["generated_tokens"] <= 32
        assert row["ms_per_token"] == pytest.approx(row["p50_ms"] / row["generated_tokens"])
    agreement = {entry["candidate"]: entry for entry in model["agreement"]}
    assert agreement["ctranslate2 fp32"]["reference"] == "pytorch fp32"
    assert agreement["ctranslate2 fp32"]["agreement"] == 1.0
    assert agreement["engine fp32"]["agreement"] == 1.0
    assert "| ctranslate2 | fp32 | 1 | 8 |" in (tmp_path / "bench.md").read_text()


def _settings(exported, variant: str, cache_dir, beams: int = 1) -> ContenderSettings:
    return ContenderSettings(exported.artifact, str(exported.checkpoint), variant, {}, threads=1,
                             new_tokens=8, beams=beams, cache_dir=cache_dir)


def test_int8_converts_once_and_decodes(t5_v1_1, tmp_path):
    from onnx_engine.bench.contenders.ct2 import CTranslate2Seq2Seq, converted_model

    settings = _settings(t5_v1_1, "int8", tmp_path)
    CTranslate2Seq2Seq.check_available(settings)
    contender = CTranslate2Seq2Seq(settings)
    contender.load()
    folder = converted_model(t5_v1_1.checkpoint, "int8", tmp_path)
    written = (folder / "model.bin").stat().st_mtime_ns
    assert converted_model(t5_v1_1.checkpoint, "int8", tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == written
    assert [path.name for path in (tmp_path / "ctranslate2").iterdir()] == [folder.name]
    contender.prepare(["the quick brown fox", "a"])
    ids = contender.predictions(contender.run())
    assert ids.shape[0] == 2 and 1 <= ids.shape[1] <= 8
    assert np.all((ids == -1) | (ids >= 0))


def test_unavailable_variants_and_missing_package_say_why(t5_v1_1, tmp_path, monkeypatch):
    from onnx_engine.bench.contenders import base
    from onnx_engine.bench.contenders.ct2 import CTranslate2Seq2Seq

    with pytest.raises(ContenderUnavailable, match="runs fp32, int8, not the 'fused' variant"):
        CTranslate2Seq2Seq.check_available(_settings(t5_v1_1, "fused", tmp_path))
    monkeypatch.setattr(base, "_missing", lambda module: module == "ctranslate2")
    with pytest.raises(ContenderUnavailable, match=r"onnx-engine\[bench\]"):
        CTranslate2Seq2Seq.check_available(_settings(t5_v1_1, "fp32", tmp_path))
