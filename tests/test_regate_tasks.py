"""``auto`` re-gates int8 on a simulated other machine for every task, not only the classifier
(``test_references`` covers it): T5 (text2text), embeddings, token classification, reranking.

On another architecture the export machine's gate says nothing certain (int8 kernels differ by
ISA), so a load with ``auto`` re-runs int8 against the stored PyTorch references, records the
verdict for that machine kind, and skips an int8 whose numbers were changed (hash updated).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from helpers import tamper_numerics
from tiny_rerankers import reranker_factory  # noqa: F401 (the session fixture)
from tiny_token_classifiers import NER_TEXTS

import engine
from engine.variants.records import INT8
from engine.verification.verdicts import VERDICTS_NAME
from export.check_set import SENTENCES
from export.variants.optimize import OptimizeSettings, optimize_artifact

TASKS = ("text2text", "embeddings", "token-classification", "reranking")


@pytest.fixture(scope="module", params=TASKS)
def int8_artifact(request, tmp_path_factory) -> Path:
    """A copy of the task's tiny artifact optimized with int8 on this machine."""
    exported = {
        "text2text": lambda: request.getfixturevalue("t5_v1_1"),
        "embeddings": lambda: request.getfixturevalue("tiny_embedder_factory")("mean", True),
        "token-classification": lambda: request.getfixturevalue("token_classifier_factory")(
            "bert-ner"),
        "reranking": lambda: request.getfixturevalue("reranker_factory")("ce-bert"),
    }[request.param]()
    root = tmp_path_factory.mktemp(f"regate-{request.param}")
    folder = root / "artifact"
    shutil.copytree(exported.artifact, folder)
    calibration = root / "calibration.txt"  # a few texts keep int8's search short
    calibration.write_text("\n".join([*NER_TEXTS, *SENTENCES]) + "\n", encoding="utf-8")
    manifest = optimize_artifact(OptimizeSettings(artifact=folder, variants=(INT8,),
                                                  calibration=calibration, timing_runs=1,
                                                  quiet=True))
    assert manifest.variants[INT8].passed, manifest.variants[INT8].reason  # else auto skips it
    return folder


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(VERDICTS_NAME))
    return target


def _recorded(folder: Path, machine_key: str) -> dict:
    return json.loads((folder / VERDICTS_NAME).read_text())["machines"][machine_key]["variants"]


def test_auto_regates_int8_on_another_machine_and_reuses_the_verdict(
    int8_artifact, tmp_path, other_machine, caplog
):
    folder = _copy(int8_artifact, tmp_path)
    with caplog.at_level(logging.INFO):
        engine.load(folder, provider="cpu")
    assert "'int8' was gated on another kind of machine; re-gated on this one" in caplog.text
    verdict = _recorded(folder, other_machine.key)[INT8]
    assert verdict["passed"] is True, verdict["reason"]
    assert verdict["figures"]["inputs"] > 0
    caplog.clear()
    with caplog.at_level(logging.INFO):
        engine.load(folder, provider="cpu")
    assert "re-gated" not in caplog.text  # the verdict recorded for this machine kind holds


def test_auto_skips_an_int8_whose_numbers_changed_on_another_machine(
    int8_artifact, tmp_path, other_machine, caplog
):
    folder = _copy(int8_artifact, tmp_path)
    tamper_numerics(folder, INT8)
    with caplog.at_level(logging.INFO):
        model = engine.load(folder, provider="cpu")
    assert model.variant != INT8
    assert "variant='auto' skips 'int8'" in caplog.text
    assert "'int8' skipped: failed its gate on this machine" in model.variant_reason
    assert _recorded(folder, other_machine.key)[INT8]["passed"] is False
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        explicit = engine.load(folder, provider="cpu", variant=INT8)
    assert explicit.variant == INT8  # asked for by name it loads, with the failed figure named
    assert "FAILED its accuracy gate on this machine" in caplog.text
