"""The CLI part of the bad-input corpus: bad input is exit status 2 and one ``error:`` line.

Never a traceback, never output before the error for a check that could be made up front, and
odd-but-valid input (blank lines, non-ASCII) processed like the Python API does.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Classifier, Seq2SeqLM
from onnx_engine.cli import main


def _fails_cleanly(capsys, argv: list[str], message: str) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert code == 2, captured
    assert len(error_lines) == 1 and message in error_lines[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# (argv with {clf}/{t5}/{tmp} placeholders, message in the error line; what transformers'
# equivalent does where it has one, in the comment)
CLI_ERRORS = {
    # Python decodes undecodable argv bytes to lone surrogates; tokenizers would raise TypeError.
    "surrogate argument": (["classify", "{clf}", "ok", "bad \udcff"], "text #1 is not valid Unicode"),
    "latin-1 input file": (["classify", "{clf}", "--input", "{tmp}/latin1.txt"],
                           "is not UTF-8: byte 0xe9 at offset 14 (line 2)"),
    "threads 0": (["classify", "{clf}", "x", "--threads", "0"], "threads must be a positive"),
    "corrupt manifest": (["classify", "{tmp}/broken", "x"], "manifest.json"),
    "t5 artifact to classify": (["classify", "{t5}", "x"], "text2text-generation"),
    "classifier artifact to generate": (["generate", "{clf}", "x"], "text-classification"),
    # transformers: allocates and decodes until EOS or 1e9 tokens
    "a billion new tokens": (["generate", "{t5}", "x", "--max-new-tokens", "1000000000"],
                             "output limit of 512"),
    # transformers: returns tokens with a NaN score
    "nan length penalty": (["generate", "{t5}", "x", "--num-beams", "2",
                            "--length-penalty", "nan"], "length_penalty must be a finite number"),
    # transformers: ZeroDivisionError
    "zero beams": (["generate", "{t5}", "x", "--num-beams", "0"], "num_beams must be a positive"),
    "zero batch size": (["generate", "{t5}", "x", "--batch-size", "0"], "batch_size"),
    "latin-1 generate input": (["generate", "{t5}", "--input", "{tmp}/latin1.txt"], "not UTF-8"),
    "save into a missing folder": (
        ["logits", "{t5}", "--source", "a", "--target", "b", "--save", "{tmp}/no/such/out.npy"],
        "folder '{tmp}/no/such' does not exist",
    ),
    "save onto a folder": (["logits", "{t5}", "--source", "a", "--target", "b", "--save", "{tmp}"],
                           "is a folder"),
    "top-k 0": (["logits", "{t5}", "--source", "a", "--target", "b", "--top-k", "0"], "--top-k"),
    "surrogate target": (["logits", "{t5}", "--source", "a", "--target", "\ud800"],
                         "target #0 is not valid Unicode"),
}


@pytest.mark.parametrize("argv, message", list(CLI_ERRORS.values()), ids=list(CLI_ERRORS))
def test_cli_errors_are_one_line_with_exit_status_2(
    distilbert, t5_v1_1, tmp_path, capsys, argv, message
):
    _write(tmp_path, "latin1.txt", "first line\ncaf\u00e9\n".encode("latin-1"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("[]")
    values = {"clf": str(distilbert.artifact), "t5": str(t5_v1_1.artifact), "tmp": str(tmp_path)}
    _fails_cleanly(capsys, [arg.format(**values) for arg in argv], message.format(**values))


def test_a_blank_line_in_an_input_file_is_a_text_not_an_abort(distilbert, t5_v1_1, tmp_path,
                                                              capsys):
    texts = ["first", "", "   ", "naïve café 東京"]
    path = _write(tmp_path, "texts.txt", ("\n".join(texts) + "\n").encode("utf-8"))
    assert main(["classify", str(distilbert.artifact), "--input", path]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = Classifier.load(distilbert.artifact)(texts)
    assert [(line["text"], line["label"]) for line in lines] == [
        (text, result["label"]) for text, result in zip(texts, expected)
    ]
    assert main(["generate", str(t5_v1_1.artifact), "--input", path, "--max-new-tokens", "4"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    generated = Seq2SeqLM.load(t5_v1_1.artifact).generate(texts, max_new_tokens=4)
    assert [line["token_ids"] for line in lines] == [s.token_ids.tolist() for s in generated]


def test_stdin_that_is_not_utf8_is_one_error_line(distilbert, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe bad\n")))
    _fails_cleanly(capsys, ["classify", str(distilbert.artifact), "--input", "-"],
                   "standard input is not UTF-8: byte 0xff at offset 3 (line 2)")


def test_a_utf8_bom_is_not_part_of_the_first_text(distilbert, tmp_path, capsys):
    path = _write(tmp_path, "bom.txt", "\ufeffhello\nworld\n".encode("utf-8"))
    assert main(["classify", str(distilbert.artifact), "--input", path]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["hello", "world"]


def test_invalid_utf8_bytes_in_argv_are_one_error_line_from_the_console_script(distilbert):
    # The real thing: bytes that are not UTF-8 on the command line of a fresh process.
    result = subprocess.run(
        [sys.executable.encode(), b"-m", b"onnx_engine", b"classify",
         str(distilbert.artifact).encode(), b"caf\xe9"],
        capture_output=True, timeout=120,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2 and result.stdout == b""
    assert stderr.count("error: ") == 1 and "text #0 is not valid Unicode" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "argv",
    [["generate", "{t5}", "x", "--num-beams", "abc"], ["classify", "{clf}", "--provider", "tpu"]],
    ids=["non-integer beams", "unknown provider"],
)
def test_argparse_rejections_are_one_error_line_too(distilbert, t5_v1_1, capsys, argv):
    values = {"clf": str(distilbert.artifact), "t5": str(t5_v1_1.artifact)}
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(**values) for arg in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("error: ") == 1 and "Traceback" not in err
