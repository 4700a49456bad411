"""Export-time steps for ``*ForSequenceClassification`` models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.tasks.classification import Classifier
from engine.manifest import TASK_CLASSIFICATION
from engine.verification.references import write_references
from export.check_set import check_texts, short_check_texts
from export.parity import OutputPair, ParityReport
from export.tasks.base import (
    TaskExporter,
    exported_fp32,
    load_pretrained,
    max_input_length,
    torch_no_grad,
)


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
        torch_model, tokenizer = load_pretrained(
            model, "AutoModelForSequenceClassification", "a sequence classifier"
        )
        return ClassifierReference(torch_model, tokenizer, max_input_length(torch_model, tokenizer))

    def config_overrides(self, reference: ClassifierReference) -> dict[str, Any]:
        """Write the labels out in full: transformers omits the default LABEL_i names from
        config.json, and the artifact must name its labels without transformers at hand."""
        labels = {str(index): label for index, label in reference.model.config.id2label.items()}
        return {"id2label": labels, "label2id": {label: int(i) for i, label in labels.items()}}

    def write_task_files(self, reference: ClassifierReference, folder: Path) -> None:
        """Write ``references.npz``: PyTorch's logits on the check set, each text alone, and on
        its short texts in one padded batch (``engine.verification.references``)."""
        texts, batch = check_texts(reference.max_length), short_check_texts()
        alone = np.stack([reference.logits([text])[0] for text in texts])
        arrays = {"texts": np.array(texts), "logits": alone,
                  "batch_texts": np.array(batch), "batch_logits": reference.logits(batch)}
        write_references(folder, self.task, arrays)

    def check_parity(
        self, reference: ClassifierReference, artifact_dir: Path, atol: float
    ) -> ParityReport:
        """Batch-1 and padded-batch logits of the engine vs PyTorch on the check set."""
        return compare_classifier(exported_fp32(Classifier, artifact_dir), reference, atol)


def compare_classifier(
    classifier: Classifier, reference: ClassifierReference, atol: float
) -> ParityReport:
    """Compare a loaded engine classifier (any variant) with its PyTorch reference."""
    report = ParityReport(atol=atol)
    for pair in check_set_outputs(classifier, reference):
        report.add(pair.name, pair.text, pair.reference, pair.candidate)
    return report


def check_set_outputs(classifier: Classifier, reference: ClassifierReference) -> list[OutputPair]:
    """Engine and PyTorch logits for each check-set text, at batch 1 and in one padded batch."""
    texts = check_texts(reference.max_length)
    pairs = [
        OutputPair(f"b1[{index}]", text, reference.logits([text])[0], classifier.logits([text])[0])
        for index, text in enumerate(texts)
    ]
    batch_reference = reference.logits(texts)
    batch_engine = classifier.logits(texts, batch_size=len(texts))
    for index, text in enumerate(texts):
        name = f"batch{len(texts)}[{index}]"
        pairs.append(OutputPair(name, text, batch_reference[index], batch_engine[index]))
    return pairs
