"""The interface every contender implements, and the settings they share.

A contender is one way of running the same model on the same texts: our engine, a bare ONNX
Runtime session, PyTorch, the transformers pipeline, Optimum. ``load`` does what a service does
once at start-up, ``prepare`` what the benchmark must keep out of the timed call (for ``ort-raw``
and ``pytorch`` that includes tokenization), and ``run`` is the timed call itself. Heavy libraries
are imported inside ``load``, so a cold-start subprocess of one contender imports only its own:
the contender modules must not import ``engine`` (hence onnxruntime) or torch at module level.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

REFERENCE_VARIANT = "fp32"
_INSTALL_HINTS = {
    "torch": "pip install -c constraints.txt 'onnx-engine[export]'",
    "transformers": "pip install -c constraints.txt 'onnx-engine[export]'",
    "optimum.onnxruntime": "pip install -c constraints.txt 'onnx-engine[export]'",
    "ctranslate2": "pip install -c constraints.txt 'onnx-engine[bench]'",
}


@dataclass(frozen=True)
class ContenderSettings:
    """What all contenders of one model share, so they run the same work with the same threads.

    Attributes:
        artifact: the exported artifact folder.
        reference: the PyTorch checkpoint it came from (``None``: torch contenders cannot run).
        variant: ``fp32`` or an optimized variant name already resolved from ``auto``.
        graphs: the ONNX file per graph role for that variant.
        threads: intra-op threads for ONNX Runtime and ``torch.set_num_threads``.
        new_tokens: tokens to generate (seq2seq only).
        runtime: what runs the variant's graphs: ``onnxruntime``, or ``openvino`` (bf16).
        beams: beams of seq2seq generation (1: greedy).
        cache_dir: where contenders keep what they build once (CTranslate2's converted model).
    """

    artifact: Path
    reference: str | None
    variant: str
    graphs: dict[str, Path]
    threads: int
    new_tokens: int = 32
    runtime: str = "onnxruntime"
    beams: int = 1
    cache_dir: Path = Path("artifacts/bench")


class Contender(ABC):
    """One way of running the model; subclasses set ``name`` and the four methods."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()  # optional modules it imports in ``load``
    needs_reference: ClassVar[bool] = False  # loads the PyTorch checkpoint
    runs_variants: ClassVar[bool] = True  # False: PyTorch runs its own fp32 model only
    predictions_are_vectors: ClassVar[bool] = False  # True: embeddings, compared by cosine
    # Which variants' runtimes it can run: a bare ONNX Runtime session cannot run OpenVINO's bf16.
    runtimes: ClassVar[tuple[str, ...]] = ("onnxruntime", "openvino")

    def __init__(self, settings: ContenderSettings) -> None:
        self.settings = settings

    @classmethod
    def check_available(cls, settings: ContenderSettings) -> None:
        """Raise ``ContenderUnavailable`` (with the install command) when this one cannot run."""
        from onnx_engine.bench.errors import ContenderUnavailable

        for module in cls.requires:
            if _missing(module):
                hint = _INSTALL_HINTS.get(module, f"pip install {module}")
                raise ContenderUnavailable(f"{cls.name}: '{module}' is not installed ({hint}).")
        if cls.needs_reference and settings.reference is None:
            raise ContenderUnavailable(
                f"{cls.name}: no PyTorch checkpoint; the manifest's source model is not a local "
                "folder. Pass --model CHECKPOINT to benchmark against it."
            )
        if not cls.runs_variants and settings.variant != REFERENCE_VARIANT:
            raise ContenderUnavailable(f"{cls.name} runs the PyTorch fp32 model only.")
        if settings.runtime not in cls.runtimes:
            raise ContenderUnavailable(
                f"{cls.name} does not run the '{settings.variant}' variant: {settings.runtime} "
                "runs it."
            )

    @abstractmethod
    def load(self) -> None:
        """Import, open sessions / models; what a service does once at start-up."""

    def prepare(self, texts: Sequence[str]) -> None:
        """Set the batch the next ``run`` calls process; untimed. End-to-end contenders keep the
        strings; those timed on tokenized inputs override this to tokenize here."""
        self.texts = list(texts)

    @abstractmethod
    def run(self) -> Any:
        """The timed call: the prepared batch in, this contender's natural output out."""

    @abstractmethod
    def predictions(self, output: Any) -> np.ndarray:
        """``run``'s output as comparable ids: top-1 label per row, or generated token ids
        ``[rows, tokens]`` padded with -1; used for agreement checks and token counts."""


class TorchModelContender(Contender):
    """PyTorch itself: the checkpoint's ``auto_class`` model on inputs tokenized in ``prepare``."""

    name = "pytorch"
    requires = ("torch", "transformers")
    needs_reference = True
    runs_variants = False
    auto_class: ClassVar[str]  # transformers auto class, e.g. "AutoModelForSeq2SeqLM"

    def load(self) -> None:
        self._torch = torch_threads(self.settings.threads)
        import transformers

        self._tokenizer = transformers.AutoTokenizer.from_pretrained(self.settings.reference)
        model_class = getattr(transformers, self.auto_class)
        self.model = model_class.from_pretrained(self.settings.reference).eval()

    def prepare(self, texts: Sequence[str]) -> None:
        self._batch = self._tokenizer(
            list(texts), padding=True, truncation=True, return_tensors="pt"
        )


class Bf16Autocast:
    """PyTorch under ``torch.autocast("cpu", dtype=torch.bfloat16)``, as a user who wants bf16
    writes it; mixed into a PyTorch contender ahead of it, so its ``run`` is wrapped.

    Only where the CPU runs bf16 natively (AVX512-BF16 or AMX): elsewhere it is emulated and
    slower than fp32, a peer nobody would pick.
    """

    name = "pytorch-bf16"

    @classmethod
    def check_available(cls, settings: ContenderSettings) -> None:
        from engine.cpu import current_cpu
        from onnx_engine.bench.errors import ContenderUnavailable

        super().check_available(settings)  # type: ignore[misc]
        if not current_cpu().has_bf16:
            raise ContenderUnavailable(
                f"{cls.name}: this CPU has no AVX512-BF16 or AMX ({current_cpu().model}); bf16 "
                "autocast would be emulated, slower than fp32."
            )

    def run(self) -> Any:
        with self._torch.autocast("cpu", dtype=self._torch.bfloat16):  # type: ignore[attr-defined]
            return super().run()  # type: ignore[misc]


class PipelineContender(Contender):
    """``transformers.pipeline(pipeline_task)`` on the checkpoint, end to end on strings."""

    name = "pipeline"
    requires = ("torch", "transformers")
    needs_reference = True
    runs_variants = False
    pipeline_task: ClassVar[str]

    def load(self) -> None:
        torch_threads(self.settings.threads)
        import transformers

        self.pipe = transformers.pipeline(
            self.pipeline_task, model=self.settings.reference, device="cpu"
        )


def _missing(module: str) -> bool:
    """True when ``module`` cannot be imported (finding a submodule imports its parents)."""
    try:
        return importlib.util.find_spec(module) is None
    except ImportError:
        return True


def torch_threads(threads: int) -> Any:
    """Import torch with its intra-op threads set to ``threads``; returns the module."""
    import torch

    torch.set_num_threads(threads)
    return torch


def engine_tokenizer(artifact: Path) -> Any:
    """The artifact's tokenizer as the engine sets it up (padding, truncation at max_length)."""
    from engine.artifact import Artifact
    from engine.tokenization import TextTokenizer

    return TextTokenizer.from_artifact(Artifact.open(artifact, verify_hashes=False))


def label_indices(results: Sequence[dict[str, Any]], label_ids: dict[str, int]) -> np.ndarray:
    """Top-1 label index per row of pipeline-shaped ``{"label", "score"}`` results."""
    return np.array([label_ids[item["label"]] for item in results])


def hf_tokenizer(settings: ContenderSettings) -> Any:
    """``AutoTokenizer`` for Optimum: from the checkpoint when there is one, else the artifact.

    A T5 artifact ships ``tokenizer.json`` without ``spiece.model``, and transformers 4.57 insists
    on re-converting from the slow tokenizer when ``add_prefix_space`` is set, so the checkpoint's
    own files are preferred.
    """
    import transformers

    return transformers.AutoTokenizer.from_pretrained(settings.reference or settings.artifact)


def ort_session_options(threads: int, spinning: bool = True) -> Any:
    """ORT's default CPU session options with the benchmark's thread count (and spin setting).

    ORT's defaults (all graph optimizations, memory arena, spinning threads) are also the
    engine's classifier defaults, so engine and ort-raw differ only by the engine's own code.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return options


def ort_session(path: Path, threads: int, spinning: bool = True) -> Any:
    """A bare CPU ``InferenceSession`` with :func:`ort_session_options`."""
    import onnxruntime as ort

    options = ort_session_options(threads, spinning)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def openvino_compiled(path: Path, threads: int, precision: str) -> Any:
    """The graph compiled by OpenVINO for the CPU at ``precision`` (``f32`` or ``bf16``) with the
    benchmark's thread count.

    Raises:
        ContenderUnavailable: OpenVINO is not installed.
    """
    from engine.errors import ProviderError
    from engine.session import openvino_runtime
    from onnx_engine.bench.errors import ContenderUnavailable

    try:
        openvino = openvino_runtime()
    except ProviderError as error:
        raise ContenderUnavailable(f"openvino-raw: {error}") from error
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": precision}
    return openvino.Core().compile_model(str(path), "CPU", config)


def pad_rows(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Token id rows of different lengths as one int64 array padded with -1."""
    width = max((len(row) for row in rows), default=0)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out
