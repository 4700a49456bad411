"""Export, parity check and variant gates of ``*ForTokenClassification`` models (NER, POS).

Parity is held twice: the logits of every token against PyTorch's, and the engine's entities
against ``transformers.pipeline("token-classification")`` for every aggregation strategy, since
equal logits do not prove an equal post-processing. Variants are gated per token: each token of
the check set is one prediction, so a flipped label anywhere counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.artifact import Artifact
from engine.numerics import softmax
from engine.tasks.token_classification import (
    AGGREGATION_STRATEGIES,
    TASK_TOKEN_CLASSIFICATION,
    TokenClassifier,
    token_pairs,
)
from engine.variants.records import (
    BF16,
    FP16,
    FUSED,
    INT8,
    INT8_OPENVINO,
    VariantFigures,
    VariantGate,
)
from engine.verification.gate_figures import OutputPair, measure_figures
from engine.verification.references import write_references
from export.check_set import SENTENCES, check_texts
from export.dependencies import require
from export.parity import ParityReport, ParityRow
from export.tasks.base import (
    exported_fp32,
    load_pretrained,
    max_input_length,
    torch_no_grad,
)
from export.tasks.classification import ClassificationExporter
from export.tasks.spec import ExportTask
from export.variants.checks import VariantChecker
from export.variants.int8_search import SearchProbe
from export.variants.memoized import MemoizedReference

# Texts with names, accents and subword splits, checked besides the export's check set.
NER_CHECK_TEXTS = (
    "Zoë Saldaña visited Åre in Tōhoku with Jean-Luc Picard.",
    "My name is Wolfgang and I live in Berlin",
)


@dataclass(frozen=True)
class TokenClassifierReference:
    """The PyTorch token classifier and its tokenizer, as transformers loads them."""

    model: Any
    tokenizer: Any
    max_length: int
    _pipelines: dict = field(default_factory=dict, repr=False, compare=False)

    def logits(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's logits ``[tokens, labels]`` from one padded batch (padding cut off)."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        with torch_no_grad():
            logits = self.model(**batch).logits.float().numpy()
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        return [logits[row, :length] for row, length in enumerate(lengths)]

    def entities(self, text: str, strategy: str) -> list[dict[str, Any]]:
        """What ``transformers.pipeline("token-classification")`` answers for ``text``."""
        if "pipe" not in self._pipelines:
            self._pipelines["pipe"] = require("transformers").pipeline(
                "token-classification", model=self.model, tokenizer=self.tokenizer, device="cpu"
            )
        return self._pipelines["pipe"](text, aggregation_strategy=strategy)


def parity_texts(max_length: int) -> list[str]:
    return check_texts(max_length) + list(NER_CHECK_TEXTS)


class TokenClassificationExporter(ClassificationExporter):
    """Like the sequence classifier's (same files, full ``id2label``), per token."""

    task = TASK_TOKEN_CLASSIFICATION
    optimum_task = "token-classification"

    @classmethod
    def infers(cls, architecture: str, config: Mapping[str, Any]) -> bool:
        return architecture.endswith("ForTokenClassification")

    def load_reference(self, model: str) -> TokenClassifierReference:
        torch_model, tokenizer = load_pretrained(
            model, "AutoModelForTokenClassification", "a token classifier"
        )
        return TokenClassifierReference(torch_model, tokenizer,
                                        max_input_length(torch_model, tokenizer))

    def write_task_files(self, reference: TokenClassifierReference, folder: Path) -> None:
        """``references.npz``: PyTorch's logits of each check text alone, padded to the longest
        (``lengths`` says how many tokens are real)."""
        texts = parity_texts(reference.max_length)
        alone = [reference.logits([text])[0] for text in texts]
        padded = np.zeros((len(texts), max(map(len, alone)), alone[0].shape[1]), np.float32)
        for row, logits in enumerate(alone):
            padded[row, : len(logits)] = logits
        write_references(folder, self.task, {
            "texts": np.array(texts), "lengths": np.array([len(x) for x in alone]),
            "logits": padded,
        })

    def check_parity(
        self, reference: TokenClassifierReference, artifact_dir: Path, atol: float
    ) -> ParityReport:
        """Token logits at batch 1 and padded, then the entities of every strategy."""
        engine = exported_fp32(TokenClassifier, artifact_dir)
        report = ParityReport(atol=atol)
        for pair in check_set_outputs(engine, reference):
            report.add(pair.name, pair.text, pair.reference, pair.candidate)
        for strategy in AGGREGATION_STRATEGIES:
            for index, text in enumerate(parity_texts(reference.max_length)):
                ours = engine(text, aggregation_strategy=strategy)
                diff, same = entity_difference(ours, reference.entities(text, strategy))
                report.rows.append(ParityRow(f"pipeline {strategy}[{index}]", text[:32], diff,
                                             same, same and diff <= atol))
        return report


def check_set_outputs(engine: TokenClassifier, reference: TokenClassifierReference
                      ) -> list[OutputPair]:
    """Engine and PyTorch logits ``[tokens, labels]`` per text, alone and in one padded batch."""
    texts = parity_texts(reference.max_length)
    pairs = [OutputPair(f"b1[{index}]", text, reference.logits([text])[0],
                        engine.token_logits([text])[0].logits)
             for index, text in enumerate(texts)]
    ours = engine.token_logits(texts, batch_size=len(texts))
    pairs += [OutputPair(f"batch{len(texts)}[{index}]", text, theirs, ours[index].logits)
              for index, (text, theirs) in enumerate(zip(texts, reference.logits(texts)))]
    return pairs


def entity_difference(ours: list[dict], theirs: list[dict]) -> tuple[float, bool]:
    """``(largest |Δscore|, same entities)``: same count, keys, labels, words and offsets."""
    if len(ours) != len(theirs):
        return float("inf"), False
    worst, same = 0.0, True
    for mine, reference in zip(ours, theirs):
        same = same and list(mine) == list(reference) and all(
            mine[key] == reference[key] for key in reference if key != "score")
        worst = max(worst, abs(float(mine["score"]) - float(reference["score"])))
    return worst, same


class TokenClassifierChecker(VariantChecker):
    """Per-token label agreement with PyTorch: the parity texts and the calibration texts,
    PyTorch on each text alone vs the engine in batches, as users run it."""

    engine_class = TokenClassifier

    def load_reference(self, model: str) -> MemoizedReference:
        reference = TokenClassificationExporter().load_reference(model)
        return MemoizedReference(reference, kept=("logits",))

    def on_cuda(self, engine: TokenClassifier) -> bool:
        return engine.session.on_cuda

    def figures(self, engine: TokenClassifier, reference: TokenClassifierReference
                ) -> VariantFigures:
        texts = parity_texts(reference.max_length) + self.calibration
        ours = [tokens.logits for tokens in engine.token_logits(texts)]
        theirs = [reference.logits([text])[0] for text in texts]
        return measure_figures(token_pairs(texts, theirs, ours), softmax)

    def search_probe(
        self,
        artifact: Artifact,
        reference: TokenClassifierReference,
    ) -> SearchProbe:
        return self.text_search_probe(artifact, reference, lambda fp32: scores_per_text)

    def workloads(self, engine: TokenClassifier) -> dict[str, Callable[[], object]]:
        """A short text alone and the check set in one padded batch."""
        short, long = [SENTENCES[1]], check_texts(engine.tokenizer.max_length)
        return {"b1_short": lambda: engine.token_logits(short),
                f"batch{len(long)}_long": lambda: engine.token_logits(long,
                                                                      batch_size=len(long))}


def scores_per_text(logits: np.ndarray) -> np.ndarray:
    """``[batch, tokens, labels]`` logits as ``[batch, tokens * labels]`` probabilities."""
    return softmax(logits).reshape(len(logits), -1)


# Per-token gates: a token's label is the prediction, and per-token agreement is held besides
# the |Δprob| bound (a flip is forgiven only where the reference's top two were within twice
# that bound). Seen on the tiny random-weight BERT (head drawn wide, so logits spread more than
# a classifier's): int8 moved token probabilities by <= 0.066 and kept 98.6-98.9% of the labels,
# every flip at a reference gap <= 0.095; OpenVINO bf16 0.031 and 99.5%; fp16 (on CPU) 0.0023
# and 100%.
TOKEN_CLASSIFICATION_GATES = {
    FUSED: VariantGate(max_abs_diff=1e-4, min_agreement=1.0),
    INT8: VariantGate(max_prob_diff=0.1, min_agreement=0.95),
    FP16: VariantGate(max_prob_diff=0.01, min_agreement=0.99),
    BF16: VariantGate(max_prob_diff=0.05, min_agreement=0.98),
    INT8_OPENVINO: VariantGate(max_prob_diff=0.1, min_agreement=0.95),  # int8's bar
}

TOKEN_CLASSIFICATION_EXPORT = ExportTask(
    exporter=TokenClassificationExporter, checker=TokenClassifierChecker,
    gates=TOKEN_CLASSIFICATION_GATES,
)
