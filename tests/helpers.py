"""Reference computations and test doubles shared by the tests (never used by the engine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import transformers

from engine.artifact import file_record

# Relative tolerance for sums and long accumulations (sequence scores, summed log-probabilities):
# their rounding grows with the magnitude and differs between CPUs' kernels (AVX2 vs AVX-512/AMX),
# so an absolute tolerance alone fails on some machines (-129.29 off by 1.7e-4 on an Intel Xeon).
SUM_RTOL = 1e-5


def torch_logits(checkpoint: Path, texts: list[str], max_length: int = 512) -> np.ndarray:
    """Logits of the PyTorch model for one padded batch tokenized by AutoTokenizer."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.numpy()


def hf_pipeline(checkpoint: Path):
    return transformers.pipeline("text-classification", model=str(checkpoint), device="cpu")


def assert_same_results(ours, theirs, atol: float = 1e-5) -> None:
    """Same nesting, same labels in the same order, scores within ``atol``."""
    assert type(ours) is type(theirs), f"{type(ours).__name__} != {type(theirs).__name__}"
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs)
        assert ours["label"] == theirs["label"]
        assert abs(ours["score"] - theirs["score"]) <= atol, (ours, theirs)
        return
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs):
        assert_same_results(mine, reference, atol)


def corrupting_recipe(recipe, scratch: Path):
    """The variant recipe, applied to a copy of each fp32 graph whose last projection is negated.

    A deliberately broken variant (the LM head or classifier head flipped) that its gate must
    refuse.
    """
    import onnx
    from onnx import numpy_helper

    from export.variants.optimize import VariantRecipe

    def build(source: Path, target: Path, config):
        model = onnx.load(str(source))
        weights = {init.name: init for init in model.graph.initializer}
        projections = [node for node in model.graph.node if node.op_type in ("MatMul", "Gemm")]
        name = next(n for node in reversed(projections) for n in node.input if n in weights)
        flipped = -numpy_helper.to_array(weights[name])
        weights[name].CopyFrom(numpy_helper.from_array(flipped, name))
        corrupted = scratch / source.name
        onnx.save(model, str(corrupted))
        return recipe.build(corrupted, target, config)

    return VariantRecipe(recipe.target, build)


def timed_elsewhere(artifact: Path) -> None:
    """Rewrite the manifest so every timed variant's CPU timings come from another machine."""
    data = json.loads((artifact / "manifest.json").read_text())
    other = {"model": "Imaginary CPU 9000", "flags": ["avx2"], "cores": 64}
    for record in data["variants"].values():
        if "cpu" in record["speeds"]:  # a variant that failed its gate was never timed
            record["speeds"]["cpu"]["cpu"] = other
    (artifact / "manifest.json").write_text(json.dumps(data))


def assert_same_entities(ours, theirs) -> None:
    """Same nesting, keys in the same order, equal labels/words/offsets, scores within 1e-5."""
    assert type(ours) is type(theirs) is list and len(ours) == len(theirs), (ours, theirs)
    for mine, reference in zip(ours, theirs):
        if isinstance(reference, list):
            assert_same_entities(mine, reference)
            continue
        assert list(mine) == list(reference), (mine, reference)
        for key, value in reference.items():
            if key == "score":
                assert abs(mine[key] - float(value)) <= 1e-5, (mine, reference)
            else:
                assert mine[key] == value and type(mine[key]) is type(value), (key, mine, reference)


def rewrite_manifest(folder: Path, **changes) -> None:
    """Edit top-level manifest fields in place (hashes left as they were)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def replace_file_and_record(folder: Path, name: str, content: bytes) -> None:
    """Corrupt a file as if it had been exported that way (manifest hash updated too)."""
    (folder / name).write_bytes(content)
    record = file_record(folder / name)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": record.sha256, "size": record.size}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def tamper_numerics(folder: Path, variant: str) -> None:
    """Rewrite each graph of ``variant`` with other float weights (a valid model, other numbers)
    and record the new hashes in the manifest: only the numeric re-check can tell."""
    import onnx
    from onnx import numpy_helper

    from engine.manifest import ArtifactManifest

    manifest = ArtifactManifest.read(folder)
    for name in manifest.variants[variant].graphs.values():
        path = folder / name
        model = onnx.load(str(path))
        for tensor in model.graph.initializer:
            values = numpy_helper.to_array(tensor)
            if values.dtype == np.float32 and values.size > 16:
                tensor.CopyFrom(numpy_helper.from_array(values * 3.0 + 0.5, tensor.name))
        onnx.save(model, str(path))
        manifest.files[name] = file_record(path)
    manifest.write(folder)
