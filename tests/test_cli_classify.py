"""`onnx-engine classify`: JSON lines out, texts from arguments, a file or stdin."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from engine import Classifier
from onnx_engine.cli import main

TEXTS = ["I love it", "I hate it", "", "naïve café 東京"]


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def test_arguments_give_one_json_line_per_text_with_engine_results(distilbert, capsys):
    assert main(["classify", str(distilbert.artifact), *TEXTS]) == 0
    lines = _lines(capsys.readouterr().out)
    expected = Classifier.load(distilbert.artifact)(TEXTS)
    assert [line["text"] for line in lines] == TEXTS
    assert [(line["label"], line["score"]) for line in lines] == [
        (result["label"], result["score"]) for result in expected
    ]


def test_input_file_and_top_k(classifier_factory, tmp_path, capsys):
    model = classifier_factory("roberta-4")
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["classify", str(model.artifact), "--input", str(path), "--top-k", "3"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert len(lines) == len(TEXTS)
    expected = Classifier.load(model.artifact)(TEXTS, top_k=3)
    assert [line["labels"] for line in lines] == expected


def test_stdin(distilbert, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"one\ntwo\n")))
    assert main(["classify", str(distilbert.artifact), "--input", "-", "--all-labels"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert [line["text"] for line in lines] == ["one", "two"]
    assert all(len(line["labels"]) == 2 for line in lines)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["classify", "{missing}"], "No texts given"),
        (["classify", "{missing}", "x"], "does not exist"),
        (["classify", "{artifact}", "x", "--input", "nope.txt"], "not both"),
        (["classify", "{artifact}", "--input", "nope.txt"], "does not exist"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(distilbert, tmp_path, capsys, arguments, message):
    values = {"missing": str(tmp_path / "missing"), "artifact": str(distilbert.artifact)}
    code = main([argument.format(**values) for argument in arguments])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("error: ") and message in error and "Traceback" not in error


def test_console_script_runs(distilbert):
    result = subprocess.run(
        [sys.executable, "-m", "onnx_engine", "classify", str(distilbert.artifact), "good"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(result.stdout)["text"] == "good"


def test_large_input_file_shows_progress_on_stderr_only(distilbert, tmp_path, capsys):
    path = tmp_path / "many.txt"
    path.write_text("\n".join(f"text number {index}" for index in range(600)), encoding="utf-8")
    assert main(["classify", str(distilbert.artifact), "--input", str(path)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 600
    assert "classifying [" in captured.err and "600/600" in captured.err
    assert main(["classify", str(distilbert.artifact), "--input", str(path), "-q"]) == 0
    assert capsys.readouterr().err == ""
