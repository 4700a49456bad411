"""CTranslate2: what a user who wants fast T5 on a CPU runs instead of us.

The contender converts the same PyTorch checkpoint the other contenders load with CTranslate2's
own ``TransformersConverter`` (offline; fp32 as ``float32``, int8 as ``int8`` weights) once into
the bench cache, then times ``Translator.translate_batch`` on pre-tokenized inputs, as its users
call it (their tokenizer runs outside it). Its decoding settings are spelled out to match
``transformers``' ``generate(num_beams=B, length_penalty=1.0, early_stopping=False)``: CTranslate2's
own defaults differ (``beam_size=2``, ``max_decoding_length=256``, no end token in the output), and
with them its tokens cannot agree with PyTorch's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_engine.bench.contenders.base import (
    Contender,
    ContenderSettings,
    engine_tokenizer,
    pad_rows,
)
from onnx_engine.bench.contenders.generated_ids import trim_after_eos

# Our variant -> CTranslate2's quantization at conversion and compute type at load.
COMPUTE_TYPES = {"fp32": "float32", "int8": "int8"}
_STAMP = "bench-source.json"


class CTranslate2Seq2Seq(Contender):
    """``ctranslate2.Translator.translate_batch`` at the variant's precision, same threads."""

    name = "ctranslate2"
    # The converter reads the checkpoint with transformers (and torch); the Translator needs
    # neither once the conversion is cached.
    requires = ("ctranslate2", "torch", "transformers")
    needs_reference = True
    runtimes = ("onnxruntime",)

    @classmethod
    def check_available(cls, settings: ContenderSettings) -> None:
        from onnx_engine.bench.errors import ContenderUnavailable

        super().check_available(settings)
        if settings.variant not in COMPUTE_TYPES:
            raise ContenderUnavailable(
                f"{cls.name} runs {', '.join(COMPUTE_TYPES)}, not the '{settings.variant}' "
                "variant."
            )

    def load(self) -> None:
        import ctranslate2

        from engine.manifest import ArtifactManifest

        compute_type = COMPUTE_TYPES[self.settings.variant]
        folder = converted_model(Path(str(self.settings.reference)), compute_type,
                                 self.settings.cache_dir)
        self._vocabulary = read_vocabulary(folder)
        generation = ArtifactManifest.read(self.settings.artifact).generation
        _check_start_token(folder, self._vocabulary[int(generation["decoder_start_token_id"])])
        eos = generation["eos_token_id"]
        self._eos = np.array(eos if isinstance(eos, list) else [eos], dtype=np.int64)
        self._ids = {token: index for index, token in enumerate(self._vocabulary)}
        self._tokenizer = engine_tokenizer(self.settings.artifact)
        self.translator = ctranslate2.Translator(
            str(folder), device="cpu", compute_type=compute_type,
            intra_threads=self.settings.threads, inter_threads=1,
        )

    def prepare(self, texts: Sequence[str]) -> None:
        encoded = self._tokenizer.encode(list(texts))
        self._source = [
            [self._vocabulary[int(i)] for i in ids[: int(mask.sum())]]
            for ids, mask in zip(encoded.input_ids, encoded.attention_mask)
        ]

    def run(self) -> Any:
        return self.translator.translate_batch(
            self._source, beam_size=self.settings.beams, num_hypotheses=1, length_penalty=1.0,
            max_decoding_length=self.settings.new_tokens, return_end_token=True,
            max_batch_size=0,
        )

    def predictions(self, output: Any) -> np.ndarray:
        ids = pad_rows([[self._ids[token] for token in result.hypotheses[0]]
                        for result in output])
        return trim_after_eos(ids, self._eos)


def converted_model(checkpoint: Path, quantization: str, cache_dir: Path) -> Path:
    """The checkpoint converted by CTranslate2 at ``quantization``, cached under ``cache_dir``.

    The cache key is the checkpoint's path, its files' sizes and modification times and the
    CTranslate2 version, so a rebuilt checkpoint or a new CTranslate2 converts again. The
    conversion is written beside its final folder and renamed into place: an interrupted one is
    never reused.

    Raises:
        BenchError: the conversion failed (e.g. an architecture CTranslate2 does not convert).
    """
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    from onnx_engine.bench.errors import BenchError

    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                   for p in checkpoint.iterdir() if p.is_file())
    key = json.dumps({"checkpoint": str(checkpoint.resolve()), "files": files,
                      "ctranslate2": ctranslate2.__version__, "quantization": quantization})
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    folder = Path(cache_dir) / "ctranslate2" / f"{checkpoint.name}-{quantization}-{digest}"
    if (folder / _STAMP).is_file() and (folder / _STAMP).read_text() == key:
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        converter = TransformersConverter(str(checkpoint))
        converter.convert(str(partial), quantization=quantization, force=True)
    except Exception as error:  # the converter raises whatever transformers or torch raise
        shutil.rmtree(partial, ignore_errors=True)
        raise BenchError(
            f"CTranslate2 could not convert '{checkpoint}' ({quantization}): {error}"
        ) from error
    (partial / _STAMP).write_text(key)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def read_vocabulary(folder: Path) -> list[str]:
    """The converted model's target vocabulary, index = token id (T5 shares it with the source).

    The converter pads it to the model's embedding rows, so every id the model can produce,
    including those past the tokenizer's vocabulary, maps back to one token.
    """
    json_file = folder / "shared_vocabulary.json"
    if json_file.is_file():
        vocabulary: list[str] = json.loads(json_file.read_text(encoding="utf-8"))
        return vocabulary
    return (folder / "shared_vocabulary.txt").read_text(encoding="utf-8").split("\n")[:-1]


def _check_start_token(folder: Path, expected: str) -> None:
    """T5 starts decoding from ``<pad>``; a converted model that starts elsewhere decodes
    another sequence, so refuse it rather than report its tokens as disagreement."""
    from onnx_engine.bench.errors import BenchError

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    start = config.get("decoder_start_token")
    if start is not None and start != expected:
        raise BenchError(
            f"CTranslate2's converted model starts decoding from {start!r}, the artifact from "
            f"{expected!r}: delete '{folder}' and rerun, or report the checkpoint's config."
        )
