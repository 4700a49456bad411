"""The ways of embedding a batch of texts that the benchmark compares.

Every contender goes from strings to ``float32 [batch, dimension]`` sentence embeddings except
``ort-raw`` (one bare ``InferenceSession.run`` on pre-tokenized inputs, the floor of what the
engine adds). The ONNX peers (sentence-transformers' ONNX backend, fastembed) run the very file the
engine runs for the variant, so differences are theirs, not the graph's.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from onnx_engine.bench.contenders.base import (
    Contender,
    ContenderSettings,
    ort_session_options,
    torch_threads,
)
from onnx_engine.bench.contenders.classification import OrtRawClassifier

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


class EngineEmbedder(Contender):
    """Ours, end to end: ``Embedder.embed(texts)``."""

    name = "engine"
    predictions_are_vectors = True

    def load(self) -> None:
        from engine.options import RuntimeOptions
        from engine.tasks.feature_extraction import Embedder
        from onnx_engine.bench.variants import load_engine

        self.model = load_engine(Embedder, RuntimeOptions(), self.settings)

    def run(self) -> Any:
        return self.model.embed(self.texts, batch_size=len(self.texts))

    def predictions(self, output: Any) -> np.ndarray:
        return np.asarray(output)


class OrtRawEmbedder(OrtRawClassifier):
    """A bare ``InferenceSession.run`` on pre-tokenized inputs (token embeddings out, no
    pooling)."""

    def predictions(self, output: Any) -> np.ndarray:
        """The artifact's pooling of the token embeddings, for comparisons."""
        from engine.pooling import pool

        modes = tuple(_pooling(self.settings.artifact)["modes"])
        return pool(output[0], self.feeds["attention_mask"], modes)


class SentenceTransformersEmbedder(Contender):
    """``SentenceTransformer(checkpoint).encode(texts)`` on PyTorch fp32, as its users run it."""

    name = "sentence-transformers"
    requires = ("torch", "sentence_transformers")
    needs_reference = True
    runs_variants = False
    autocast: ClassVar[bool] = False

    def load(self) -> None:
        self._torch = torch_threads(self.settings.threads)
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(self.settings.reference, device="cpu")

    def run(self) -> Any:
        if not self.autocast:
            return self._encode()
        with self._torch.autocast("cpu", dtype=self._torch.bfloat16):
            return self._encode()

    def _encode(self) -> np.ndarray:
        return self.model.encode(self.texts, batch_size=len(self.texts), convert_to_numpy=True,
                                 show_progress_bar=False)

    def predictions(self, output: Any) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)


class SentenceTransformersBf16Embedder(SentenceTransformersEmbedder):
    """The same under ``torch.autocast("cpu", dtype=torch.bfloat16)``: PyTorch's fast path on CPUs
    with bf16 instructions (AMX, AVX512-BF16); elsewhere bf16 is emulated and slower than fp32,
    so it is not run there."""

    name = "sentence-transformers-bf16"
    autocast = True

    @classmethod
    def check_available(cls, settings: ContenderSettings) -> None:
        from onnx_engine.bench.errors import ContenderUnavailable

        super().check_available(settings)
        if not cpu_has_bf16():
            raise ContenderUnavailable(
                f"{cls.name}: this CPU has none of the bf16 instruction flags {BF16_CPU_FLAGS} "
                "(torch would emulate bf16, slower than fp32)."
            )


class SentenceTransformersOnnxEmbedder(Contender):
    """sentence-transformers' ONNX backend (Optimum's ``ORTModelForFeatureExtraction``) on the
    variant's ONNX file, placed in a copy of the checkpoint folder as ``onnx/model.onnx``."""

    name = "sentence-transformers-onnx"
    requires = ("torch", "sentence_transformers", "optimum.onnxruntime")
    needs_reference = True

    def load(self) -> None:
        torch_threads(self.settings.threads)
        from sentence_transformers import SentenceTransformer

        self._folder = tempfile.TemporaryDirectory(prefix="st-onnx-")
        folder = Path(self._folder.name)
        for item in Path(self.settings.reference).iterdir():
            os.symlink(item.resolve(), folder / item.name)
        (folder / "onnx").mkdir(exist_ok=True)
        os.symlink(Path(self.settings.graphs["model"]).resolve(), folder / "onnx" / "model.onnx")
        self.model = SentenceTransformer(
            str(folder), backend="onnx", device="cpu",
            model_kwargs={"file_name": "onnx/model.onnx", "provider": "CPUExecutionProvider",
                          "session_options": ort_session_options(self.settings.threads)},
        )

    def run(self) -> Any:
        return self.model.encode(self.texts, batch_size=len(self.texts), convert_to_numpy=True,
                                 show_progress_bar=False)

    def predictions(self, output: Any) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)


class FastEmbedEmbedder(Contender):
    """fastembed's ``TextEmbedding`` on the variant's ONNX file and the artifact's tokenizer,
    registered as a local custom model (``add_custom_model`` + ``specific_model_path``)."""

    name = "fastembed"
    requires = ("fastembed",)

    @classmethod
    def check_available(cls, settings: ContenderSettings) -> None:
        from onnx_engine.bench.errors import ContenderUnavailable

        super().check_available(settings)
        modes = _pooling(settings.artifact)["modes"]
        if modes not in (["mean"], ["cls"]):
            raise ContenderUnavailable(f"{cls.name}: pools with mean or CLS only, not {modes}.")

    def load(self) -> None:
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        pooling = _pooling(self.settings.artifact)
        graph = Path(self.settings.graphs["model"])
        name = f"onnx-engine/{self.settings.artifact.resolve().name}-{graph.name}"
        if not any(model["model"] == name for model in TextEmbedding.list_supported_models()):
            TextEmbedding.add_custom_model(
                model=name,
                pooling=PoolingType.MEAN if pooling["modes"] == ["mean"] else PoolingType.CLS,
                normalization=pooling["normalize"], sources=ModelSource(hf=name),
                dim=pooling["dimension"], model_file=graph.name,
            )
        self.model = TextEmbedding(name, specific_model_path=str(graph.parent),
                                   threads=self.settings.threads, local_files_only=True)

    def run(self) -> Any:
        return np.array(list(self.model.embed(self.texts, batch_size=len(self.texts))))

    def predictions(self, output: Any) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)


def _pooling(artifact: Path) -> dict[str, Any]:
    return json.loads((Path(artifact) / "embedding.json").read_text(encoding="utf-8"))


def cpu_has_bf16() -> bool:
    """Whether ``/proc/cpuinfo`` lists a bf16 instruction set (Linux; False elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    flags = set(next((line for line in text.splitlines() if line.startswith("flags")), "").split())
    return any(flag in flags for flag in BF16_CPU_FLAGS)


EMBEDDING_CONTENDERS: tuple[type[Contender], ...] = (
    EngineEmbedder, OrtRawEmbedder, SentenceTransformersEmbedder, SentenceTransformersBf16Embedder,
    SentenceTransformersOnnxEmbedder, FastEmbedEmbedder,
)
