"""Embeddings on bad input, and exports refused with a clear error instead of wrong vectors."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from engine.artifact import file_record
from engine.errors import CorruptArtifactError, HashMismatchError, InputError, TaskMismatchError
from engine.tasks.classification import Classifier
from engine.tasks.feature_extraction import Embedder
from export.errors import ExportError
from export.exporter import ExportSettings, export_model
from export.sentence_config import read_sentence_config


@pytest.fixture(scope="module")
def embedder(tiny_embedder_factory) -> Embedder:
    return Embedder.load(tiny_embedder_factory("mean").artifact)


@pytest.mark.parametrize("texts", [[], (), None, 3, ["ok", 5], [b"bytes"], [["nested"]]])
def test_non_text_input_is_an_input_error(embedder, texts):
    with pytest.raises(InputError):
        embedder.embed(texts)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 2.5}, {"normalize": "yes"},
                                    {"normalize": 1}])
def test_bad_arguments_are_input_errors(embedder, kwargs):
    with pytest.raises(InputError):
        embedder.embed(["text"], **kwargs)


def test_empty_and_whitespace_strings_are_valid(embedder):
    vectors = embedder.embed(["", " "])
    assert vectors.shape == (2, embedder.dimension) and np.isfinite(vectors).all()


def test_similarity_and_search_check_their_arguments(embedder):
    with pytest.raises(InputError, match="shape"):
        embedder.similarity(np.zeros((2, embedder.dimension + 1), np.float32), ["a"])
    with pytest.raises(InputError, match="top_k"):
        embedder.search(["q"], ["a", "b"], top_k=0)
    hits = embedder.search("q", ["a", "b"], top_k=5)  # k above the corpus size: all of it
    assert len(hits) == 1 and sorted(hit.corpus_id for hit in hits[0]) == [0, 1]


def test_task_mismatch_names_the_right_loader(embedder, distilbert):
    with pytest.raises(TaskMismatchError):
        Classifier.load(embedder.artifact.path)
    with pytest.raises(TaskMismatchError):
        Embedder.load(distilbert.artifact)


def test_changed_or_corrupt_embedding_config_is_reported(tiny_embedder_factory, copy_artifact):
    artifact = copy_artifact(tiny_embedder_factory("mean").artifact)
    config = json.loads((artifact / "embedding.json").read_text())
    (artifact / "embedding.json").write_text(json.dumps({**config, "modes": ["cls"]}))
    with pytest.raises(HashMismatchError, match=r"embedding\.json"):
        Embedder.load(artifact)  # pooling changed after export: the hash says so
    (artifact / "embedding.json").write_text('{"modes": ["median"]}')
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"]["embedding.json"] = asdict(file_record(artifact / "embedding.json"))
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptArtifactError, match=r"embedding\.json"):
        Embedder.load(artifact)


def test_plain_encoder_without_pooling_is_refused(tiny_encoder_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="--pooling"):
        export_model(ExportSettings(model=str(tiny_encoder_checkpoint), output=tmp_path / "o",
                                    task="feature-extraction", quiet=True))
    assert not (tmp_path / "o").exists()


def test_pooling_options_are_refused_where_they_do_not_apply(tiny_encoder_checkpoint, tmp_path):
    from onnx_engine.sample_models import real_minilm_folder

    with pytest.raises(ExportError, match="sentence-transformers folder"):
        export_model(ExportSettings(model=str(real_minilm_folder()), output=tmp_path / "a",
                                    task="feature-extraction", quiet=True,
                                    task_options={"pooling": "cls"}))
    with pytest.raises(ExportError, match="do not apply"):
        export_model(ExportSettings(model=str(tiny_encoder_checkpoint), output=tmp_path / "b",
                                    quiet=True, task_options={"pooling": "mean"}))
    with pytest.raises(ExportError, match="Unknown pooling"):
        export_model(ExportSettings(model=str(tiny_encoder_checkpoint), output=tmp_path / "c",
                                    task="feature-extraction", quiet=True,
                                    task_options={"pooling": "median"}))


def _sentence_folder(tmp_path, modules, pooling, options=None, transformer=None):
    (tmp_path / "1_Pooling").mkdir()
    entries = [{"idx": i, "name": str(i), "path": path,
                "type": f"sentence_transformers.models.{kind}"}
               for i, (kind, path) in enumerate(modules)]
    (tmp_path / "modules.json").write_text(json.dumps(entries))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (tmp_path / "config_sentence_transformers.json").write_text(json.dumps(options or {}))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps(transformer or {}))
    return tmp_path


BASE = [("Transformer", ""), ("Pooling", "1_Pooling")]


def test_sentence_config_reads_legacy_and_current_pooling_keys(tmp_path):
    legacy = {"word_embedding_dimension": 8, "pooling_mode_cls_token": True,
              "pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False}
    config = read_sentence_config(_sentence_folder(
        tmp_path, [*BASE, ("Normalize", "2_Normalize")], legacy,
        {"similarity_fn_name": "dot"}, {"max_seq_length": 128}))
    assert config.pooling.modes == ("cls", "max") and config.pooling.normalize
    assert config.pooling.dimension == 16 and config.pooling.similarity == "dot"
    assert config.max_seq_length == 128


def test_sentence_config_reads_current_keys(tmp_path):
    current = {"embedding_dimension": 8, "pooling_mode": "lasttoken", "include_prompt": True}
    config = read_sentence_config(_sentence_folder(tmp_path, BASE, current))
    assert config.pooling.modes == ("lasttoken",) and not config.pooling.normalize


@pytest.mark.parametrize("modules, pooling, options, message", [
    ([*BASE, ("Dense", "2_Dense")], {"pooling_mode": "mean", "embedding_dimension": 8}, {},
     "Dense not supported"),
    (BASE, {"pooling_mode": "mean", "embedding_dimension": 8, "include_prompt": False}, {},
     "include_prompt"),
    (BASE, {"pooling_mode": "median", "embedding_dimension": 8}, {}, "median"),
    (BASE, {"pooling_mode": "mean", "embedding_dimension": 8}, {"default_prompt_name": "query"},
     "prompt"),
    ([("Transformer", "0_Transformer"), ("Pooling", "1_Pooling")],
     {"pooling_mode": "mean", "embedding_dimension": 8}, {}, "0_Transformer"),
])
def test_sentence_config_refuses_what_the_engine_does_not_run(tmp_path, modules, pooling, options,
                                                               message):
    with pytest.raises(ExportError, match=message):
        read_sentence_config(_sentence_folder(tmp_path, modules, pooling, options))
