"""`onnx-engine embed` and `onnx-engine search` on the real MiniLM artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.tasks.feature_extraction import Embedder
from export.retrieval_set import DOCUMENTS
from onnx_engine.cli import main

TEXTS = ["A man is eating food.", "", "naïve café 東京"]


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


@pytest.fixture(scope="module")
def embedder(minilm_embedder) -> Embedder:
    return Embedder.load(minilm_embedder.artifact)


def test_embed_prints_one_json_line_per_text(minilm_embedder, embedder, capsys):
    assert main(["embed", str(minilm_embedder.artifact), *TEXTS]) == 0
    lines = _lines(capsys.readouterr().out)
    assert [line["text"] for line in lines] == TEXTS
    np.testing.assert_array_equal(np.array([line["embedding"] for line in lines], np.float32),
                                  embedder.embed(TEXTS))


def test_embed_saves_npy_from_an_input_file_and_honours_no_normalize(
    minilm_embedder, embedder, tmp_path, capsys
):
    source, target = tmp_path / "texts.txt", tmp_path / "out.npy"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    args = ["embed", str(minilm_embedder.artifact), "--input", str(source), "--save", str(target)]
    assert main([*args, "--no-normalize", "--batch-size", "2"]) == 0
    assert capsys.readouterr().out == ""
    saved = np.load(target)
    assert saved.dtype == np.float32 and saved.shape == (3, 384)
    np.testing.assert_allclose(saved, embedder.embed(TEXTS, normalize=False), atol=1e-6)


def test_search_ranks_corpus_lines_for_each_query(minilm_embedder, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(DOCUMENTS[:9]) + "\n\n", encoding="utf-8")  # blank line skipped
    queries = ["How do I make pasta sauce?", "Who won the soccer game?"]
    assert main(["search", str(minilm_embedder.artifact), "--corpus", str(corpus), *queries,
                 "--top-k", "3"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert [line["query"] for line in lines] == queries
    cooking, football = ([hit["line"] for hit in line["results"]] for line in lines)
    assert sorted(cooking) == [1, 2, 3] and sorted(football) == [7, 8, 9]
    scores = [hit["score"] for hit in lines[0]["results"]]
    assert scores == sorted(scores, reverse=True) and lines[0]["results"][0]["rank"] == 1
    assert lines[0]["results"][0]["text"] == DOCUMENTS[cooking[0] - 1]


@pytest.mark.parametrize("args, message", [
    (["embed", "{artifact}"], "No texts"),
    (["embed", "{artifact}", "x", "--save", "/no/such/folder/out.npy"], "does not exist"),
    (["search", "{artifact}", "--corpus", "/no/such/corpus.txt", "q"], "does not exist"),
    (["search", "{artifact}", "--corpus", "{empty}", "q"], "no non-blank line"),
    (["search", "{artifact}", "--corpus", "{corpus}", "q", "--top-k", "0"], "--top-k"),
    (["embed", "/no/such/artifact", "x"], "does not exist"),
])
def test_bad_input_is_one_error_line_with_status_2(minilm_embedder, tmp_path, capsys, args,
                                                    message):
    empty, corpus = tmp_path / "empty.txt", tmp_path / "corpus.txt"
    empty.write_text("\n \n", encoding="utf-8")
    corpus.write_text("a document\n", encoding="utf-8")
    filled = [arg.format(artifact=minilm_embedder.artifact, empty=empty, corpus=corpus)
              for arg in args]
    assert main(filled) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error:") and message in error[0]


def test_embed_refuses_a_classifier_artifact(distilbert, capsys):
    assert main(["embed", str(distilbert.artifact), "x"]) == 2
    assert "text-classification" in capsys.readouterr().err


def test_export_flags_and_verify_for_a_plain_encoder(tiny_encoder_checkpoint, tmp_path, capsys):
    """--pooling/--normalize reach embedding.json; verify rebuilds the reference from it."""
    output = tmp_path / "artifact"
    assert main(["export", str(tiny_encoder_checkpoint), str(output), "--task",
                 "feature-extraction", "--pooling", "cls", "--normalize", "-q"]) == 0
    embedder = Embedder.load(output)
    assert embedder.pooling.modes == ("cls",) and embedder.pooling.normalize
    assert main(["verify", str(output), "--against-pytorch"]) == 0
    assert "parity passed" in capsys.readouterr().out
    assert main(["verify", str(output)]) == 0  # torch-free, against the stored references
    assert "VERIFY PASSED" in capsys.readouterr().out
