"""Export: never clobbers, gates on parity, leaves nothing behind when it fails."""

from __future__ import annotations

import pytest

from engine import ParityError
from export.errors import ExportError, OutputExistsError
from export.exporter import ExportSettings, export_model
from onnx_engine.cli import main


def test_refuses_to_overwrite_without_force(distilbert, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--force"):
        export_model(ExportSettings(model=str(distilbert.checkpoint), output=output, quiet=True))
    assert (output / "keep.txt").read_text() == "mine"


def test_force_replaces_the_output(distilbert, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "stale.txt").write_text("old")
    settings = ExportSettings(model=str(distilbert.checkpoint), output=output, force=True, quiet=True)
    manifest = export_model(settings)
    assert not (output / "stale.txt").exists()
    assert manifest.parity["passed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_failed_parity_leaves_no_artifact_and_names_the_worst_input(distilbert, tmp_path):
    output = tmp_path / "out"
    # A tolerance below float32 rounding makes any real export fail its parity gate.
    settings = ExportSettings(model=str(distilbert.checkpoint), output=output, quiet=True, atol=1e-12)
    with pytest.raises(ParityError, match=r"rejected: parity FAILED.*worst input: \S+"):
        export_model(settings)
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_export_failure_exits_non_zero_with_one_line(distilbert, tmp_path, capsys):
    code = main(["export", str(distilbert.checkpoint), str(tmp_path / "out"), "-q", "--atol", "1e-12"])
    assert code != 0
    error = capsys.readouterr().err
    assert error.startswith("error: Export of") and "Traceback" not in error


def test_unknown_model_and_task(tmp_path):
    with pytest.raises(ExportError, match="Cannot load"):
        export_model(ExportSettings(model=str(tmp_path / "no-model"), output=tmp_path / "o", quiet=True))
    with pytest.raises(ExportError, match="Unknown task"):
        export_model(ExportSettings(model="x", output=tmp_path / "o", task="fill-mask", quiet=True))


def test_progress_goes_to_stderr_and_quiet_silences_it(distilbert, tmp_path, capsys):
    assert main(["export", str(distilbert.checkpoint), str(tmp_path / "loud")]) == 0
    loud = capsys.readouterr()
    assert "[2/4] exporting ONNX" in loud.err and "parity passed" in loud.err
    assert loud.out == ""
    assert main(["export", str(distilbert.checkpoint), str(tmp_path / "quiet"), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_default_labels_are_written_out_and_opset_is_honoured(distilbert, tmp_path):
    import json

    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(distilbert.checkpoint)
    model.config.id2label = {0: "LABEL_0", 1: "LABEL_1"}  # defaults: config.json omits them
    model.config.label2id = {"LABEL_0": 0, "LABEL_1": 1}
    model.save_pretrained(tmp_path / "ckpt")
    transformers.AutoTokenizer.from_pretrained(distilbert.checkpoint).save_pretrained(tmp_path / "ckpt")
    assert "id2label" not in json.loads((tmp_path / "ckpt" / "config.json").read_text())
    settings = ExportSettings(model=str(tmp_path / "ckpt"), output=tmp_path / "out", opset=17, quiet=True)
    manifest = export_model(settings)
    assert manifest.opset == 17
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"}
    from engine import Classifier

    assert Classifier.load(tmp_path / "out").labels == ["LABEL_0", "LABEL_1"]
