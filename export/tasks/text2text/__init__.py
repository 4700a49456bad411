"""The ``text2text-generation`` task: T5 encoder-decoders.

``exporter`` exports the three graphs and checks parity with PyTorch; ``variants`` gates the
optimized variants on logits and on PyTorch's greedy path.
"""

from __future__ import annotations

from export.tasks.spec import ExportTask
from export.tasks.text2text.exporter import Seq2SeqExporter
from export.tasks.text2text.variants import T5_GATES, Seq2SeqChecker

TEXT2TEXT_EXPORT = ExportTask(exporter=Seq2SeqExporter, checker=Seq2SeqChecker, gates=T5_GATES)
