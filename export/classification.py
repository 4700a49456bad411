"""Export-time steps for ``*ForSequenceClassification`` models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.classifier import Classifier
from engine.manifest import TASK_CLASSIFICATION
from engine.session import RuntimeOptions
from export.check_set import check_texts
from export.dependencies import require
from export.errors import ExportError
from export.parity import ParityReport
from export.task import TaskExporter, max_input_length, torch_no_grad


@dataclass(frozen=True)
class ClassifierReference:
    """The PyTorch classifier and its tokenizer, as loaded by transformers."""

    model: Any
    tokenizer: Any
    max_length: int

    def logits(self, texts: list[str]) -> np.ndarray:
        """Reference logits for one padded batch, tokenized by ``AutoTokenizer``."""
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch_no_grad():
            return self.model(**batch).logits.float().numpy()


class ClassificationExporter(TaskExporter):
    task = TASK_CLASSIFICATION
    optimum_task = "text-classification"
    graph_files = {"model": "model.onnx"}

    def load_reference(self, model: str) -> ClassifierReference:
        transformers = require("transformers")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model)
            torch_model = transformers.AutoModelForSequenceClassification.from_pretrained(model)
        except (OSError, ValueError) as error:
            raise ExportError(f"Cannot load '{model}' as a sequence classifier: {error}") from error
        if not tokenizer.is_fast:
            raise ExportError(
                f"'{model}' has no fast tokenizer (tokenizer.json); the engine needs one."
            )
        torch_model.eval()
        return ClassifierReference(torch_model, tokenizer, max_input_length(torch_model, tokenizer))

    def check_parity(
        self, reference: ClassifierReference, artifact_dir: Path, atol: float
    ) -> ParityReport:
        """Batch-1 and padded-batch logits of the engine vs PyTorch on the check set."""
        # Hashes are checked by the caller (export just wrote them; verify reports them itself).
        options = RuntimeOptions(provider="cpu", verify_hashes=False)
        classifier = Classifier.load(artifact_dir, options=options)
        return compare_classifier(classifier, reference, atol)


def compare_classifier(
    classifier: Classifier, reference: ClassifierReference, atol: float
) -> ParityReport:
    """Compare a loaded engine classifier (any variant) with its PyTorch reference."""
    texts = check_texts(reference.max_length)
    report = ParityReport(atol=atol)
    for index, text in enumerate(texts):
        report.add(f"b1[{index}]", text, reference.logits([text]), classifier.logits([text]))
    batch_reference = reference.logits(texts)
    batch_engine = classifier.logits(texts, batch_size=len(texts))
    for index, text in enumerate(texts):
        report.add(f"batch{len(texts)}[{index}]", text, batch_reference[index], batch_engine[index])
    return report
