"""The CLI part of the bad-input corpus: bad input is exit status 2 and one ``error:`` line.

Never a traceback, never output before the error for a check that could be made up front, and
odd-but-valid input (blank lines, non-ASCII) processed like the Python API does.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Classifier, Seq2SeqLM
from engine.errors import InputError
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
    "surrogate argument": (
        ["classify", "{clf}", "ok", "bad \udcff"], "text #1 is not valid Unicode"
    ),
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
                            "--length-penalty", "nan"], "--length-penalty must be a finite number"),
    # transformers: ZeroDivisionError
    "zero beams": (["generate", "{t5}", "x", "--num-beams", "0"], "--num-beams must be a positive"),
    "zero batch size": (["generate", "{t5}", "x", "--batch-size", "0"], "--batch-size must be"),
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


# --- Messages in the CLI's own words (issue 22, item 17) and one reader for every text file ---


def _one_error_line(capsys, argv: list[str]) -> str:
    """The single ``error:`` line of a run that must exit 2 with nothing on stdout."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and captured.out == "", captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_a_file_given_as_artifact_is_called_a_file(distilbert, tmp_path, capsys):
    path = _write(tmp_path, "model.onnx", b"not a folder")
    assert _one_error_line(capsys, ["classify", path, "x"]) == (
        f"error: '{path}' is a file, not an artifact folder: give the folder that "
        "'onnx-engine export' wrote (it holds manifest.json)."
    )


def test_a_checkpoint_folder_suggests_exporting_from_it_into_a_new_folder(distilbert, capsys):
    checkpoint = str(distilbert.checkpoint)
    line = _one_error_line(capsys, ["classify", checkpoint, "x"])
    assert line == (
        f"error: '{checkpoint}' is a Hugging Face checkpoint, not an onnx-engine artifact. Export "
        f"it into a new folder first: 'onnx-engine export {checkpoint} {checkpoint}-onnx --task "
        f"text-classification', then run 'onnx-engine classify {checkpoint}-onnx ...'."
    )
    assert "--force" not in line


@pytest.mark.parametrize("command, artifact, held, right", [
    ("classify", "t5", "text2text-generation", "generate"),
    ("embed", "clf", "text-classification", "classify"),
    ("generate", "clf", "text-classification", "classify"),
])
def test_a_wrong_task_artifact_names_the_subcommand_that_runs_it(
    distilbert, t5_v1_1, capsys, command, artifact, held, right
):
    path = str({"clf": distilbert.artifact, "t5": t5_v1_1.artifact}[artifact])
    task = {"classify": "text-classification", "embed": "feature-extraction",
            "generate": "text2text-generation"}[command]
    line = _one_error_line(capsys, [command, path, "x"])
    assert line == (
        f"error: '{path}' holds a '{held}' model; 'onnx-engine {command}' runs '{task}' "
        f"artifacts. Run it with 'onnx-engine {right} {path} ...'."
    )
    assert "engine.load" not in line


@pytest.mark.parametrize("command", ["classify", "generate", "embed"])
def test_an_empty_input_file_is_the_same_error_for_every_command(
    distilbert, t5_v1_1, tmp_path, capsys, command
):
    path = _write(tmp_path, "empty.txt", b"")
    artifact = t5_v1_1.artifact if command == "generate" else distilbert.artifact
    assert _one_error_line(capsys, [command, str(artifact), "--input", path]) == (
        f"error: --input file '{path}' has no texts: give one text per line."
    )


def test_a_folder_given_as_input_file_is_called_a_folder(distilbert, tmp_path, capsys):
    assert _one_error_line(capsys, ["classify", str(distilbert.artifact), "--input",
                                    str(tmp_path)]) == (
        f"error: --input file '{tmp_path}' is a folder; give a text file with one text per line."
    )


def test_a_corpus_that_is_not_utf8_reads_like_an_input_file(distilbert, tmp_path, capsys):
    # The same reader as --input: the error comes before the artifact is even looked at.
    path = _write(tmp_path, "latin1.txt", "first line\ncaf\u00e9\n".encode("latin-1"))
    assert _one_error_line(capsys, ["search", str(distilbert.artifact), "--corpus", path, "q"]) == (
        f"error: --corpus file '{path}' is not UTF-8: byte 0xe9 at offset 14 (line 2) cannot be "
        "decoded. Convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)."
    )


def test_a_mistyped_flag_shows_the_subcommands_usage(distilbert, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", str(distilbert.artifact), "x", "--top-kk", "2"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("usage: onnx-engine classify [-h]")
    assert err.strip().splitlines()[-1] == (
        "onnx-engine classify: error: unrecognized arguments: --top-kk 2"
    )


@pytest.mark.parametrize("argv, expected", [
    (["classify", "{clf}", "x", "--variant", "int8"],
     "error: This artifact has no 'int8' variant (it has: fp32). Make it with 'onnx-engine "
     "optimize ARTIFACT --int8', or use --variant auto."),
    (["classify", "{clf}", "x", "--batch-size", "0"],
     "error: --batch-size must be a positive integer, got 0."),
    (["classify", "{clf}", "x", "--threads", "0"],
     "error: --threads must be a positive integer (or None for one per core), got 0."),
])
def test_errors_name_flags_not_python_arguments(distilbert, capsys, argv, expected):
    values = {"clf": str(distilbert.artifact)}
    assert _one_error_line(capsys, [arg.format(**values) for arg in argv]) == expected


def test_python_spellings_are_translated_to_flags():
    from onnx_engine.cli import in_cli_words

    assert in_cli_words(
        "Load it with provider='cuda', or use variant='auto'. Use variant='auto' or 'fp32'. "
        "num_beams=300 is above the limit; gpu_mem_limit must stay; --top-k must be positive."
    ) == (
        "Load it with --provider cuda, or use --variant auto. Use --variant auto or --variant "
        "fp32. --num-beams 300 is above the limit; gpu_mem_limit must stay; --top-k must be "
        "positive."
    )


def test_quiet_silences_the_over_length_warnings(t5_v1_1, capsys, caplog):
    long_text = " ".join(["word"] * 600)  # beyond the tiny T5's 512-token max length
    argv = ["generate", str(t5_v1_1.artifact), long_text, "--max-new-tokens", "1"]
    with caplog.at_level(logging.WARNING, logger="engine.tokenization"):
        assert main(argv) == 0
        loud = [record for record in caplog.records if record.name == "engine.tokenization"]
        caplog.clear()
        assert main([*argv, "-q"]) == 0
        quiet = [record for record in caplog.records if record.name == "engine.tokenization"]
    assert len(loud) == 1 and "more than the model's max length" in loud[0].getMessage()
    assert quiet == []
    assert logging.getLogger("engine.tokenization").level == logging.NOTSET  # restored
    capsys.readouterr()


def test_batch_size_has_help(capsys):
    for command in ("classify", "embed", "search", "generate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "texts per ONNX Runtime call" in capsys.readouterr().out


def test_a_failed_npy_write_is_one_line_and_leaves_no_file(distilbert, tmp_path, monkeypatch,
                                                           capsys):
    import numpy as np

    from onnx_engine.commands.runtime_args import save_npy

    def full_disk(path, array):
        Path(path).write_bytes(b"\x93NUMPY")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", full_disk)
    target = tmp_path / "out.npy"
    with pytest.raises(InputError, match=r"^--save .*out\.npy: No space left on device\.$"):
        save_npy(target, np.zeros(2), "--save")
    assert not target.exists()


def test_an_unexpected_os_error_is_one_line(distilbert, monkeypatch, capsys):
    import onnx_engine.commands.classify as classify

    def unreadable(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/some/file")

    monkeypatch.setattr(classify.Classifier, "load", unreadable)
    assert _one_error_line(capsys, ["classify", str(distilbert.artifact), "x"]) == (
        "error: /some/file: Permission denied"
    )


@pytest.mark.parametrize("command", ["optimize", "verify"])
def test_commands_for_any_task_also_refuse_a_checkpoint_folder_in_cli_words(distilbert, capsys,
                                                                            command):
    checkpoint = str(distilbert.checkpoint)
    extra = ["--fusion"] if command == "optimize" else []
    assert _one_error_line(capsys, [command, checkpoint, *extra]) == (
        f"error: '{checkpoint}' is a Hugging Face checkpoint, not an onnx-engine artifact. Export "
        f"it into a new folder first: 'onnx-engine export {checkpoint} {checkpoint}-onnx', then "
        f"run 'onnx-engine {command} {checkpoint}-onnx ...'."
    )


def test_the_optimize_table_of_an_embedding_artifact_speaks_of_embeddings(tiny_embedder_factory):
    from dataclasses import replace

    from engine.manifest import ArtifactManifest
    from engine.variants.records import FUSED, VariantFigures, VariantRecord
    from export.tasks.feature_extraction.variants import EMBEDDING_GATES
    from onnx_engine.commands.optimize import variant_table

    manifest = ArtifactManifest.read(tiny_embedder_factory("mean").artifact)
    figures = VariantFigures(max_abs_diff=2e-6, max_prob_diff=3e-6, agreement=1.0, inputs=4,
                             min_cosine=0.99999, retrieval_agreement=1.0)
    fused = VariantRecord(FUSED, {"model": "model.fused.onnx"}, gate=EMBEDDING_GATES[FUSED],
                          figures=figures, passed=True)
    rows = variant_table(replace(manifest, variants={FUSED: fused})).splitlines()
    assert "|Δlogit|" not in "\n".join(rows) and "|Δprob|" not in "\n".join(rows)
    assert rows[1].split()[:4] == ["fp32", "any", "(export", "parity)"] and "|Δemb|" in rows[1]
    fused_row = rows[2].split()
    assert fused_row[2:5] == ["|Δemb|<=0.0001", "top1>=100%", "cos>=0.9999"]
    assert fused_row[6:14] == ["cos", "1.0000", "top10", "100%", "|Δemb|", "2.0e-06", "|Δsim|",
                               "3.0e-06"]


def test_log_messages_are_in_cli_words_too():
    """A warning the engine logs in Python spelling (a broken variant's "e.g. variant='fp32'")
    reaches a CLI user in flags, as errors do."""
    from onnx_engine.cli import _CliWordsFilter, build_parser, cli_flags

    record = logging.LogRecord("engine.variants.sessions", logging.WARNING, __file__, 0,
                               "skipped; ask for another (e.g. variant=%r) or threads=%d",
                               ("fp32", 2), None)
    assert _CliWordsFilter(cli_flags(build_parser())).filter(record)
    assert record.getMessage() == "skipped; ask for another (e.g. --variant fp32) or --threads 2"
