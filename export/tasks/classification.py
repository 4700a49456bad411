"""The ``text-classification`` task at export time: ``*ForSequenceClassification`` models.

The exporter with its parity check against PyTorch, the variant checker (the check set at batch 1
and padded, plus the calibration texts) and the variants' default gates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engine.artifact import Artifact
from engine.manifest import TASK_CLASSIFICATION
from engine.tasks.classification import Classifier
from engine.variants.records import (
    BF16,
    FP16,
    FUSED,
    INT8,
    INT8_OPENVINO,
    VariantFigures,
    VariantGate,
)
from engine.verification.gate_figures import measure_figures
from engine.verification.references import write_references
from export.check_set import SENTENCES, check_texts, short_check_texts
from export.parity import OutputPair, ParityReport
from export.tasks.base import (
    TaskExporter,
    exported_fp32,
    load_pretrained,
    max_input_length,
    torch_no_grad,
)
from export.tasks.spec import ExportTask
from export.variants.checks import CALIBRATION_BATCH, VariantChecker
from export.variants.int8_search import SearchProbe
from export.variants.memoized import MemoizedReference


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
    graph_files: ClassVar[dict[str, str]] = {"model": "model.onnx"}

    @classmethod
    def infers(cls, architecture: str, config: Mapping[str, Any]) -> bool:
        return architecture.endswith("ForSequenceClassification")

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
    """Engine and PyTorch logits for each check-set text at batch 1, all of them in one padded
    batch, and the short ones in one padded batch: the batch torch-free ``verify`` runs from
    ``references.npz``. Dynamic int8 scales each activation by the range of the whole padded
    batch, so a batch of other texts can move its outputs further; a variant that passed here
    must pass ``verify`` on the machine that made it."""
    texts = check_texts(reference.max_length)
    pairs = [
        OutputPair(f"b1[{index}]", text, reference.logits([text])[0], classifier.logits([text])[0])
        for index, text in enumerate(texts)
    ]
    for batch in (texts, short_check_texts()):
        batch_reference = reference.logits(batch)
        batch_engine = classifier.logits(batch, batch_size=len(batch))
        for index, text in enumerate(batch):
            name = f"batch{len(batch)}[{index}]"
            pairs.append(OutputPair(name, text, batch_reference[index], batch_engine[index]))
    return pairs


class ClassifierChecker(VariantChecker):
    """The export's check set at batch 1 and padded, plus the calibration texts in batches."""

    engine_class = Classifier

    def load_reference(self, model: str) -> MemoizedReference:
        reference = ClassificationExporter().load_reference(model)
        return MemoizedReference(reference, kept=("logits",))

    def on_cuda(self, engine: Classifier) -> bool:
        return engine.session.on_cuda

    def figures(self, engine: Classifier, reference: ClassifierReference) -> VariantFigures:
        pairs = check_set_outputs(engine, reference) + self.calibration_outputs(engine, reference)
        return measure_figures(pairs, engine.scores, multi_label=engine.activation == "sigmoid")

    def calibration_outputs(
        self, engine: Classifier, reference: ClassifierReference
    ) -> list[OutputPair]:
        """PyTorch on each text alone (no padding) vs the engine in batches, as users run it."""
        if not self.calibration:
            return []
        ours = engine.logits(self.calibration, batch_size=CALIBRATION_BATCH)
        return [
            OutputPair(f"calibration[{index}]", text, reference.logits([text])[0], ours[index])
            for index, text in enumerate(self.calibration)
        ]

    def search_probe(
        self,
        artifact: Artifact,
        reference: ClassifierReference,
    ) -> SearchProbe:
        """A matmul's error is measured on the scores (softmax or sigmoid of the logits)."""
        return self.text_search_probe(artifact, reference, lambda fp32: fp32.scores)

    def workloads(self, engine: Classifier) -> dict[str, Callable[[], object]]:
        short = [SENTENCES[1]]
        long = check_texts(engine.tokenizer.max_length)
        return {
            "b1_short": lambda: engine.logits(short),
            f"batch{len(long)}_long": lambda: engine.logits(long, batch_size=len(long)),
        }


CLASSIFICATION_GATES: dict[str, VariantGate] = {
    # Fusion only regroups fp32 arithmetic: it must be as exact as the export itself.
    FUSED: VariantGate(max_abs_diff=1e-4, min_agreement=1.0),
    # int8 / fp16 are judged on scores, and a flip only where it breaks them: with every
    # score within b of the reference, only a top-2 gap below 2b can close, so a changed
    # label there is a near-tie within the variant's own bound (every flip is still
    # reported); a flip at a wider gap fails. A 100% agreement demand would fail a variant
    # for a flip at a gap of 0.002 that its |Δprob| bound allows.
    # int8 moves logits by ~0.07 on random weights (probabilities <= 0.023).
    INT8: VariantGate(max_prob_diff=0.03, min_agreement=0.0),
    # fp16 keeps ~3 significant digits; 0.01 in probability leaves room for that, not for
    # an overflowing layer.
    FP16: VariantGate(max_prob_diff=0.01, min_agreement=0.0),
    # bf16 keeps 8 mantissa bits (~2-3 significant digits): real MiniLM weights moved logits
    # by <= 0.008 here; 0.02 in probability leaves room for that, not for a broken layer.
    BF16: VariantGate(max_prob_diff=0.02, min_agreement=0.0),
    # Calibrated int8 through OpenVINO: int8's bar.
    INT8_OPENVINO: VariantGate(max_prob_diff=0.03, min_agreement=0.0),
}

CLASSIFICATION_EXPORT = ExportTask(
    exporter=ClassificationExporter, checker=ClassifierChecker, gates=CLASSIFICATION_GATES
)
