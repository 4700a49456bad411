"""`onnx-engine export --task text2text-generation`: artifact layout, manifest, parity, verify."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import engine
from engine import ArtifactError, Seq2SeqLM, TaskMismatchError
from engine.manifest import ArtifactManifest, TokenizerSpec
from export.errors import ExportError
from export.exporter import ExportSettings, export_model
from export.tasks.text2text.exporter import Seq2SeqExporter
from export.verify import verify_artifact

GRAPHS = {
    "encoder": "encoder_model.onnx",
    "decoder": "decoder_model.onnx",
    "decoder_with_past": "decoder_with_past_model.onnx",
}


def test_artifact_holds_three_graphs_tokenizer_and_generation_settings(any_t5):
    manifest = engine.manifest.ArtifactManifest.read(any_t5.artifact)
    assert manifest.task == "text2text-generation"
    assert {role: spec.file for role, spec in manifest.graphs.items()} == GRAPHS
    assert "decoder_model_merged.onnx" not in manifest.files
    assert not (any_t5.artifact / "decoder_model_merged.onnx").exists()
    assert {"tokenizer.json", "config.json", *GRAPHS.values()} <= set(manifest.files)
    vocab = any_t5.reference.model.config.vocab_size
    assert manifest.generation == {
        "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "max_length": 20,
        "vocab_size": vocab, "checkpoint_defaults_not_applied": {},
    }
    decoder_outputs = {spec.name: spec.shape for spec in manifest.graphs["decoder"].outputs}
    assert decoder_outputs["logits"][-1] == vocab
    assert any(name.startswith("present.") for name in decoder_outputs)
    assert manifest.max_length == 512
    assert manifest.tokenizer == TokenizerSpec(pad_id=0, pad_token="<pad>")


def test_export_parity_covers_encoder_first_step_and_cached_decode(any_t5):
    parity = engine.manifest.ArtifactManifest.read(any_t5.artifact).parity
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4
    kinds = {row["name"].split("[")[0] for row in parity["rows"]}
    assert kinds == {"encoder b1", "encoder batch8", "first step batch8",
                     "teacher-forced batch8", "kv-cache decode batch8"}
    texts = {row["text"] for row in parity["rows"]}
    assert "" in texts  # the empty source is checked too (T5 reads just EOS)
    assert all(row["argmax_agree"] for row in parity["rows"])


def test_parity_check_compares_real_numbers(t5_v1_1):
    report = Seq2SeqExporter().check_parity(t5_v1_1.reference, t5_v1_1.artifact, atol=1e-12)
    assert not report.passed and report.max_abs_diff > 0


def test_two_eos_ids_are_recorded_as_a_list(t5_factory):
    manifest = engine.manifest.ArtifactManifest.read(t5_factory("t5-v1_1-two-eos").artifact)
    assert manifest.generation["eos_token_id"] == [1, 135]


def test_verify_passes_for_a_t5_artifact(t5_v1_1):
    result = verify_artifact(t5_v1_1.artifact)
    assert result.passed, result.report.table()


def test_tokenizer_json_matches_autotokenizer(any_t5):
    ours = Seq2SeqLM.load(any_t5.artifact).tokenizer
    texts = ["translate English to German: The cat sat.", "a", "Café 東京 🚀", "x " * 600]
    expected = any_t5.reference.tokenizer(texts, padding=True, truncation=True, max_length=512)
    assert ours.encode(texts).input_ids.tolist() == expected["input_ids"]
    first = any_t5.reference.tokenizer.convert_ids_to_tokens(expected["input_ids"][0][:1])
    assert first[0].startswith("▁")  # the first word keeps its SentencePiece space marker


def test_export_refuses_a_model_that_is_not_t5(distilbert, tmp_path):
    with pytest.raises(ExportError, match="seq2seq"):
        export_model(ExportSettings(model=str(distilbert.checkpoint), output=tmp_path / "out",
                                    task="text2text-generation", quiet=True))
    assert not (tmp_path / "out").exists()


def test_classifier_artifact_loaded_as_seq2seq_is_a_task_mismatch(distilbert):
    with pytest.raises(TaskMismatchError, match="text-classification"):
        Seq2SeqLM.load(distilbert.artifact)


def test_engine_load_picks_seq2seq_for_a_t5_artifact(t5_v1_1):
    lm = engine.load(t5_v1_1.artifact, variant="auto")
    assert isinstance(lm, Seq2SeqLM) and lm.variant == "fp32"


def test_a_variant_that_was_not_made_is_refused_not_ignored(t5_v1_1):
    with pytest.raises(ArtifactError, match="optimize ARTIFACT --int8"):
        Seq2SeqLM.load(t5_v1_1.artifact, variant="int8")
    assert Seq2SeqLM.load(t5_v1_1.artifact).variant == "fp32"


def test_t5_runs_without_torch_or_transformers(t5_v1_1):
    code = f"""
import json, sys
from engine import Seq2SeqLM
lm = Seq2SeqLM.load({str(t5_v1_1.artifact)!r})
beams = lm.generate(["Hello world"], max_new_tokens=5, num_beams=2, output_scores=True)
lm.logits("Hello world", "Hallo Welt")
print(json.dumps({{
    "loaded": [m for m in ("torch", "transformers", "optimum") if m in sys.modules],
    "ids": beams[0].token_ids.tolist(),
}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    expected = t5_v1_1.reference.generate(["Hello world"], max_new_tokens=5, num_beams=2)
    assert report["ids"] == expected.token_ids[0]


def test_checkpoint_generation_defaults_the_engine_does_not_apply_are_recorded_and_warned(
    t5_v1_1, tmp_path, caplog
):
    import logging

    import transformers

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(t5_v1_1.checkpoint, checkpoint)
    generation = transformers.GenerationConfig.from_pretrained(checkpoint)
    generation.no_repeat_ngram_size = 3
    generation.num_beams = 4
    generation.save_pretrained(checkpoint)
    output = tmp_path / "artifact"
    export_model(ExportSettings(model=str(checkpoint), output=output,
                                task="text2text-generation", quiet=True))
    recorded = ArtifactManifest.read(output).generation["checkpoint_defaults_not_applied"]
    assert recorded == {"no_repeat_ngram_size": 3, "num_beams": 4}
    with caplog.at_level(logging.WARNING):
        Seq2SeqLM.load(output)
    assert "no_repeat_ngram_size" in caplog.text and "outputs can differ" in caplog.text
