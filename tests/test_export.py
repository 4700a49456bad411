"""Export: never clobbers, gates on parity, leaves nothing behind when it fails."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from engine import ParityError
from export.errors import ExportError, OutputExistsError
from export.exporter import ExportSettings, export_model
from export.staging import remove_stale_staging, staged_output, staging_prefix
from onnx_engine.cli import main


def test_refuses_to_overwrite_without_force(distilbert, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="Pass force=True to replace it"):
        export_model(ExportSettings(model=str(distilbert.checkpoint), output=output, quiet=True))
    assert main(["export", str(distilbert.checkpoint), str(output)]) == 2
    assert "already exists. Pass --force to replace it" in capsys.readouterr().err
    assert (output / "keep.txt").read_text() == "mine"


def test_force_replaces_the_output(distilbert, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "stale.txt").write_text("old")
    settings = ExportSettings(model=str(distilbert.checkpoint), output=output, force=True,
                              quiet=True)
    manifest = export_model(settings)
    assert not (output / "stale.txt").exists()
    assert manifest.parity["passed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_a_forced_export_whose_final_rename_fails_keeps_the_old_artifact(tmp_path, monkeypatch):
    output = tmp_path / "out"
    output.mkdir()
    (output / "model.onnx").write_text("old")
    real_rename = Path.rename

    def failing_rename(self: Path, target):
        if Path(target) == output and self.name.startswith(staging_prefix(output)) and (
            not self.name.endswith("-replaced")
        ):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="cross-device"), staged_output(output, force=True) as staging:
        (staging / "model.onnx").write_text("new")
    assert (output / "model.onnx").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_export_killed_while_replacing_gets_the_old_artifact_back(tmp_path):
    """Killed between setting the old output aside and renaming the new one in: the next export
    of that output finds no output and the set-aside folder of a dead process, and restores it."""
    output = tmp_path / "out"
    dead = 2**22 + 12345  # above the largest pid Linux can give (2**22): no such process
    replaced = tmp_path / f"{staging_prefix(output)}{dead}-replaced"
    replaced.mkdir()
    (replaced / "model.onnx").write_text("old")
    unfinished = tmp_path / f"{staging_prefix(output)}{dead}-abcd1234"
    unfinished.mkdir()
    assert remove_stale_staging(output) == [unfinished]
    assert (output / "model.onnx").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_parity_leaves_no_artifact_and_names_the_worst_input(distilbert, tmp_path):
    output = tmp_path / "out"
    # A tolerance below float32 rounding makes any real export fail its parity gate.
    settings = ExportSettings(model=str(distilbert.checkpoint), output=output, quiet=True,
                              atol=1e-12)
    with pytest.raises(ParityError, match=r"rejected: parity FAILED.*worst input: \S+"):
        export_model(settings)
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_export_failure_exits_non_zero_with_one_line(distilbert, tmp_path, capsys):
    code = main(["export", str(distilbert.checkpoint), str(tmp_path / "out"), "-q",
                 "--atol", "1e-12"])
    assert code != 0
    error = capsys.readouterr().err
    assert error.startswith("error: Export of") and "Traceback" not in error


def test_unknown_model_and_task(tmp_path):
    with pytest.raises(ExportError, match=r"The local folder '.*no-model' does not exist"):
        export_model(ExportSettings(model=str(tmp_path / "no-model"), output=tmp_path / "o",
                                    quiet=True))
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
    tokenizer = transformers.AutoTokenizer.from_pretrained(distilbert.checkpoint)
    tokenizer.save_pretrained(tmp_path / "ckpt")
    assert "id2label" not in json.loads((tmp_path / "ckpt" / "config.json").read_text())
    settings = ExportSettings(model=str(tmp_path / "ckpt"), output=tmp_path / "out", opset=17,
                              quiet=True)
    manifest = export_model(settings)
    assert manifest.opset == 17
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"}
    from engine import Classifier

    assert Classifier.load(tmp_path / "out").labels == ["LABEL_0", "LABEL_1"]


# --- Where the model comes from, said in a second; the task read from its config ---


class _Counting:
    """Stands in for huggingface_hub's HTTP session: counts requests, answers with ``answer``."""

    def __init__(self, answer) -> None:
        self.answer, self.calls = answer, 0

    def head(self, url, **_kwargs):
        self.calls += 1
        return self.answer(url)


@pytest.fixture
def hub_session(monkeypatch):
    """Count every hub request and every transformers load; nothing reaches the network."""
    import huggingface_hub.utils
    import transformers

    loads = []
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda *args, **kwargs: loads.append(args) or pytest.fail("loaded"))

    def install(answer) -> _Counting:
        session = _Counting(answer)
        monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: session)
        return session

    install.loads = loads
    return install


def _one_line(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "", captured
    return lines[0]


def test_a_missing_local_folder_is_called_a_missing_folder(tmp_path, capsys, hub_session):
    session = hub_session(lambda url: pytest.fail("no request for a path"))
    line = _one_line(capsys, ["export", "./my-bert", str(tmp_path / "out")])
    assert line == (
        "error: The local folder './my-bert' does not exist. Give the folder of a saved "
        "checkpoint (save_pretrained) or a Hugging Face hub id such as 'distilbert-base-uncased'."
    )
    assert session.calls == 0 and hub_session.loads == []


def test_offline_an_uncached_hub_id_fails_without_a_single_request(
    tmp_path, capsys, monkeypatch, hub_session
):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    session = hub_session(lambda url: pytest.fail("no request offline"))
    line = _one_line(capsys, ["export", "nonexistent", str(tmp_path / "out")])
    assert line == (
        "error: 'nonexistent' is not a local folder and not in the Hugging Face cache, and "
        "HF_HUB_OFFLINE is set, so it cannot be downloaded. Give a local checkpoint folder, or "
        "unset HF_HUB_OFFLINE."
    )
    assert session.calls == 0 and hub_session.loads == []


def test_without_a_network_a_hub_id_gets_one_attempt_not_retries(
    tmp_path, capsys, monkeypatch, hub_session
):
    import huggingface_hub.constants
    import requests

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(url):
        raise requests.ConnectionError(f"Failed to resolve 'huggingface.co' for {url}")

    session = hub_session(unreachable)
    line = _one_line(capsys, ["export", "nonexistent", str(tmp_path / "out")])
    assert line == (
        "error: Cannot reach the Hugging Face hub for 'nonexistent' (ConnectionError). Check the "
        "network, or give a local checkpoint folder (HF_HUB_OFFLINE=1 uses cached models only)."
    )
    assert session.calls == 1 and hub_session.loads == []


def test_an_id_the_hub_does_not_have_is_said_so(tmp_path, capsys, monkeypatch, hub_session):
    import huggingface_hub.constants
    import requests

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def not_found(url):
        response = requests.Response()
        response.status_code, response.url = 401, url
        response.headers["X-Error-Code"] = "RepositoryNotFound"
        response.request = requests.Request("HEAD", url).prepare()
        return response

    session = hub_session(not_found)
    line = _one_line(capsys, ["export", "someone/no-such-model", str(tmp_path / "out")])
    assert line == (
        "error: 'someone/no-such-model' is neither a local folder nor a model on the Hugging Face "
        "hub (check the spelling; a private or gated model needs 'hf auth login')."
    )
    assert session.calls == 1


def test_the_task_is_inferred_from_the_config(distilbert, t5_v1_1, tiny_encoder_checkpoint,
                                              tmp_path):
    from export.model_source import infer_task
    from onnx_engine.sample_models import real_minilm_folder

    assert infer_task(str(distilbert.checkpoint)) == "text-classification"
    assert infer_task(str(t5_v1_1.checkpoint)) == "text2text-generation"
    assert infer_task(str(real_minilm_folder())) == "feature-extraction"  # modules.json
    assert infer_task(str(tiny_encoder_checkpoint)) == "feature-extraction"  # a bare BertModel
    masked = tmp_path / "masked"
    masked.mkdir()
    (masked / "config.json").write_text('{"architectures": ["BertForMaskedLM"], '
                                        '"model_type": "bert"}')
    with pytest.raises(ExportError) as error:
        infer_task(str(masked))
    assert str(error.value) == (
        f"Cannot tell the task of '{masked}' from its config (architectures: "
        "['BertForMaskedLM'], model_type: 'bert'). Pass --task with one of: "
        "text-classification, text2text-generation, feature-extraction, token-classification, "
        "text-ranking."
    )


def test_a_t5_folder_exports_without_task_and_without_check_set_warnings(t5_v1_1, tmp_path,
                                                                          caplog, capsys):
    import logging

    from engine.manifest import ArtifactManifest

    output = tmp_path / "t5"
    with caplog.at_level(logging.WARNING, logger="engine.tokenization"):
        assert main(["export", str(t5_v1_1.checkpoint), str(output)]) == 0
    assert ArtifactManifest.read(output).task == "text2text-generation"
    # The check set's deliberately over-long text is ours: no warning about it, even without -q.
    assert [r for r in caplog.records if r.name == "engine.tokenization"] == []
    assert "parity passed" in capsys.readouterr().err


def test_a_full_disk_during_export_is_one_line_and_leaves_nothing(distilbert, tmp_path, capsys,
                                                                   monkeypatch):
    import errno
    import os

    import export.exporter

    def full_disk(exporter, reference, raw, staging):
        (staging / "model.onnx").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export.exporter, "_collect_files", full_disk)
    output = tmp_path / "out"
    line = _one_line(capsys, ["export", str(distilbert.checkpoint), str(output), "-q"])
    assert line == (
        f"error: Cannot write '{output}': No space left on device (ENOSPC). The artifact "
        f"'{output}' was left as it was; free space or make the folder writable and run again."
    )
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder
