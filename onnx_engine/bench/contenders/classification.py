"""The five ways of classifying a batch of texts that the benchmark compares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from onnx_engine.bench.contenders.base import (
    Bf16Autocast,
    Contender,
    ContenderSettings,
    PipelineContender,
    TorchModelContender,
    engine_tokenizer,
    hf_tokenizer,
    label_indices,
    openvino_compiled,
    ort_session,
    ort_session_options,
    torch_threads,
)
from onnx_engine.bench.errors import ContenderUnavailable


class EngineClassifier(Contender):
    """Ours, end to end: strings in, pipeline-shaped ``{"label", "score"}`` dicts out."""

    name = "engine"

    def load(self) -> None:
        from engine.options import RuntimeOptions
        from engine.tasks.classification import Classifier
        from onnx_engine.bench.variants import load_engine

        self.model = load_engine(Classifier, RuntimeOptions(), self.settings)
        self._label_ids = {label: index for index, label in self.model.id2label.items()}

    def run(self) -> Any:
        return self.model(self.texts, batch_size=len(self.texts))

    def predictions(self, output: Any) -> np.ndarray:
        return label_indices(output, self._label_ids)


class OrtRawClassifier(Contender):
    """A bare ``InferenceSession.run`` on pre-tokenized inputs: the floor of what we add."""

    name = "ort-raw"
    runtimes = ("onnxruntime",)

    def load(self) -> None:
        self.session = ort_session(self.settings.graphs["model"], self.settings.threads)
        self._input_names = [node.name for node in self.session.get_inputs()]
        self._tokenizer = engine_tokenizer(self.settings.artifact)

    def prepare(self, texts: Sequence[str]) -> None:
        feeds = self._tokenizer.encode(list(texts)).feeds()
        self.feeds = {name: feeds[name] for name in self._input_names}

    def run(self) -> Any:
        return self.session.run(None, self.feeds)

    def cost_probes(self) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
        """The graph and feeds of one call on the prepared batch, for counting its FLOPs."""
        return {"model": (self.settings.graphs["model"], self.feeds)}

    def predictions(self, output: Any) -> np.ndarray:
        return np.argmax(output[0], axis=-1)


class OpenVinoRawClassifier(OrtRawClassifier):
    """``ort-raw`` on OpenVINO's runtime: the floor of the OpenVINO path, the exported graph at
    f32 (variant fp32) or bf16 (variant bf16)."""

    name = "openvino-raw"
    runtimes = ("onnxruntime", "openvino")
    _PRECISIONS: ClassVar[dict[str, str]] = {"fp32": "f32", "bf16": "bf16"}

    @classmethod
    def check_available(cls, settings: ContenderSettings) -> None:
        super().check_available(settings)
        if settings.variant not in cls._PRECISIONS:
            raise ContenderUnavailable(
                f"{cls.name} runs the exported graph at f32 or bf16, not the "
                f"'{settings.variant}' variant's ONNX Runtime graph."
            )

    def load(self) -> None:
        precision = self._PRECISIONS[self.settings.variant]
        self.compiled = openvino_compiled(self.settings.graphs["model"], self.settings.threads,
                                          precision)
        self._input_names = [port.get_any_name() for port in self.compiled.inputs]
        self._tokenizer = engine_tokenizer(self.settings.artifact)

    def run(self) -> Any:
        return self.compiled.create_infer_request().infer(self.feeds).to_tuple()


class PyTorchClassifier(TorchModelContender):
    """The PyTorch model's forward on pre-tokenized inputs (the compute PyTorch itself costs)."""

    auto_class = "AutoModelForSequenceClassification"

    def run(self) -> Any:
        with self._torch.inference_mode():
            return self.model(**self._batch).logits

    def predictions(self, output: Any) -> np.ndarray:
        return output.argmax(-1).numpy()


class PyTorchBf16Classifier(Bf16Autocast, PyTorchClassifier):
    """PyTorch's forward under bf16 autocast."""


class PipelineClassifier(PipelineContender):
    """``transformers.pipeline("text-classification")`` end to end, as most users run it."""

    pipeline_task = "text-classification"

    def load(self) -> None:
        super().load()
        self._label_ids = {label: int(i) for i, label in self.pipe.model.config.id2label.items()}

    def run(self) -> Any:
        return self.pipe(self.texts, batch_size=len(self.texts))

    def predictions(self, output: Any) -> np.ndarray:
        return label_indices(output, self._label_ids)


class OptimumClassifier(Contender):
    """Optimum's ``ORTModelForSequenceClassification`` on the same ONNX file, strings to
    probabilities through ``AutoTokenizer``, as its documentation shows."""

    name = "optimum"
    requires = ("torch", "transformers", "optimum.onnxruntime")

    def load(self) -> None:
        torch_threads(self.settings.threads)
        import transformers
        from optimum.onnxruntime import ORTModelForSequenceClassification

        graph = self.settings.graphs["model"]
        self.model = ORTModelForSequenceClassification.from_pretrained(
            graph.parent, file_name=graph.name, provider="CPUExecutionProvider",
            config=transformers.AutoConfig.from_pretrained(self.settings.artifact),
            session_options=ort_session_options(self.settings.threads),
        )
        self._tokenizer = hf_tokenizer(self.settings)

    def run(self) -> Any:
        batch = self._tokenizer(self.texts, padding=True, truncation=True, return_tensors="pt")
        return self.model(**batch).logits.softmax(-1)

    def predictions(self, output: Any) -> np.ndarray:
        return output.argmax(-1).numpy()


CLASSIFIER_CONTENDERS: tuple[type[Contender], ...] = (
    EngineClassifier, OrtRawClassifier, OpenVinoRawClassifier, PyTorchClassifier,
    PyTorchBf16Classifier, PipelineClassifier, OptimumClassifier,
)
