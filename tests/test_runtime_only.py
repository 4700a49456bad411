"""The engine runs with ONNX Runtime, tokenizers and NumPy alone: no torch, no transformers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "transformers", "optimum")


def test_importing_engine_imports_no_heavy_framework():
    code = (
        "import sys, engine; from engine import Classifier, Embedder, load; "
        f"print([m for m in {FORBIDDEN!r} if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def install_venv(tmp_path_factory, extras: str) -> Path:
    """A fresh virtualenv with ``pip install -c constraints.txt .[extras]``; returns its python.

    It installs from a copy of the sources, because setuptools leaves a build/ folder in the
    tree it builds from, and a stale one would shadow the modules under test.
    """
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(REPO / name, source / name)
    for package in ("engine", "export", "onnx_engine"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    root = tmp_path_factory.mktemp("runtime-venv")
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(source / "constraints.txt"),
         f"{source}[{extras}]"],
        check=True, capture_output=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return python


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """Only the runtime install: `pip install .[cpu]`."""
    return install_venv(tmp_path_factory, "cpu")


def test_runtime_only_install_classifies_without_torch(runtime_venv, distilbert):
    code = f"""
import importlib.util, json, sys
import engine
clf = engine.load({str(distilbert.artifact)!r})
print(json.dumps({{
    "torch_installed": importlib.util.find_spec("torch") is not None,
    "transformers_installed": importlib.util.find_spec("transformers") is not None,
    "loaded": [m for m in {FORBIDDEN!r} if m in sys.modules],
    "result": clf(["I love it", ""]),
}}))
"""
    result = subprocess.run(
        [str(runtime_venv), "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    report = json.loads(result.stdout)
    assert report["torch_installed"] is False and report["transformers_installed"] is False
    assert report["loaded"] == []
    from engine import Classifier

    assert report["result"] == Classifier.load(distilbert.artifact)(["I love it", ""])


def test_runtime_only_cli_classifies_and_explains_missing_export_extra(runtime_venv, distilbert):
    cli = runtime_venv.parent / "onnx-engine"
    classified = subprocess.run([str(cli), "classify", str(distilbert.artifact), "fine"],
                                capture_output=True, text=True, check=True)
    assert json.loads(classified.stdout)["text"] == "fine"
    export = subprocess.run([str(cli), "export", "some-model", "/tmp/never-written"],
                            capture_output=True, text=True)
    assert export.returncode == 2
    assert "pip install" in export.stderr and "Traceback" not in export.stderr


def test_runtime_only_cli_explains_missing_serve_extra(runtime_venv, distilbert):
    cli = runtime_venv.parent / "onnx-engine"
    for command in (["serve", f"clf={distilbert.artifact}", "--port", "0"],
                    ["loadtest", "http://127.0.0.1:9", "--model", "clf", "--artifact",
                     str(distilbert.artifact)]):
        result = subprocess.run([str(cli), *command], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert "onnx-engine[cpu,serve]" in result.stderr and "Traceback" not in result.stderr


def test_runtime_only_install_embeds_and_searches_without_torch(
    runtime_venv, tiny_embedder_factory
):
    artifact = tiny_embedder_factory("mean").artifact
    code = f"""
import json, sys
import engine
embedder = engine.load({str(artifact)!r})
vectors = embedder.embed(["a cat", "", "stock prices"])
print(json.dumps({{
    "class": type(embedder).__name__,
    "loaded": [m for m in {(*FORBIDDEN, "sentence_transformers")!r} if m in sys.modules],
    "vectors": vectors.tolist(),
    "top": [hit.corpus_id for hit in embedder.search("a kitten", ["stocks", "a cat"], top_k=2)[0]],
}}))
"""
    result = subprocess.run(
        [str(runtime_venv), "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    report = json.loads(result.stdout)
    assert report["class"] == "Embedder" and report["loaded"] == []
    from engine import Embedder

    here = Embedder.load(artifact)
    # Another NumPy may sum in another order: equal to float32 rounding, not bit for bit.
    np.testing.assert_allclose(report["vectors"], here.embed(["a cat", "", "stock prices"]),
                               atol=1e-6, rtol=1e-6)
    assert report["top"] == [hit.corpus_id for hit in here.search("a kitten", ["stocks", "a cat"],
                                                                   top_k=2)[0]]
